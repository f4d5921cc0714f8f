// Dataset folder reading, image preprocessing, bad-data messages, the class-balanced sampler and the
// latent cache's reuse across runs (counted encoder calls).
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <stb/stb_image_write.h>

#include <filesystem>
#include <fstream>

#include "core/common/error.h"
#include "core/train/dataset.h"
#include "core/train/latent_cache.h"
#include "core/common/sha256.h"

namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

// A w x h RGB PNG whose red channel ramps left to right.
void write_png(const fs::path& p, int w, int h, uint8_t green) {
    fs::create_directories(p.parent_path());
    std::vector<uint8_t> px(static_cast<size_t>(w * h * 3));
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            auto* q = &px[static_cast<size_t>((y * w + x) * 3)];
            q[0] = static_cast<uint8_t>(x * 255 / std::max(1, w - 1));
            q[1] = green;
            q[2] = 0;
        }
    QVERIFY(stbi_write_png(p.string().c_str(), w, h, 3, px.data(), w * 3) != 0);
}

QString error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const kto::Error& e) {
        return QString::fromStdString(e.what());
    }
    return {};
}

// Fake encoders: "latents" are 8x8 average pools of the image, "std" a constant; text embeddings a
// hash-derived constant. Counters tell whether the cache called them.
struct FakeEncoders {
    int image_calls = 0, images = 0, text_calls = 0, texts = 0;
    kto::LatentEncoders make() {
        kto::LatentEncoders e;
        e.vae_identity = "fake-vae-1";
        e.text_identity = "fake-clip-1";
        e.encode_images = [this](const torch::Tensor& x) {
            ++image_calls;
            images += static_cast<int>(x.size(0));
            auto mean = torch::avg_pool2d(x, 8).narrow(1, 0, 3).repeat({1, 2, 1, 1}).narrow(1, 0, 4);
            return std::make_pair(mean, torch::full_like(mean, 0.1));
        };
        e.encode_text = [this](const std::vector<std::string>& c) {
            ++text_calls;
            texts += static_cast<int>(c.size());
            auto out = torch::zeros({static_cast<int64_t>(c.size()), 77, 8});
            for (size_t i = 0; i < c.size(); ++i) out[static_cast<int64_t>(i)].fill_(double(c[i].size()));
            return out;
        };
        return e;
    }
};

}  // namespace

class TestTrainingData : public QObject {
    Q_OBJECT

private slots:
    void readsBothColumnSpellings() {
        QTemporaryDir tmp;
        const fs::path a = fs::path(tmp.path().toStdString()) / "a";
        write_text(a / "train_processed_v3.csv",
                   "file_path,caption,label\r\ntrain/x.png,\"a red, big circle\",exclusive_win\r\n"
                   "train/y.png,,exclusive_lose\r\n");
        auto recs = kto::read_dataset_folder(a.string());
        QCOMPARE(recs.size(), size_t(2));
        QCOMPARE(recs[0].caption, std::string("a red, big circle"));
        QVERIFY(recs[0].desirable);
        QVERIFY(!recs[1].desirable);
        QCOMPARE(recs[1].caption, std::string(""));
        QCOMPARE(fs::path(recs[0].image_path), a / "train/x.png");

        const fs::path b = fs::path(tmp.path().toStdString()) / "b";
        write_text(b / "train_processed_v3.csv",
                   "file_name,split\nq.png,exclusive_lose\nr.png,intersections\n");
        write_png(b / "train" / "q.png", 4, 4, 0);
        recs = kto::read_dataset_folder(b.string());
        QCOMPARE(recs.size(), size_t(2));
        QVERIFY(!recs[0].desirable);
        QVERIFY(recs[1].desirable);  // intersections count as desirable by default
        QCOMPARE(fs::path(recs[0].image_path), b / "train" / "q.png");  // found under train/
        kto::DatasetFolderOptions drop;
        drop.intersections_desirable = false;
        QCOMPARE(kto::read_dataset_folder(b.string(), drop).size(), size_t(1));
    }

    void malformedCsvNamesFileAndLine() {
        QTemporaryDir tmp;
        const fs::path d(tmp.path().toStdString());
        write_text(d / "train_processed_v3.csv", "file_path,caption,label\nx.png,cat,maybe\n");
        auto msg = error_of([&] { kto::read_dataset_folder(d.string()); });
        QVERIFY2(msg.contains("line 2") && msg.contains("maybe"), qPrintable(msg));
        write_text(d / "train_processed_v3.csv", "path,caption\nx.png,cat\n");
        msg = error_of([&] { kto::read_dataset_folder(d.string()); });
        QVERIFY2(msg.contains("file_path"), qPrintable(msg));
        msg = error_of([&] { kto::read_dataset_folder((d / "nope").string()); });
        QVERIFY2(msg.contains("not found"), qPrintable(msg));
    }

    // The snapshot a multi-process run shares: a round trip keeps order, captions (any text) and
    // labels; malformed files name the file and the entry.
    void recordsFileRoundTripAndErrors() {
        QTemporaryDir tmp;
        const fs::path d(tmp.path().toStdString());
        const std::vector<kto::TrainRecord> recs = {{"/data/a.png", "a red \"circle\", café", true},
                                                    {"b.png", "", false},
                                                    {"/data/a.png", "line\nbreak", true}};
        kto::write_records_file((d / "records.json").string(), recs);
        const auto back = kto::read_records_file((d / "records.json").string());
        QCOMPARE(back.size(), recs.size());
        for (size_t i = 0; i < recs.size(); ++i) {
            QCOMPARE(back[i].image_path, recs[i].image_path);
            QCOMPARE(back[i].caption, recs[i].caption);
            QCOMPARE(back[i].desirable, recs[i].desirable);
        }
        write_text(d / "bad.json", "[{\"image\": \"x.png\", \"liked\": true}, {\"image\": 3, \"liked\": false}]");
        auto msg = error_of([&] { kto::read_records_file((d / "bad.json").string()); });
        QVERIFY2(msg.contains("bad.json") && msg.contains("entry 2"), qPrintable(msg));
        write_text(d / "obj.json", "{\"image\": \"x.png\"}");
        msg = error_of([&] { kto::read_records_file((d / "obj.json").string()); });
        QVERIFY2(msg.contains("JSON array"), qPrintable(msg));
        msg = error_of([&] { kto::read_records_file((d / "missing.json").string()); });
        QVERIFY2(msg.contains("missing.json"), qPrintable(msg));
    }

    void preprocessResizesCropsAndNormalises() {
        QTemporaryDir tmp;
        const fs::path p = fs::path(tmp.path().toStdString()) / "wide.png";
        write_png(p, 64, 32, 255);
        const auto t = kto::load_training_image(p.string(), 16);
        QCOMPARE(t.sizes(), (c10::IntArrayRef{3, 16, 16}));
        QVERIFY(t.min().item<float>() >= -1.0f && t.max().item<float>() <= 1.0f);
        QVERIFY(std::abs(t[1].mean().item<float>() - 1.0f) < 1e-5);  // green 255 -> +1
        // Centre crop of a left-to-right ramp: the crop's mean red is the middle of the ramp (~0).
        QVERIFY(std::abs(t[0].mean().item<float>()) < 0.05);
        QVERIFY(t[0][0][15].item<float>() > t[0][0][0].item<float>());
    }

    void badImagesGiveReasons() {
        QTemporaryDir tmp;
        const fs::path d(tmp.path().toStdString());
        write_text(d / "corrupt.png", "\x89PNG\r\n\x1a\nthis is not really a png");
        auto msg = error_of([&] { kto::load_training_image((d / "corrupt.png").string(), 8); });
        QVERIFY2(msg.contains("corrupt.png") && msg.contains("cannot decode"), qPrintable(msg));
        msg = error_of([&] { kto::load_training_image((d / "missing.png").string(), 8); });
        QVERIFY2(msg.contains("missing.png") && msg.contains("not found"), qPrintable(msg));
    }

    void recordChecks() {
        std::vector<kto::TrainRecord> none;
        auto msg = error_of([&] { kto::check_records(none, kto::ObjectiveKind::kto, false); });
        QVERIFY2(msg.contains("empty"), qPrintable(msg));

        std::vector<kto::TrainRecord> liked = {{"a.png", "cat", true}, {"b.png", "dog", true}};
        msg = error_of([&] { kto::check_records(liked, kto::ObjectiveKind::kto, false); });
        QVERIFY2(msg.contains("only liked") && msg.contains("--allow-one-class"), qPrintable(msg));
        const auto warnings = kto::check_records(liked, kto::ObjectiveKind::kto, true);
        QCOMPARE(warnings.size(), size_t(1));
        msg = error_of([&] { kto::check_records(liked, kto::ObjectiveKind::dpo, true); });
        QVERIFY2(msg.contains("DPO"), qPrintable(msg));
        QVERIFY(kto::check_records(liked, kto::ObjectiveKind::sft, false).empty());

        std::vector<kto::TrainRecord> mixed = {{"a.png", "cat", true}, {"b.png", "dog", false}};
        msg = error_of([&] { kto::make_dpo_pairs(mixed); });
        QVERIFY2(msg.contains("same prompt"), qPrintable(msg));
        mixed.push_back({"c.png", "dog", true});
        const auto pairs = kto::make_dpo_pairs(mixed);
        QCOMPARE(pairs.size(), size_t(1));
        QCOMPARE(pairs[0].first, size_t(2));
        QCOMPARE(pairs[0].second, size_t(1));
    }

    void samplerHonoursPositiveRatioAndRestoresState() {
        std::vector<bool> labels(50, false);
        labels[3] = labels[17] = true;  // 2 liked of 50
        kto::BatchSampler s(labels, 0.8, 42);
        int liked = 0;
        const int n = 20000;
        for (int i = 0; i < n; ++i) liked += labels[s.next_index()] ? 1 : 0;
        QVERIFY2(std::abs(liked / double(n) - 0.8) < 0.02, qPrintable(QString::number(liked / double(n))));
        const auto st = s.state();
        std::vector<size_t> a, b;
        for (int i = 0; i < 10; ++i) a.push_back(s.next_index());
        kto::BatchSampler t(labels, 0.8, 7);
        t.set_state(st);
        for (int i = 0; i < 10; ++i) b.push_back(t.next_index());
        QCOMPARE(a, b);
        QVERIFY_EXCEPTION_THROWN(t.set_state("garbage"), kto::Error);
    }

    void sha256KnownAnswers() {
        QCOMPARE(kto::sha256_hex(""),
                 std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        QCOMPARE(kto::sha256_hex("abc"),
                 std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        QCOMPARE(kto::sha256_hex(std::string(1000, 'a')),
                 std::string("41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"));
    }

    void latentCacheSecondRunDoesNoEncoderWork() {
        QTemporaryDir tmp;
        const fs::path d(tmp.path().toStdString());
        write_png(d / "img" / "a.png", 32, 32, 10);
        write_png(d / "img" / "b.png", 48, 32, 200);
        write_text(d / "img" / "bad.png", "garbage");
        std::vector<kto::TrainRecord> recs = {{(d / "img/a.png").string(), "a cat", true},
                                              {(d / "img/b.png").string(), "a dog", false},
                                              {(d / "img/bad.png").string(), "a cow", false},
                                              {(d / "img/gone.png").string(), "a pig", true}};
        const std::string cache_dir = (d / "cache").string();

        FakeEncoders fake1;
        std::vector<kto::SkippedImage> skipped;
        kto::LatentCache first(cache_dir);
        const auto l1 = first.image_latents(recs, 16, fake1.make(), skipped);
        const auto t1 = first.text_embeddings({"a cat", "a dog", "", "a cat"}, fake1.make());
        QCOMPARE(skipped.size(), size_t(2));
        QVERIFY2(QString::fromStdString(skipped[0].reason).contains("not a PNG, JPEG, GIF or BMP image"), skipped[0].reason.c_str());
        QVERIFY(QString::fromStdString(skipped[1].reason).contains("not found"));
        QCOMPARE(fake1.images, 4);  // 2 good images, each with its mirror
        QCOMPARE(fake1.texts, 3);   // duplicates encoded once
        QVERIFY(l1[0].mean.defined() && !l1[2].mean.defined());
        QCOMPARE(l1[0].mean.sizes(), (c10::IntArrayRef{2, 4, 2, 2}));
        // Index 1 is the mirrored image's encoding.
        auto px = kto::load_training_image(recs[0].image_path, 16).flip({2}).unsqueeze(0);
        auto want = torch::avg_pool2d(px, 8).narrow(1, 0, 3).repeat({1, 2, 1, 1}).narrow(1, 0, 4)[0];
        QVERIFY(torch::allclose(l1[0].mean[1], want, 1e-5, 1e-6));

        FakeEncoders fake2;
        skipped.clear();
        kto::LatentCache second(cache_dir);
        const auto l2 = second.image_latents(recs, 16, fake2.make(), skipped);
        const auto t2 = second.text_embeddings({"a cat", "a dog", ""}, fake2.make());
        QCOMPARE(fake2.image_calls, 0);
        QCOMPARE(fake2.text_calls, 0);
        QCOMPARE(second.stats().image_hits, int64_t(2));
        QCOMPARE(second.stats().text_hits, int64_t(3));
        QVERIFY(torch::equal(l1[1].mean, l2[1].mean));
        QVERIFY(torch::equal(t1[1], t2[1]));

        // Another VAE identity or resolution is another entry.
        FakeEncoders fake3;
        auto enc3 = fake3.make();
        enc3.vae_identity = "fake-vae-2";
        skipped.clear();
        kto::LatentCache(cache_dir).image_latents(recs, 16, enc3, skipped);
        QCOMPARE(fake3.images, 4);
    }
};

QTEST_GUILESS_MAIN(TestTrainingData)
#include "test_training_data.moc"
