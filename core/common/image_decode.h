#pragma once
// Decoding image files (PNG, JPEG, BMP, GIF's first frame; nothing else) to 8-bit RGB with stb_image, for
// training and comparison inputs. The size a header declares is checked before anything is
// allocated, so a 60-byte file that claims to be 1,000,000 x 1,000,000 pixels is refused with a
// clear error instead of taking gigabytes. Pure and thread-safe.
#include <cstdint>
#include <string>
#include <vector>

namespace kto {

// Largest width or height accepted, and largest pixel count (128 MB of RGB).
constexpr int kMaxImageSide = 16384;
constexpr int64_t kMaxImagePixels = int64_t(8192) * 5461;

struct RgbImage {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;  // height rows of width RGB triples, top to bottom
};

// Decodes `bytes`; `name` (a file name) prefixes every kto::Error: not an image, truncated,
// or larger than the limits above.
RgbImage decode_image_rgb8(const uint8_t* bytes, size_t size, const std::string& name);
// Reads and decodes a file (errors: not found, not a regular file, as above).
RgbImage read_image_rgb8(const std::string& path);

}  // namespace kto
