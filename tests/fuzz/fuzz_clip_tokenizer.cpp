// The CLIP tokenizer on arbitrary prompt bytes (invalid UTF-8, control characters, special-token
// look-alikes, very long words), with the tiny-sd reference vocabulary (CLIP's merges) and the demo
// model's. Properties: ids are in the vocabulary, BOS/EOS frame them, encode() pads/truncates to
// max_length and agrees with encode_ids().
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/text/clip_tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

const kto::CLIPTokenizer& tokenizer(bool demo) {
    static const kto::CLIPTokenizer reference = kto::CLIPTokenizer::from_folder(KTO_FUZZ_TOKENIZER_DIR);
    static const kto::CLIPTokenizer demo_tok = kto::CLIPTokenizer::from_folder(KTO_FUZZ_DEMO_TOKENIZER_DIR);
    return demo ? demo_tok : reference;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const kto::CLIPTokenizer& tok = tokenizer(data[0] & 1);
    const std::string prompt(reinterpret_cast<const char*>(data + 1), size - 1);
    try {
        const std::vector<int64_t> ids = tok.encode_ids(prompt);
        KTO_FUZZ_CHECK(ids.size() >= 2);
        KTO_FUZZ_CHECK(ids.front() == tok.bos_id() && ids.back() == tok.eos_id());
        const auto pieces = tok.tokenize(prompt);
        KTO_FUZZ_CHECK(pieces.size() + 2 == ids.size());
        (void)tok.decode(ids);
        (void)tok.decode(ids, false);
        const kto::TokenizedPrompts enc = tok.encode({prompt});
        KTO_FUZZ_CHECK(enc.input_ids.size(1) == tok.max_length());
        KTO_FUZZ_CHECK(enc.num_tokens[0] == std::min(static_cast<int>(ids.size()), enc.count_limit));
        KTO_FUZZ_CHECK(enc.truncated[0] == (static_cast<int>(ids.size()) > tok.max_length()));
        const auto row = enc.input_ids[0];
        KTO_FUZZ_CHECK(row[0].item<int64_t>() == tok.bos_id());
        const int64_t n = std::min<int64_t>(static_cast<int64_t>(ids.size()), tok.max_length());
        KTO_FUZZ_CHECK(row[n - 1].item<int64_t>() == tok.eos_id());
        KTO_FUZZ_CHECK(row.min().item<int64_t>() >= 0);
        const std::string cleaned = kto::CLIPTokenizer::clean_text(prompt);
        (void)kto::CLIPTokenizer::split_words(cleaned);
    } catch (const kto::Error&) {
    }
    return 0;
}
