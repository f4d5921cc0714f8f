#include "core/common/image_decode.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

#include "core/common/error.h"

// stb_image's decoder, compiled here (static: private to this file) with allocation hooks. stb 2.27
// (Debian 12) inflates PNG data without a bound: a corrupt 81-byte PNG makes it grow its output
// buffer to 1.6 GB (fixed upstream in 2.28; tests/fuzz/known/fuzz_image_decode). Every allocation
// stb makes while decoding one image is capped at what that image can need (set per call below);
// a refused allocation fails the decode instead.
namespace {
thread_local std::size_t stb_allocation_cap = SIZE_MAX;
thread_local bool stb_allocation_refused = false;
void* capped_malloc(std::size_t n) {
    if (n > stb_allocation_cap) {
        stb_allocation_refused = true;
        return nullptr;
    }
    return std::malloc(n);
}
void* capped_realloc(void* p, std::size_t n) {
    if (n > stb_allocation_cap) {
        stb_allocation_refused = true;
        return nullptr;
    }
    return std::realloc(p, n);
}
}  // namespace
#define STBI_MALLOC(sz) capped_malloc(sz)
#define STBI_REALLOC(p, newsz) capped_realloc(p, newsz)
#define STBI_FREE(p) std::free(p)
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_GIF
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wtype-limits"
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace kto {
namespace {

// Sets the allocation cap for one decode and puts it back afterwards.
class StbAllocationCap {
public:
    explicit StbAllocationCap(std::size_t cap) {
        stb_allocation_cap = cap;
        stb_allocation_refused = false;
    }
    ~StbAllocationCap() { stb_allocation_cap = SIZE_MAX; }
    StbAllocationCap(const StbAllocationCap&) = delete;
    StbAllocationCap& operator=(const StbAllocationCap&) = delete;
};

// stb_image 2.27 (Debian 12's libstb) writes past its Huffman tables when a JPEG DHT segment
// declares more than 256 codes (fixed upstream in 2.28; found by tests/fuzz/fuzz_image_decode).
// Walks the JPEG's markers as stb reads them and refuses such a table before stb sees it.
bool jpeg_huffman_tables_ok(const uint8_t* d, size_t n) {
    if (n < 2 || d[0] != 0xFF || d[1] != 0xD8) return true;  // not a JPEG
    size_t i = 2;
    while (i + 1 < n) {
        if (d[i] != 0xFF) {  // entropy-coded data: on to the next marker
            ++i;
            continue;
        }
        const uint8_t m = d[i + 1];
        if (m == 0xFF) {  // fill byte
            ++i;
            continue;
        }
        if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) {  // no length
            i += 2;
            continue;
        }
        if (m == 0xD9 || i + 3 >= n) return true;  // end of image
        const long length = (long(d[i + 2]) << 8) | d[i + 3];
        if (m != 0xC4) {
            i += 2 + size_t(length);
            continue;
        }
        // DHT: tables of [class/id, 16 code counts, symbols], read while the length lasts.
        long left = length - 2;
        size_t p = i + 4;
        while (left > 0 && p < n) {
            long codes = 0;  // stb reads past the end of the data as zeros
            for (size_t k = 1; k <= 16 && p + k < n; ++k) codes += d[p + k];
            if (codes > 256) return false;
            p += 17 + size_t(codes);
            left -= 17 + codes;
        }
        i = p;
    }
    return true;
}

// The formats training images come in. stb's other loaders (PNM, PSD, PIC, HDR, TGA) are left out:
// its 2.27 PNM loader reads past its buffer for 16-bit files (found by fuzz_image_decode).
bool supported_format(const uint8_t* d, size_t n) {
    auto starts = [&](const char* magic, size_t len) { return n >= len && std::memcmp(d, magic, len) == 0; };
    return starts("\x89PNG\r\n\x1a\n", 8) || starts("\xff\xd8\xff", 3) || starts("GIF87a", 6) ||
           starts("GIF89a", 6) || starts("BM", 2);
}

}  // namespace

RgbImage decode_image_rgb8(const uint8_t* bytes, size_t size, const std::string& name) {
    if (size == 0) throw Error(name + ": empty file, not an image");
    if (size > static_cast<size_t>(INT_MAX)) throw Error(name + ": image file larger than 2 GB");
    const int n = static_cast<int>(size);
    if (!supported_format(bytes, size))
        throw Error(name + ": not a PNG, JPEG, GIF or BMP image");
    if (!jpeg_huffman_tables_ok(bytes, size))
        throw Error(name + ": corrupt JPEG (a Huffman table declares more than 256 codes)");
    int w = 0, h = 0, channels = 0;
    // Header first: refuse what would not fit before stb allocates for it.
    if (!stbi_info_from_memory(bytes, n, &w, &h, &channels)) {
        const char* why = stbi_failure_reason();
        throw Error(name + ": cannot decode image (" + (why ? why : "unknown format") + ")");
    }
    if (w <= 0 || h <= 0 || w > kMaxImageSide || h > kMaxImageSide ||
        int64_t(w) * int64_t(h) > kMaxImagePixels)
        throw Error(name + ": image of " + std::to_string(w) + "x" + std::to_string(h) +
                    " pixels is larger than supported (at most " + std::to_string(kMaxImageSide) +
                    " a side and " + std::to_string(kMaxImagePixels / 1000000) + " megapixels)");
    // The most any buffer of this decode can need: the file itself (PNG data chunks are gathered
    // into one buffer) or the inflated image at 16 bits x 4 channels plus PNG's filter bytes (with
    // room for Adam7's passes), doubled as stb grows buffers by doubling.
    const std::size_t need = std::max<std::size_t>(size, std::size_t(h) * (1 + std::size_t(w) * 8) * 2);
    const StbAllocationCap cap(2 * need + (std::size_t(1) << 20));
    const std::string declared = std::to_string(w) + "x" + std::to_string(h);
    std::unique_ptr<uint8_t, void (*)(void*)> data(stbi_load_from_memory(bytes, n, &w, &h, &channels, 3),
                                                   stbi_image_free);
    if (!data && stb_allocation_refused)
        throw Error(name + ": corrupt image: its compressed data expands beyond what a " + declared +
                    " image can hold");
    if (!data) {
        const char* why = stbi_failure_reason();
        throw Error(name + ": cannot decode image (" + (why ? why : "unknown format") + ")");
    }
    // The decoder may disagree with the header reader (e.g. a GIF whose frame is not the screen).
    if (w <= 0 || h <= 0 || w > kMaxImageSide || h > kMaxImageSide ||
        int64_t(w) * int64_t(h) > kMaxImagePixels)
        throw Error(name + ": decoded image of " + std::to_string(w) + "x" + std::to_string(h) +
                    " pixels is larger than supported");
    RgbImage img;
    img.width = w;
    img.height = h;
    img.pixels.assign(data.get(), data.get() + size_t(w) * size_t(h) * 3);
    return img;
}

RgbImage read_image_rgb8(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw Error(path + ": image file not found");
    if (!std::filesystem::is_regular_file(path, ec)) throw Error(path + ": not a regular file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open image file");
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw Error(path + ": read error");
    return decode_image_rgb8(bytes.data(), bytes.size(), path);
}

}  // namespace kto
