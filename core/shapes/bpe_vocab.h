#pragma once
// Builds a CLIP-format BPE vocabulary (vocab.json + merges.txt, same byte-level symbols and special
// tokens as openai/clip-vit-large-patch14) from the caption language, so the real CLIP tokenizer
// code reads it unchanged.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace kto::shapes {

struct BpeVocab {
    std::vector<std::string> tokens;                         // index = token id
    std::vector<std::pair<std::string, std::string>> merges;  // in rank order
    int bos_id() const { return int(tokens.size()) - 2; }
    int eos_id() const { return int(tokens.size()) - 1; }
};

// CLIP's bytes_to_unicode table: byte value -> UTF-8 text of the printable symbol standing for it,
// in CLIP's vocabulary order (printable bytes first).
std::vector<std::pair<int, std::string>> clip_byte_symbols();

// Learns up to `max_merges` BPE merges from word counts (words already lower-case, no spaces):
// the most frequent adjacent pair is merged first, ties broken by the pair's text; stops when the
// best pair occurs fewer than `min_count` times. Ids: 256 byte symbols, 256 with "</w>", merges,
// then <|startoftext|>, <|endoftext|>.
BpeVocab learn_bpe(const std::map<std::string, int64_t>& word_counts, int max_merges = 2000,
                   int64_t min_count = 2);

// Counts the words of `n_captions` captions sampled from the shapes world (stream `seed`) and
// learns a vocabulary from them.
BpeVocab build_caption_vocab(uint64_t seed = 1234, int n_captions = 20000);

// Writes vocab.json, merges.txt ("#version: 0.2" first), tokenizer_config.json and
// special_tokens_map.json (as transformers writes them for CLIPTokenizer) into `dir` (created).
void write_clip_tokenizer(const BpeVocab& vocab, const std::string& dir);

}  // namespace kto::shapes
