#pragma once
// CLIP's byte-level BPE tokenizer, identical in output to transformers' slow CLIPTokenizer as
// StableDiffusionPipeline calls it (ftfy not installed; see shared/reference/README.md):
//   1. added/special tokens ("<|startoftext|>", "<|endoftext|>", the pad token, ...) written in
//      the prompt are split out first and map straight to their ids;
//   2. each remaining piece is cleaned like BasicTokenizer(strip_accents=False,
//      do_split_on_punc=False): control characters dropped, whitespace -> space, spaces around
//      CJK ideographs, Unicode NFC, split on whitespace, lower-cased, re-joined with one space;
//   3. CLIP's regex splits it into words (letter runs, single digits, punctuation runs,
//      contractions), whose UTF-8 bytes are mapped to printable characters and BPE-merged
//      with "</w>" marking the end of a word;
//   4. BOS + ids + EOS, truncated to max_length (EOS kept last), padded with the pad token.
// Unicode data (categories, NFC, full lower-casing incl. final sigma) comes from ICU, whose
// Unicode version may differ from Python's for characters added in the latest versions.
// A CLIPTokenizer is immutable after construction: all methods are const and thread-safe.
#include <torch/torch.h>

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace kto {

struct TokenizedPrompts {
    torch::Tensor input_ids;       // I64 [P, max_length]: BOS, tokens, EOS, pad...
    torch::Tensor attention_mask;  // I64 [P, max_length]: 1 up to and including EOS, 0 on padding
    std::vector<bool> truncated;   // per prompt: the prompt had more than max_length - 2 tokens
    // Per prompt: untruncated length, BOS and EOS included, counted up to count_limit (a longer
    // prompt reports count_limit; encode() stops tokenizing there, so a pasted novel costs no more
    // than a long prompt).
    std::vector<int> num_tokens;
    int count_limit = 0;
};

struct CLIPTokenizerSpecialTokens {
    std::string bos = "<|startoftext|>";
    std::string eos = "<|endoftext|>";
    std::string unk = "<|endoftext|>";
    std::string pad = "<|endoftext|>";  // SD 1.x: "<|endoftext|>"; SD 2.x: "!"
    int max_length = 77;                // model_max_length
};

class CLIPTokenizer {
public:
    // Reads `dir`/vocab.json, merges.txt and, when present, tokenizer_config.json and
    // special_tokens_map.json (which wins, as in transformers). Errors name the file.
    static CLIPTokenizer from_folder(const std::string& dir);

    // vocab: token -> id. merges: the lines of merges.txt in order, first line ("#version")
    // included (it is skipped, and at most 48894 merges are used, as CLIP does).
    // added_tokens: extra tokens split out before BPE (content -> id), specials are added.
    // Their lstrip/rstrip flags need no handling: CLIP never turns whitespace into tokens.
    CLIPTokenizer(std::unordered_map<std::string, int64_t> vocab,
                  const std::vector<std::string>& merges_lines, CLIPTokenizerSpecialTokens specials,
                  const std::map<std::string, int64_t>& added_tokens = {},
                  const std::string& source = "tokenizer");

    // What the pipeline feeds the text encoder: `prompts` tokenized, padded/truncated.
    TokenizedPrompts encode(const std::vector<std::string>& prompts) const;
    // Untruncated ids of one prompt with BOS and EOS (== Python `tokenizer(prompt).input_ids`);
    // tokenizing stops after max_tokens tokens between BOS and EOS.
    std::vector<int64_t> encode_ids(const std::string& prompt,
                                    size_t max_tokens = std::numeric_limits<size_t>::max()) const;
    // The token strings of one prompt, without BOS/EOS ("a</w>", "photo</w>", ...); stops once
    // max_tokens are produced.
    std::vector<std::string> tokenize(const std::string& prompt,
                                      size_t max_tokens = std::numeric_limits<size_t>::max()) const;
    // BPE is quadratic in a word's length: a word longer than this many bytes is merged in pieces
    // of this size ("</w>" on the last), where transformers would merge across the cuts. No real
    // prompt has such a word; a hostile one (megabytes without a space) stays linear.
    static constexpr size_t kMaxWordBytes = 256;
    // Text of ids (specials skipped when skip_special): for display only.
    std::string decode(const std::vector<int64_t>& ids, bool skip_special = true) const;

    int64_t bos_id() const { return bos_id_; }
    int64_t eos_id() const { return eos_id_; }
    int64_t pad_id() const { return pad_id_; }
    int64_t unk_id() const { return unk_id_; }
    int max_length() const { return specials_.max_length; }
    size_t vocab_size() const { return vocab_.size(); }
    const CLIPTokenizerSpecialTokens& special_tokens() const { return specials_; }

    // The cleaned, lower-cased text the regex runs on (step 2 above); exposed for tests.
    static std::string clean_text(const std::string& text);
    // CLIP's regex split of cleaned text (step 3, before byte mapping); exposed for tests.
    static std::vector<std::string> split_words(const std::string& cleaned);

private:
    std::vector<std::string> bpe(const std::string& word, bool ends_word = true) const;
    int64_t token_id(const std::string& token) const;
    // Pieces of `text` between added tokens; added tokens are returned as themselves with
    // is_added set.
    std::vector<std::pair<std::string, bool>> split_added(const std::string& text) const;

    std::unordered_map<std::string, int64_t> vocab_;
    std::unordered_map<int64_t, std::string> id_to_token_;
    std::unordered_map<std::string, int> merge_ranks_;  // "first second" -> rank
    std::map<std::string, int64_t> added_;              // added tokens incl. specials -> id
    CLIPTokenizerSpecialTokens specials_;
    int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0;
};

}  // namespace kto
