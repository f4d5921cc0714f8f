// Image decoding as the training path does it (decode_image_rgb8: stb_image behind a size check).
// A header that declares a huge image must be refused before allocation (libFuzzer's
// -malloc_limit_mb turns a multi-gigabyte request into a finding).
#include <cstdint>

#include "core/common/error.h"
#include "core/common/image_decode.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const kto::RgbImage img = kto::decode_image_rgb8(data, size, "fuzz.png");
        KTO_FUZZ_CHECK(img.width > 0 && img.height > 0);
        KTO_FUZZ_CHECK(img.width <= kto::kMaxImageSide && img.height <= kto::kMaxImageSide);
        KTO_FUZZ_CHECK(img.pixels.size() == size_t(img.width) * size_t(img.height) * 3);
    } catch (const kto::Error&) {
    }
    return 0;
}
