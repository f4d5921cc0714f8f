#pragma once
// A cheap pre-check of JSON text before nlohmann parses it: nesting deeper than any config or
// safetensors header needs is refused with kto::Error. nlohmann's parser copes with any depth, but
// copying, comparing and printing a parsed value recurse once per level, so a file of a few MB of
// "[[[[..." would overflow the stack later (found by tests/fuzz/fuzz_model_config).
#include <cstddef>
#include <string>

#include "core/common/error.h"

namespace kto {

// Deepest nesting accepted in configs, model indexes and safetensors headers (real ones use 3).
constexpr std::size_t kMaxJsonNesting = 128;

// Throws kto::Error("<source>: JSON nested deeper than 128 levels ...") when [begin, end) opens
// more than kMaxJsonNesting arrays/objects at once. Strings (with escapes) are skipped; the text is
// otherwise not validated (the parser does that).
inline void check_json_nesting(const char* begin, const char* end, const std::string& source) {
    std::size_t depth = 0;
    bool in_string = false;
    for (const char* p = begin; p != end; ++p) {
        const char c = *p;
        if (in_string) {
            if (c == '\\') {
                if (p + 1 != end) ++p;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > kMaxJsonNesting)
                throw Error(source + ": JSON nested deeper than " + std::to_string(kMaxJsonNesting) +
                            " levels (corrupt or hostile file)");
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
}

inline void check_json_nesting(const std::string& text, const std::string& source) {
    check_json_nesting(text.data(), text.data() + text.size(), source);
}

}  // namespace kto
