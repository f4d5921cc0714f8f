// The shapes vocabulary builder's output is read by the real CLIP tokenizer.
#include <QtTest>

#include <algorithm>
#include <filesystem>

#include "core/shapes/bpe_vocab.h"
#include "core/text/clip_tokenizer.h"

using namespace kto::shapes;

class TestDemoVocab : public QObject {
    Q_OBJECT
private slots:
    void clipTokenizerReadsShapesVocab() {
        const std::string dir = QDir::tempPath().toStdString() + "/kto_demo_vocab_test";
        const BpeVocab v = build_caption_vocab(1, 2000);
        write_clip_tokenizer(v, dir);
        auto tok = kto::CLIPTokenizer::from_folder(dir);
        const auto enc = tok.encode({"a large red circle on a blue background", "an orange zebra"});
        QCOMPARE(enc.input_ids.size(0), int64_t(2));
        QCOMPARE(enc.input_ids.size(1), int64_t(77));
        const auto ids = enc.input_ids[0];
        QCOMPARE(ids[0].item<int64_t>(), int64_t(v.bos_id()));
        auto id_of = [&](const std::string& t) {
            return int64_t(std::find(v.tokens.begin(), v.tokens.end(), t) - v.tokens.begin());
        };
        // One token a word: 8 words, then end of text and end-of-text padding.
        QCOMPARE(ids[1].item<int64_t>(), id_of("a</w>"));
        QCOMPARE(ids[2].item<int64_t>(), id_of("large</w>"));
        QCOMPARE(ids[3].item<int64_t>(), id_of("red</w>"));
        QCOMPARE(ids[4].item<int64_t>(), id_of("circle</w>"));
        QCOMPARE(ids[8].item<int64_t>(), id_of("background</w>"));
        QCOMPARE(ids[9].item<int64_t>(), int64_t(v.eos_id()));
        QCOMPARE(ids[76].item<int64_t>(), int64_t(v.eos_id()));
        // A word outside the caption language falls back to byte-level pieces, still valid ids.
        const auto other = enc.input_ids[1];
        QVERIFY(other.max().item<int64_t>() <= v.eos_id());
        QVERIFY(other.min().item<int64_t>() >= 0);
        std::filesystem::remove_all(dir);
    }

};

QTEST_GUILESS_MAIN(TestDemoVocab)
#include "test_demo_vocab.moc"
