#pragma once
// Anti-aliased rendering of a Scene into an RGB image (4x4 supersampling per pixel).
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "core/shapes/scene.h"

namespace kto::shapes {

// 8-bit RGB pixels, row-major, channels interleaved (HWC).
struct Image {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> rgb;

    Rgb at(int x, int y) const {
        const size_t i = (size_t(y) * size_t(width) + size_t(x)) * 3;
        return {rgb[i], rgb[i + 1], rgb[i + 2]};
    }
};

// True when the unit-coordinate point (x, y) lies inside `shape`.
bool shape_contains(const Shape& shape, double x, double y);

// Renders `scene` at size x size pixels; `samples` sub-samples per axis for anti-aliasing.
Image render(const Scene& scene, int size = 64, int samples = 4);

// [3,H,W] float32 in [-1, 1] (the VAE's input convention).
torch::Tensor image_to_tensor(const Image& image);
// Inverse of image_to_tensor for a [3,H,W] (or [1,3,H,W]) tensor; values are clamped to [-1, 1].
Image tensor_to_image(const torch::Tensor& tensor);

}  // namespace kto::shapes
