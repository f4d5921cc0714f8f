// The A1111 `parameters` chunk: PNG text-chunk walking (read_png_text) on arbitrary bytes, and the
// settings-text parser (parse_generation_parameters). Properties: text stored with add_png_text
// reads back byte for byte; settings that parse format back to text that parses to the same values.
#include <cstdint>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/common/png_text.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

const std::vector<uint8_t>& tiny_png() {
    static const std::vector<uint8_t> png = [] {
        const uint8_t pixels[2 * 2 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9};
        return kto::encode_png(pixels, 2, 2, 3);
    }();
    return png;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        (void)kto::read_png_text(std::vector<uint8_t>(data, data + size));
    } catch (const kto::Error&) {
    }

    // Any text (invalid UTF-8 included) survives the chunk round trip.
    const auto png = kto::add_png_text(tiny_png(), "parameters", text);
    const auto back = kto::read_png_text(png);
    KTO_FUZZ_CHECK(back.count("parameters") == 1);
    KTO_FUZZ_CHECK(back.at("parameters") == text);

    kto::GenerationParameters p;
    try {
        p = kto::parse_generation_parameters(text);
    } catch (const kto::Error&) {
        return 0;
    }
    const std::string formatted = kto::format_generation_parameters(p);
    kto::GenerationParameters q;
    try {
        q = kto::parse_generation_parameters(formatted);
    } catch (const kto::Error& e) {
        std::fprintf(stderr, "formatted settings do not parse back: %s\n", e.what());
        std::abort();
    }
    // The format itself is ambiguous for a prompt with a line starting "Negative prompt: " and no
    // negative prompt (A1111 reads it the same way); everything else must survive.
    const bool ambiguous = p.negative_prompt.empty() && (p.prompt.rfind("Negative prompt: ", 0) == 0 ||
                                                         p.prompt.find("\nNegative prompt: ") != std::string::npos);
    if (!ambiguous) {
        KTO_FUZZ_CHECK(q.prompt == p.prompt);
        KTO_FUZZ_CHECK(q.negative_prompt == p.negative_prompt);
    }
    KTO_FUZZ_CHECK(q.steps == p.steps);
    KTO_FUZZ_CHECK(q.sampler == p.sampler);
    KTO_FUZZ_CHECK(q.cfg_scale == p.cfg_scale || (q.cfg_scale != q.cfg_scale && p.cfg_scale != p.cfg_scale));
    KTO_FUZZ_CHECK(q.seed == p.seed);
    KTO_FUZZ_CHECK(q.width == p.width && q.height == p.height);
    KTO_FUZZ_CHECK(q.model == p.model);
    KTO_FUZZ_CHECK(q.extra == p.extra);
    return 0;
}
