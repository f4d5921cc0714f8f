#pragma once
// PNG files with text metadata: encoding RGB(A)8 pixels to PNG in memory (stb_image_write), adding
// a text chunk before IEND, and reading text chunks back (for "regenerate from image"). The text
// of the `parameters` key follows AUTOMATIC1111's layout, which other tools read too:
//   <prompt>
//   Negative prompt: <negative>
//   Steps: 25, Sampler: euler, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: kto-demo
// All functions are pure and thread-safe; readers reject malformed input with kto::Error and never
// read out of bounds.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kto {

// PNG bytes of a width x height image with `channels` (3: RGB, 4: RGBA) 8-bit samples per pixel,
// rows top to bottom, plus one text chunk per entry of `text` (tEXt for Latin-1-safe ASCII,
// iTXt for UTF-8).
std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height, int channels,
                                const std::map<std::string, std::string>& text = {});

// Returns `png` with a text chunk `keyword` = `text` inserted before IEND (CRC computed).
// Throws kto::Error when `png` is not a well-formed PNG or the keyword is not 1-79 printable
// Latin-1 characters.
std::vector<uint8_t> add_png_text(const std::vector<uint8_t>& png, const std::string& keyword,
                                  const std::string& text);

// All uncompressed tEXt / iTXt chunks (keyword -> text; iTXt text is UTF-8, tEXt Latin-1 is
// converted to UTF-8). Chunks with a bad CRC are skipped. Throws kto::Error for a file that is
// not a PNG or whose chunk structure is broken.
std::map<std::string, std::string> read_png_text(const std::vector<uint8_t>& png);
std::map<std::string, std::string> read_png_text_file(const std::string& path);

// The whole file at `path`. Throws kto::Error when it cannot be read.
std::vector<uint8_t> read_file_bytes(const std::string& path);

// Writes bytes to `path` atomically (temporary file in the same folder, then rename).
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

// The generation settings carried in the `parameters` chunk.
struct GenerationParameters {
    std::string prompt;
    std::string negative_prompt;
    int steps = 0;
    std::string sampler;
    double cfg_scale = 0.0;
    uint64_t seed = 0;
    int width = 0;
    int height = 0;
    std::string model;
    std::map<std::string, std::string> extra;  // other "Key: value" pairs of the last line
};

// "<prompt>\nNegative prompt: <neg>\nSteps: N, Sampler: X, CFG scale: Y, Seed: S, Size: WxH, Model: M"
// (Size left out when 0x0; values quoted when they hold , : " or start/end with a blank; CFG
// scale written with as many digits as it takes to read back the same double)
// (the negative line is left out when empty; extra pairs follow Model).
std::string format_generation_parameters(const GenerationParameters& p);
// Parses that text (A1111 files too: unknown keys land in `extra`). Throws kto::Error when the
// settings line is missing or a known field does not parse.
GenerationParameters parse_generation_parameters(const std::string& text);

}  // namespace kto
