#include <torch/torch.h>
#include <QtTest/QtTest>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/io/model_folder.h"
#include "core/io/safetensors.h"
#include "core/text/clip_tokenizer.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

class TestClipTokenizer : public QObject {
    Q_OBJECT

    std::string tokenizer_dir() const { return kto::test::reference_dir() + "/tiny-sd/tokenizer"; }
    std::string golden_dir() const { return kto::test::reference_dir() + "/golden/tiny-sd"; }

private slots:
    void readsSpecialTokens() {
        const auto tok = kto::CLIPTokenizer::from_folder(tokenizer_dir());
        QCOMPARE(tok.bos_id(), int64_t(998));
        QCOMPARE(tok.eos_id(), int64_t(999));
        QCOMPARE(tok.pad_id(), int64_t(999));
        QCOMPARE(tok.unk_id(), int64_t(999));
        QCOMPARE(tok.max_length(), 77);
        QCOMPARE(tok.vocab_size(), size_t(1000));
    }

    // All golden prompts: ids, attention mask, token strings, untruncated ids, truncated flag.
    void matchesGoldenPrompts() {
        const auto tok = kto::CLIPTokenizer::from_folder(tokenizer_dir());
        const auto meta = kto::read_json_file(golden_dir() + "/tokenizer_prompts.json");
        const auto golden = kto::load_safetensors(golden_dir() + "/tokenizer.safetensors");
        std::vector<std::string> prompts;
        for (const auto& p : meta["prompts"]) prompts.push_back(p["prompt"].get<std::string>());
        QCOMPARE(int(prompts.size()), 21);

        const auto enc = tok.encode(prompts);
        for (size_t i = 0; i < prompts.size(); ++i) {
            const auto& p = meta["prompts"][i];
            const std::string label = "prompt " + std::to_string(i) + ": " + prompts[i];
            // The golden token strings are those of the truncated row: BOS, tokens, EOS.
            const auto tokens = tok.tokenize(prompts[i]);
            const size_t shown = std::min(tokens.size(), size_t(75));
            QVERIFY2(shown + 2 == p["tokens"].size(), label.c_str());
            QCOMPARE(p["tokens"].back().get<std::string>(), std::string("<|endoftext|>"));
            for (size_t k = 0; k < shown; ++k)
                QVERIFY2(tokens[k] == p["tokens"][k + 1].get<std::string>(),
                         (label + " token " + std::to_string(k) + ": " + tokens[k] + " vs " +
                          p["tokens"][k + 1].get<std::string>())
                             .c_str());
            QVERIFY2(tok.encode_ids(prompts[i]) == p["untruncated_ids"].get<std::vector<int64_t>>(),
                     label.c_str());
            QVERIFY2(enc.truncated[i] == p["truncated"].get<bool>(), label.c_str());
            QVERIFY2(enc.num_tokens[i] == p["num_tokens"].get<int>() || enc.truncated[i],
                     label.c_str());
            QVERIFY2(torch::equal(enc.input_ids[int64_t(i)], golden.at("input_ids")[int64_t(i)]),
                     label.c_str());
            QVERIFY2(torch::equal(enc.attention_mask[int64_t(i)],
                                  golden.at("attention_mask")[int64_t(i)]),
                     label.c_str());
        }
        QVERIFY(torch::equal(enc.input_ids, golden.at("input_ids")));
        QVERIFY(torch::equal(enc.attention_mask, golden.at("attention_mask")));
        QCOMPARE(enc.input_ids.scalar_type(), torch::kInt64);
    }

    void emptyAndBlankPrompts() {
        const auto tok = kto::CLIPTokenizer::from_folder(tokenizer_dir());
        const auto enc = tok.encode({"", "   \t\n ", "\u200b"});
        for (int64_t r = 0; r < 3; ++r) {
            QCOMPARE(enc.input_ids[r][0].item<int64_t>(), int64_t(998));
            QCOMPARE(enc.input_ids[r][1].item<int64_t>(), int64_t(999));
            QCOMPARE(enc.attention_mask[r].sum().item<int64_t>(), int64_t(2));
            QCOMPARE(enc.input_ids[r][76].item<int64_t>(), int64_t(999));  // padded with EOS
        }
        QVERIFY(tok.encode({}).input_ids.sizes() == torch::IntArrayRef({0, 77}));
    }

    void hugeWordIsTokenizedInBoundedWork() {
        // A prompt of megabytes with no space (a hostile caption): BPE, quadratic in a word's
        // length, runs on 256-byte pieces and encode() stops counting at 8 x max_length.
        const auto tok = kto::CLIPTokenizer::from_folder(tokenizer_dir());
        const std::string word(4 << 20, 'q');
        const auto enc = tok.encode({word});
        QVERIFY(enc.truncated[0]);
        QCOMPARE(enc.count_limit, 8 * 77);
        QCOMPARE(enc.num_tokens[0], enc.count_limit);
        QCOMPARE(enc.input_ids[0][76].item<int64_t>(), tok.eos_id());
        QCOMPARE(enc.attention_mask[0].sum().item<int64_t>(), int64_t(77));
        // The pieces: the first 256 bytes are merged without "</w>", the last piece with it.
        const std::string piece(kto::CLIPTokenizer::kMaxWordBytes, 'q');
        const auto first = tok.tokenize(piece + piece + "qq");
        const auto alone = tok.tokenize(piece);
        QVERIFY(!first.empty() && !alone.empty());
        QVERIFY(first.back().size() > 4 && first.back().substr(first.back().size() - 4) == "</w>");
        QVERIFY(alone.back().substr(alone.back().size() - 4) == "</w>");
        QCOMPARE(int(tok.tokenize(word, 10).size()), 10);
        // A word at the piece size is one piece: the same tokens as before the limit existed.
        QCOMPARE(tok.encode_ids(piece).size(), alone.size() + 2);
        // encode_ids with a token limit: BOS, the first tokens, EOS; the same ids as unlimited.
        const auto full = tok.encode_ids("a photo of a dog");
        const auto two = tok.encode_ids("a photo of a dog", 2);
        QCOMPARE(two.size(), size_t(4));
        QCOMPARE(two[0], tok.bos_id());
        QCOMPARE(two[1], full[1]);
        QCOMPARE(two[2], full[2]);
        QCOMPARE(two[3], tok.eos_id());
        QCOMPARE(tok.encode_ids(word, 5).size(), size_t(7));
    }

    void longPromptIsTruncatedKeepingEos() {
        const auto tok = kto::CLIPTokenizer::from_folder(tokenizer_dir());
        std::string prompt;
        for (int i = 0; i < 100; ++i) prompt += "a ";
        const auto enc = tok.encode({prompt, "a a a"});
        QVERIFY(enc.truncated[0]);
        QVERIFY(!enc.truncated[1]);
        QCOMPARE(enc.num_tokens[0], 102);
        QCOMPARE(enc.input_ids[0][76].item<int64_t>(), int64_t(999));
        QCOMPARE(enc.input_ids[0][75].item<int64_t>(), int64_t(320));  // "a</w>"
        QCOMPARE(enc.attention_mask[0].sum().item<int64_t>(), int64_t(77));
        // Exactly 75 words fit without truncation.
        std::string fits;
        for (int i = 0; i < 75; ++i) fits += "a ";
        QVERIFY(!tok.encode({fits}).truncated[0]);
    }

    void specialTokensAndEmoji() {
        const auto tok = kto::CLIPTokenizer::from_folder(tokenizer_dir());
        // Written specials map to their ids; upper-case ones are found by CLIP's regex.
        const auto ids = tok.encode_ids("a<|endoftext|>a <|STARTOFTEXT|>");
        QVERIFY((ids == std::vector<int64_t>{998, 320, 999, 320, 998, 999}));
        // An emoji is byte-level BPE'd and decodes back.
        QCOMPARE(tok.decode(tok.encode_ids("a 🐶 dog")), std::string("a 🐶 dog"));
        QCOMPARE(tok.decode(tok.encode_ids("Café")), std::string("café"));
    }

    void textCleanUp() {
        using T = kto::CLIPTokenizer;
        QCOMPARE(T::clean_text("  A\tB\r\nC  "), std::string("a b c"));
        QCOMPARE(T::clean_text("ΣΊΣΥΦΟΣ"), std::string("σίσυφος"));      // final sigma
        QCOMPARE(T::clean_text("İ"), std::string("i\xcc\x87"));          // full lower-casing
        QCOMPARE(T::clean_text("東京x"), std::string("東 京 x"));        // CJK spacing
        QCOMPARE(T::clean_text("e\xcc\x81"), std::string("\xc3\xa9"));   // NFC
        QCOMPARE(T::clean_text("a\u200bb\u00adc"), std::string("abc"));  // Cf dropped
        QCOMPARE(T::clean_text("a\u00a0b\u2028c\u3000d"), std::string("a b c d"));
        QCOMPARE(T::clean_text(std::string("a\xff"
                                           "b",
                                           3)),
                 std::string("ab"));  // invalid UTF-8 dropped
        const auto w = T::split_words("it's 42% <lora:x> don't");
        const std::vector<std::string> expect{"it",   "'s", "4", "2", "%",   "<",
                                              "lora", ":",  "x", ">", "don", "'t"};
        QVERIFY(w == expect);
    }

    void padsWithConfiguredToken() {
        // SD 2.x tokenizers pad with "!" (id 0) and treat it as a special token.
        std::unordered_map<std::string, int64_t> vocab{
            {"!", 0}, {"a</w>", 1}, {"a", 2}, {"<|startoftext|>", 3}, {"<|endoftext|>", 4}};
        kto::CLIPTokenizerSpecialTokens sp;
        sp.pad = "!";
        sp.max_length = 8;
        const kto::CLIPTokenizer tok(vocab, {"#version: 0.2"}, sp);
        const auto enc = tok.encode({"a"});
        QVERIFY(
            torch::equal(enc.input_ids[0], torch::tensor({3, 1, 4, 0, 0, 0, 0, 0}, torch::kInt64)));
        QVERIFY(torch::equal(enc.attention_mask[0],
                             torch::tensor({1, 1, 1, 0, 0, 0, 0, 0}, torch::kInt64)));
    }

    void addedTokensSplitBeforeBpe() {
        std::unordered_map<std::string, int64_t> vocab{
            {"a</w>", 1},         {"a", 2}, {"<|startoftext|>", 3},
            {"<|endoftext|>", 4}, {"Ġ", 5}, {"Ġ</w>", 6}};
        kto::CLIPTokenizerSpecialTokens sp;
        const kto::CLIPTokenizer tok(vocab, {"#version: 0.2"}, sp,
                                     {{"<style>", 7}, {"<plain>", 8}});
        QVERIFY(
            (tok.encode_ids("a <style> a<plain>a") == std::vector<int64_t>{3, 1, 7, 1, 8, 1, 4}));
        QCOMPARE(tok.decode(tok.encode_ids("a <style> a"), false),
                 std::string("<|startoftext|>a <style>a <|endoftext|>"));
    }

    void folderErrorsNameTheFile() {
        QTemporaryDir tmp;
        const fs::path d(tmp.path().toStdString());
        try {
            kto::CLIPTokenizer::from_folder(d.string());
            QFAIL("no error");
        } catch (const kto::Error& e) {
            QVERIFY(std::string(e.what()).find("vocab.json: file not found") != std::string::npos);
        }
        fs::copy_file(tokenizer_dir() + "/vocab.json", d / "vocab.json");
        fs::copy_file(tokenizer_dir() + "/merges.txt", d / "merges.txt");
        std::ofstream(d / "special_tokens_map.json") << R"({"pad_token": "<|nonexistent|>"})";
        try {
            kto::CLIPTokenizer::from_folder(d.string());
            QFAIL("no error");
        } catch (const kto::Error& e) {
            QVERIFY2(
                std::string(e.what()).find(
                    "pad_token '<|nonexistent|>' is not in the vocabulary") != std::string::npos,
                e.what());
        }
    }
};

QTEST_GUILESS_MAIN(TestClipTokenizer)
#include "test_clip_tokenizer.moc"
