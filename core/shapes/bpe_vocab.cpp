#include "core/shapes/bpe_vocab.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/common/error.h"
#include "core/shapes/caption.h"
#include "core/shapes/scene.h"

namespace kto::shapes {

namespace {

std::string utf8(int cp) {
    std::string s;
    if (cp < 0x80) {
        s += char(cp);
    } else if (cp < 0x800) {
        s += char(0xC0 | (cp >> 6));
        s += char(0x80 | (cp & 0x3F));
    } else {
        s += char(0xE0 | (cp >> 12));
        s += char(0x80 | ((cp >> 6) & 0x3F));
        s += char(0x80 | (cp & 0x3F));
    }
    return s;
}

// Splits a word into its byte symbols, the last carrying "</w>" (as CLIP's bpe() does).
std::vector<std::string> word_symbols(const std::string& word,
                                      const std::map<int, std::string>& byte_sym) {
    std::vector<std::string> out;
    for (unsigned char ch : word) out.push_back(byte_sym.at(ch));
    if (!out.empty()) out.back() += "</w>";
    return out;
}

void write_text(const std::filesystem::path& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary);
    if (!f) throw Error(path.string() + ": cannot open for writing");
    f << text;
    if (!f) throw Error(path.string() + ": write failed");
}

nlohmann::ordered_json added_token(const std::string& content) {
    nlohmann::ordered_json t;
    t["__type"] = "AddedToken";
    t["content"] = content;
    t["lstrip"] = false;
    t["normalized"] = true;
    t["rstrip"] = false;
    t["single_word"] = false;
    return t;
}

}  // namespace

std::vector<std::pair<int, std::string>> clip_byte_symbols() {
    std::vector<int> bs;
    for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
    std::set<int> printable(bs.begin(), bs.end());
    std::vector<std::pair<int, std::string>> out;
    for (int b : bs) out.emplace_back(b, utf8(b));
    int n = 0;
    for (int b = 0; b < 256; ++b)
        if (!printable.count(b)) out.emplace_back(b, utf8(256 + n++));
    return out;
}

BpeVocab learn_bpe(const std::map<std::string, int64_t>& word_counts, int max_merges,
                   int64_t min_count) {
    BpeVocab v;
    const auto table = clip_byte_symbols();
    std::map<int, std::string> byte_sym;
    for (const auto& [b, s] : table) {
        byte_sym[b] = s;
        v.tokens.push_back(s);
    }
    for (const auto& [b, s] : table) v.tokens.push_back(s + "</w>");

    std::vector<std::pair<std::vector<std::string>, int64_t>> words;
    for (const auto& [w, c] : word_counts) {
        if (w.empty() || c <= 0) continue;
        words.emplace_back(word_symbols(w, byte_sym), c);
    }
    std::set<std::string> known(v.tokens.begin(), v.tokens.end());
    for (int m = 0; m < max_merges; ++m) {
        std::map<std::pair<std::string, std::string>, int64_t> pairs;
        for (const auto& [syms, c] : words)
            for (size_t i = 0; i + 1 < syms.size(); ++i) pairs[{syms[i], syms[i + 1]}] += c;
        // std::map iterates in text order, so the first pair with the top count wins ties.
        const std::pair<std::string, std::string>* best = nullptr;
        int64_t best_count = 0;
        for (const auto& [p, c] : pairs)
            if (c > best_count) best_count = c, best = &p;
        if (!best || best_count < min_count) break;
        const auto merge = *best;
        const std::string joined = merge.first + merge.second;
        for (auto& [syms, c] : words) {
            std::vector<std::string> next;
            for (size_t i = 0; i < syms.size(); ++i) {
                if (i + 1 < syms.size() && syms[i] == merge.first && syms[i + 1] == merge.second) {
                    next.push_back(joined);
                    ++i;
                } else {
                    next.push_back(syms[i]);
                }
            }
            syms = std::move(next);
        }
        v.merges.push_back(merge);
        if (known.insert(joined).second) v.tokens.push_back(joined);
    }
    v.tokens.push_back("<|startoftext|>");
    v.tokens.push_back("<|endoftext|>");
    return v;
}

BpeVocab build_caption_vocab(uint64_t seed, int n_captions) {
    std::map<std::string, int64_t> counts;
    for (int i = 0; i < n_captions; ++i) {
        Rng rng(seed, uint64_t(i));
        const Scene scene = sample_scene(rng);
        std::istringstream in(sample_caption(scene, rng));
        for (std::string w; in >> w;) counts[w]++;
    }
    // Words the sampler may rarely emit still get whole-word tokens.
    for (const auto& w : caption_words()) counts[w] += 2;
    return learn_bpe(counts);
}

void write_clip_tokenizer(const BpeVocab& vocab, const std::string& dir_path) {
    namespace fs = std::filesystem;
    const fs::path dir(dir_path);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(dir_path + ": cannot create directory: " + ec.message());

    nlohmann::ordered_json vj = nlohmann::ordered_json::object();
    for (size_t i = 0; i < vocab.tokens.size(); ++i) vj[vocab.tokens[i]] = i;
    write_text(dir / "vocab.json", vj.dump());

    std::string merges = "#version: 0.2\n";
    for (const auto& [a, b] : vocab.merges) merges += a + " " + b + "\n";
    write_text(dir / "merges.txt", merges);

    nlohmann::ordered_json cfg;
    cfg["add_prefix_space"] = false;
    cfg["bos_token"] = added_token("<|startoftext|>");
    cfg["do_lower_case"] = true;
    cfg["eos_token"] = added_token("<|endoftext|>");
    cfg["errors"] = "replace";
    cfg["model_max_length"] = 77;
    cfg["pad_token"] = "<|endoftext|>";
    cfg["special_tokens_map_file"] = "./special_tokens_map.json";
    cfg["tokenizer_class"] = "CLIPTokenizer";
    cfg["unk_token"] = added_token("<|endoftext|>");
    write_text(dir / "tokenizer_config.json", cfg.dump(2) + "\n");

    auto special = [](const std::string& content) {
        nlohmann::ordered_json t;
        t["content"] = content;
        t["lstrip"] = false;
        t["normalized"] = true;
        t["rstrip"] = false;
        t["single_word"] = false;
        return t;
    };
    nlohmann::ordered_json sm;
    sm["bos_token"] = special("<|startoftext|>");
    sm["eos_token"] = special("<|endoftext|>");
    sm["pad_token"] = "<|endoftext|>";
    sm["unk_token"] = special("<|endoftext|>");
    write_text(dir / "special_tokens_map.json", sm.dump(2) + "\n");
}

}  // namespace kto::shapes
