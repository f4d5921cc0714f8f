#include "core/text/clip_tokenizer.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/common/error.h"
#include "core/io/model_folder.h"

namespace fs = std::filesystem;

namespace kto {
namespace {

// CLIP keeps the first 49152 - 256 - 2 merges of merges.txt (after its "#version" line).
constexpr size_t kMaxMerges = 49152 - 256 - 2;
// transformers' VERY_LARGE_INTEGER and similar "unset" model_max_length values.
constexpr double kUnsetMaxLength = 1e9;

// ---- UTF-8 / UTF-16 ------------------------------------------------------------------------

std::u32string utf8_decode(const std::string& s) {
    std::u32string out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const unsigned char c = p[i];
        char32_t cp = 0xFFFD;
        size_t len = 1;
        if (c < 0x80) {
            cp = c;
        } else if (c >= 0xC2 && c <= 0xF4) {
            const size_t need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            char32_t v = c & (need == 2 ? 0x1F : need == 3 ? 0x0F : 0x07);
            size_t k = 1;
            for (; k < need && i + k < n && (p[i + k] & 0xC0) == 0x80; ++k)
                v = (v << 6) | (p[i + k] & 0x3F);
            const bool complete = k == need;
            const bool shortest =
                (need == 2) || (need == 3 && v >= 0x800) || (need == 4 && v >= 0x10000);
            if (complete && shortest && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF)) {
                cp = v;
                len = need;
            } else {
                len = std::max<size_t>(1, k);  // replace the maximal invalid subpart
            }
        }
        out.push_back(cp);
        i += len;
    }
    return out;
}

void utf8_append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

std::string utf8_encode(const std::u32string& s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t cp : s) utf8_append(out, cp);
    return out;
}

std::u16string to_utf16(const std::u32string& s) {
    std::u16string out;
    out.reserve(s.size());
    for (char32_t cp : s) {
        if (cp >= 0x10000) {
            cp -= 0x10000;
            out += static_cast<char16_t>(0xD800 + (cp >> 10));
            out += static_cast<char16_t>(0xDC00 + (cp & 0x3FF));
        } else {
            out += static_cast<char16_t>(cp);
        }
    }
    return out;
}

std::u32string from_utf16(const std::u16string& s) {
    std::u32string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        char32_t c = s[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < s.size() && s[i + 1] >= 0xDC00 &&
            s[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
            ++i;
        }
        out += c;
    }
    return out;
}

// ---- Unicode properties (Python unicodedata / str semantics) ---------------------------------

uint32_t gc_mask(char32_t c) { return U_GET_GC_MASK(static_cast<UChar32>(c)); }
bool is_letter(char32_t c) { return gc_mask(c) & U_GC_L_MASK; }
bool is_number(char32_t c) { return gc_mask(c) & U_GC_N_MASK; }

// BasicTokenizer._is_whitespace: space, \t, \n, \r or category Zs.
bool is_bert_whitespace(char32_t c) {
    return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' || (gc_mask(c) & U_GC_ZS_MASK);
}
// BasicTokenizer._is_control: any category C* except \t, \n, \r.
bool is_bert_control(char32_t c) {
    if (c == U'\t' || c == U'\n' || c == U'\r') return false;
    return gc_mask(c) & U_GC_C_MASK;
}
// BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks.
bool is_cjk(char32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}
// Python's str.isspace() (what str.split() splits on).
bool is_py_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

std::u32string nfc(const std::u32string& s) {
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2* n = unorm2_getNFCInstance(&err);
    if (U_FAILURE(err))
        throw Error(std::string("ICU NFC normaliser unavailable: ") + u_errorName(err));
    const std::u16string src = to_utf16(s);
    if (unorm2_isNormalized(n, reinterpret_cast<const UChar*>(src.data()), int32_t(src.size()),
                            &err) &&
        U_SUCCESS(err))
        return s;
    err = U_ZERO_ERROR;
    std::u16string dst(src.size() * 3 + 16, u'\0');
    const int32_t len =
        unorm2_normalize(n, reinterpret_cast<const UChar*>(src.data()), int32_t(src.size()),
                         reinterpret_cast<UChar*>(dst.data()), int32_t(dst.size()), &err);
    if (U_FAILURE(err)) throw Error(std::string("NFC normalisation failed: ") + u_errorName(err));
    dst.resize(size_t(len));
    return from_utf16(dst);
}

// Python's str.lower(): full lower-case mapping with the final-sigma rule (ICU root locale).
std::u32string lower(const std::u32string& s) {
    const std::u16string src = to_utf16(s);
    std::u16string dst(src.size() * 3 + 16, u'\0');
    UErrorCode err = U_ZERO_ERROR;
    const int32_t len =
        u_strToLower(reinterpret_cast<UChar*>(dst.data()), int32_t(dst.size()),
                     reinterpret_cast<const UChar*>(src.data()), int32_t(src.size()), "", &err);
    if (U_FAILURE(err)) throw Error(std::string("lower-casing failed: ") + u_errorName(err));
    dst.resize(size_t(len));
    return from_utf16(dst);
}

std::vector<std::u32string> split_py_whitespace(const std::u32string& s) {
    std::vector<std::u32string> out;
    std::u32string cur;
    for (char32_t c : s) {
        if (is_py_space(c)) {
            if (!cur.empty()) out.push_back(std::move(cur));
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(std::move(cur));
    return out;
}

// ---- byte-level BPE ------------------------------------------------------------------------

// CLIP's bytes_to_unicode(): printable bytes map to themselves, the rest to U+0100 onwards.
const std::vector<std::string>& byte_encoder() {
    static const std::vector<std::string> table = [] {
        std::vector<char32_t> cs(256, 0);
        std::vector<bool> printable(256, false);
        for (int b = '!'; b <= '~'; ++b) printable[size_t(b)] = true;
        for (int b = 0xA1; b <= 0xAC; ++b) printable[size_t(b)] = true;
        for (int b = 0xAE; b <= 0xFF; ++b) printable[size_t(b)] = true;
        int n = 0;
        for (int b = 0; b < 256; ++b)
            cs[size_t(b)] = printable[size_t(b)] ? char32_t(b) : char32_t(256 + n++);
        std::vector<std::string> t(256);
        for (int b = 0; b < 256; ++b) utf8_append(t[size_t(b)], cs[size_t(b)]);
        return t;
    }();
    return table;
}

bool starts_with_ci(const std::u32string& s, size_t i, const char* lit) {
    for (size_t k = 0; lit[k]; ++k) {
        if (i + k >= s.size()) return false;
        char32_t c = s[i + k];
        if (c >= U'A' && c <= U'Z') c += 32;
        if (c != char32_t(static_cast<unsigned char>(lit[k]))) return false;
    }
    return true;
}

std::vector<std::string> split_utf8_chars(const std::string& s) {
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        out.push_back(s.substr(i, len));
        i += len;
    }
    return out;
}

std::string token_content(const nlohmann::json& v, const std::string& where) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string())
        return v["content"].get<std::string>();
    throw Error(where + " must be a string or an object with 'content'");
}

}  // namespace

// ---- construction ----------------------------------------------------------------------------

CLIPTokenizer::CLIPTokenizer(std::unordered_map<std::string, int64_t> vocab,
                             const std::vector<std::string>& merges_lines,
                             CLIPTokenizerSpecialTokens specials,
                             const std::map<std::string, int64_t>& added_tokens,
                             const std::string& source)
    : vocab_(std::move(vocab)), specials_(std::move(specials)) {
    if (vocab_.empty()) throw Error(source + ": empty vocabulary");
    if (specials_.max_length < 2) throw Error(source + ": model_max_length must be at least 2");
    for (const auto& [tok, id] : vocab_) id_to_token_[id] = tok;
    for (size_t i = 1; i < merges_lines.size() && i <= kMaxMerges; ++i) {
        std::istringstream ls(merges_lines[i]);
        std::vector<std::string> parts;
        for (std::string p; ls >> p;) parts.push_back(p);
        // Lines that are not a pair still take a rank (as in Python) but can never match.
        if (parts.size() == 2) merge_ranks_.emplace(parts[0] + " " + parts[1], int(i - 1));
    }
    for (const auto& [tok, id] : added_tokens) {
        auto v = vocab_.find(tok);
        added_[tok] = v != vocab_.end() ? v->second : id;
        id_to_token_.emplace(added_[tok], tok);
    }
    auto special_id = [&](const std::string& tok, const char* what) -> int64_t {
        auto v = vocab_.find(tok);
        if (v != vocab_.end()) return v->second;
        auto a = added_.find(tok);
        if (a != added_.end()) return a->second;
        throw Error(source + ": " + what + " '" + tok + "' is not in the vocabulary");
    };
    bos_id_ = special_id(specials_.bos, "bos_token");
    eos_id_ = special_id(specials_.eos, "eos_token");
    unk_id_ = special_id(specials_.unk, "unk_token");
    pad_id_ = special_id(specials_.pad, "pad_token");
    for (const auto* t : {&specials_.bos, &specials_.eos, &specials_.unk, &specials_.pad})
        added_[*t] = special_id(*t, "special token");
}

CLIPTokenizer CLIPTokenizer::from_folder(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw Error(dir + ": tokenizer folder not found");
    const fs::path d(dir);
    const std::string vocab_path = (d / "vocab.json").string();
    const nlohmann::json vj = read_json_file(vocab_path);
    if (!vj.is_object()) throw Error(vocab_path + ": expected a JSON object {token: id}");
    std::unordered_map<std::string, int64_t> vocab;
    for (auto it = vj.begin(); it != vj.end(); ++it) {
        if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
            throw Error(vocab_path + ": id of token '" + it.key() +
                        "' must be a non-negative integer");
        vocab.emplace(it.key(), it.value().get<int64_t>());
    }

    const std::string merges_path = (d / "merges.txt").string();
    std::ifstream mf(merges_path, std::ios::binary);
    if (!mf) throw Error(merges_path + ": file not found");
    std::stringstream buf;
    buf << mf.rdbuf();
    std::string text = buf.str();
    // Python: read().strip().split("\n")
    const char* ws = " \t\n\r\f\v";
    const size_t b = text.find_first_not_of(ws), e = text.find_last_not_of(ws);
    text = b == std::string::npos ? std::string() : text.substr(b, e - b + 1);
    std::vector<std::string> lines;
    for (size_t pos = 0;;) {
        const size_t nl = text.find('\n', pos);
        lines.push_back(text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
        if (nl == std::string::npos) break;
        pos = nl + 1;
    }

    CLIPTokenizerSpecialTokens specials;
    std::map<std::string, int64_t> added;
    const std::string cfg_path = (d / "tokenizer_config.json").string();
    if (fs::exists(cfg_path, ec)) {
        const JsonConfig cfg = JsonConfig::from_file(cfg_path);
        const nlohmann::json& j = cfg.json();
        if (cfg.has("model_max_length")) {
            const auto& v = j["model_max_length"];
            if (!v.is_number() || v.get<double>() < 2)
                cfg.fail("model_max_length", "must be a number >= 2");
            // "Unset" (huge) values fall back to CLIP's context length.
            specials.max_length = v.get<double>() >= kUnsetMaxLength ? 77 : int(v.get<double>());
        }
        for (auto [key, field] : {std::pair{"bos_token", &specials.bos},
                                  {"eos_token", &specials.eos},
                                  {"unk_token", &specials.unk},
                                  {"pad_token", &specials.pad}})
            if (cfg.has(key)) *field = token_content(j[key], cfg_path + ": '" + key + "'");
        if (cfg.has("added_tokens_decoder")) {
            const auto& atd = j["added_tokens_decoder"];
            if (!atd.is_object()) cfg.fail("added_tokens_decoder", "must be an object {id: token}");
            for (auto it = atd.begin(); it != atd.end(); ++it) {
                int64_t id = 0;
                try {
                    size_t used = 0;
                    id = std::stoll(it.key(), &used);
                    if (used != it.key().size()) throw std::invalid_argument("id");
                } catch (const std::exception&) {
                    cfg.fail("added_tokens_decoder", "key '" + it.key() + "' is not a token id");
                }
                added[token_content(it.value(), cfg_path + ": added token " + it.key())] = id;
            }
        }
    }
    const std::string map_path = (d / "special_tokens_map.json").string();
    if (fs::exists(map_path, ec)) {
        const JsonConfig m = JsonConfig::from_file(map_path);
        for (auto [key, field] : {std::pair{"bos_token", &specials.bos},
                                  {"eos_token", &specials.eos},
                                  {"unk_token", &specials.unk},
                                  {"pad_token", &specials.pad}})
            if (m.has(key)) *field = token_content(m.json()[key], map_path + ": '" + key + "'");
    }
    return CLIPTokenizer(std::move(vocab), lines, specials, added, dir);
}

// ---- text clean-up and word split ------------------------------------------------------------

std::string CLIPTokenizer::clean_text(const std::string& text) {
    std::u32string cleaned;
    for (char32_t c : utf8_decode(text)) {
        if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
        if (is_bert_whitespace(c)) {
            cleaned += U' ';
        } else if (is_cjk(c)) {
            cleaned += U' ';
            cleaned += c;
            cleaned += U' ';
        } else {
            cleaned += c;
        }
    }
    std::u32string joined;
    for (const auto& tok : split_py_whitespace(nfc(cleaned))) {
        for (const auto& t : split_py_whitespace(lower(tok))) {
            if (!joined.empty()) joined += U' ';
            joined += t;
        }
    }
    return utf8_encode(joined);
}

std::vector<std::string> CLIPTokenizer::split_words(const std::string& cleaned) {
    // <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
    // (case-insensitive), matched leftmost-first like re.findall.
    const std::u32string s = utf8_decode(cleaned);
    std::vector<std::string> out;
    size_t i = 0;
    const size_t n = s.size();
    auto emit = [&](size_t len) {
        out.push_back(utf8_encode(s.substr(i, len)));
        i += len;
    };
    while (i < n) {
        const char32_t c = s[i];
        if (is_py_space(c)) {
            ++i;
            continue;
        }
        bool matched = false;
        for (const char* lit :
             {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
            if (starts_with_ci(s, i, lit)) {
                emit(std::char_traits<char>::length(lit));
                matched = true;
                break;
            }
        }
        if (matched) continue;
        size_t j = i + 1;
        if (is_letter(c)) {
            while (j < n && is_letter(s[j])) ++j;
        } else if (!is_number(c)) {
            while (j < n && !is_py_space(s[j]) && !is_letter(s[j]) && !is_number(s[j])) ++j;
        }
        emit(j - i);
    }
    return out;
}

std::vector<std::pair<std::string, bool>> CLIPTokenizer::split_added(
    const std::string& text) const {
    // Leftmost, then longest, occurrence of any added token (transformers' Trie.split).
    std::vector<std::pair<std::string, bool>> out;
    size_t start = 0, i = 0;
    while (i < text.size()) {
        size_t best = 0;
        for (const auto& [tok, id] : added_)
            if (tok.size() > best && text.compare(i, tok.size(), tok) == 0) best = tok.size();
        if (best == 0) {
            ++i;
            continue;
        }
        if (i > start) out.emplace_back(text.substr(start, i - start), false);
        out.emplace_back(text.substr(i, best), true);
        i += best;
        start = i;
    }
    if (start < text.size()) out.emplace_back(text.substr(start), false);
    return out;
}

std::vector<std::string> CLIPTokenizer::bpe(const std::string& token, bool ends_word) const {
    if (token == "<|startoftext|>" || token == "<|endoftext|>") return {token};
    std::vector<std::string> word = split_utf8_chars(token);
    if (word.empty()) return {};
    if (ends_word) word.back() += "</w>";
    while (word.size() > 1) {
        int best_rank = std::numeric_limits<int>::max();
        size_t best_at = 0;
        for (size_t k = 0; k + 1 < word.size(); ++k) {
            auto r = merge_ranks_.find(word[k] + " " + word[k + 1]);
            if (r != merge_ranks_.end() && r->second < best_rank) {
                best_rank = r->second;
                best_at = k;
            }
        }
        if (best_rank == std::numeric_limits<int>::max()) break;
        const std::string first = word[best_at], second = word[best_at + 1];
        std::vector<std::string> merged;
        merged.reserve(word.size());
        for (size_t k = 0; k < word.size();) {
            if (k + 1 < word.size() && word[k] == first && word[k + 1] == second) {
                merged.push_back(first + second);
                k += 2;
            } else {
                merged.push_back(word[k]);
                ++k;
            }
        }
        word = std::move(merged);
    }
    return word;
}

int64_t CLIPTokenizer::token_id(const std::string& token) const {
    auto v = vocab_.find(token);
    return v != vocab_.end() ? v->second : unk_id_;
}

// ---- encoding ------------------------------------------------------------------------------

std::vector<std::string> CLIPTokenizer::tokenize(const std::string& prompt, size_t max_tokens) const {
    std::vector<std::string> tokens;
    if (max_tokens == 0) return tokens;
    const auto& enc = byte_encoder();
    for (const auto& [piece, is_added] : split_added(prompt)) {
        if (is_added) {
            tokens.push_back(piece);
            if (tokens.size() >= max_tokens) return tokens;
            continue;
        }
        for (const auto& w : split_words(clean_text(piece))) {
            for (size_t at = 0; at < w.size(); at += kMaxWordBytes) {  // one piece for any real word
                const size_t end = std::min(w.size(), at + kMaxWordBytes);
                std::string mapped;
                for (size_t b = at; b < end; ++b) mapped += enc[static_cast<unsigned char>(w[b])];
                for (auto& t : bpe(mapped, end == w.size())) {
                    tokens.push_back(std::move(t));
                    if (tokens.size() >= max_tokens) return tokens;
                }
            }
        }
    }
    return tokens;
}

std::vector<int64_t> CLIPTokenizer::encode_ids(const std::string& prompt, size_t max_tokens) const {
    std::vector<int64_t> ids{bos_id_};
    for (const auto& t : tokenize(prompt, max_tokens)) {
        auto a = added_.find(t);
        ids.push_back(a != added_.end() ? a->second : token_id(t));
    }
    ids.push_back(eos_id_);
    return ids;
}

TokenizedPrompts CLIPTokenizer::encode(const std::vector<std::string>& prompts) const {
    const int64_t P = int64_t(prompts.size()), L = specials_.max_length;
    TokenizedPrompts out;
    out.input_ids = torch::full({P, L}, pad_id_, torch::kInt64);
    out.attention_mask = torch::zeros({P, L}, torch::kInt64);
    auto ids_a = out.input_ids.accessor<int64_t, 2>();
    auto mask_a = out.attention_mask.accessor<int64_t, 2>();
    out.count_limit = int(std::min<int64_t>(8 * L, std::numeric_limits<int>::max()));
    for (int64_t p = 0; p < P; ++p) {
        // BOS, at most count_limit - 1 tokens, EOS: one id over the limit is enough to report it.
        std::vector<int64_t> ids = encode_ids(prompts[size_t(p)], size_t(out.count_limit - 1));
        out.num_tokens.push_back(std::min(int(ids.size()), out.count_limit));
        const bool truncated = int64_t(ids.size()) > L;
        out.truncated.push_back(truncated);
        if (truncated) {  // keep BOS + the first L-2 tokens, EOS last
            ids.resize(size_t(L));
            ids.back() = eos_id_;
        }
        for (size_t k = 0; k < ids.size(); ++k) {
            ids_a[p][int64_t(k)] = ids[k];
            mask_a[p][int64_t(k)] = 1;
        }
    }
    return out;
}

std::string CLIPTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
    // Inverse byte map: printable character (UTF-8) -> byte.
    static const std::unordered_map<std::string, unsigned char> byte_decoder = [] {
        std::unordered_map<std::string, unsigned char> m;
        const auto& enc = byte_encoder();
        for (int b = 0; b < 256; ++b) m[enc[size_t(b)]] = static_cast<unsigned char>(b);
        return m;
    }();
    std::string text;
    for (int64_t id : ids) {
        auto t = id_to_token_.find(id);
        if (t == id_to_token_.end()) continue;
        if (added_.count(t->second)) {
            if (!skip_special) text += t->second;
            continue;
        }
        text += t->second;
    }
    std::string bytes;
    for (const auto& ch : split_utf8_chars(text)) {
        auto b = byte_decoder.find(ch);
        bytes += b != byte_decoder.end() ? std::string(1, char(b->second)) : ch;
    }
    std::string out;
    for (size_t pos = 0;;) {  // "</w>" ends a word
        const size_t w = bytes.find("</w>", pos);
        out += bytes.substr(pos, w == std::string::npos ? std::string::npos : w - pos);
        if (w == std::string::npos) break;
        out += ' ';
        pos = w + 4;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

}  // namespace kto
