#include "core/shapes/renderer.h"

#include <array>
#include <cmath>

#include "core/common/error.h"

namespace kto::shapes {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Even-odd point-in-polygon test.
template <size_t N>
bool polygon_contains(const std::array<std::pair<double, double>, N>& v, double x, double y) {
    bool inside = false;
    for (size_t i = 0, j = N - 1; i < N; j = i++) {
        const double xi = v[i].first, yi = v[i].second, xj = v[j].first, yj = v[j].second;
        if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
}

}  // namespace

bool shape_contains(const Shape& s, double x, double y) {
    const double dx = x - s.cx, dy = y - s.cy, r = s.extent;
    switch (s.cls) {
        case ShapeClass::Circle: return dx * dx + dy * dy <= r * r;
        case ShapeClass::Square: return std::abs(dx) <= 0.9 * r && std::abs(dy) <= 0.9 * r;
        case ShapeClass::Triangle: {
            // Upright isosceles triangle filling the box [-r, r] x [-0.9r, 0.9r].
            if (dy > 0.9 * r || dy < -0.9 * r) return false;
            const double half_width = r * (dy + 0.9 * r) / (1.8 * r);
            return std::abs(dx) <= half_width;
        }
        case ShapeClass::Star: {
            // Five points, point up, inner radius 0.45 of outer; shifted so its bounding box is centred.
            const double outer = r * 1.03, inner = 0.45 * outer;
            const double shift = outer * (1.0 - std::cos(kPi / 5.0)) / 2.0;
            std::array<std::pair<double, double>, 10> v;
            for (int i = 0; i < 10; ++i) {
                const double a = -kPi / 2.0 + i * kPi / 5.0;
                const double rr = (i % 2 == 0) ? outer : inner;
                v[size_t(i)] = {rr * std::cos(a), rr * std::sin(a) + shift};
            }
            return polygon_contains(v, dx, dy);
        }
    }
    return false;
}

Image render(const Scene& scene, int size, int samples) {
    if (size <= 0 || samples <= 0) throw Error("render: size and samples must be positive");
    Image img;
    img.width = img.height = size;
    img.rgb.resize(size_t(size) * size_t(size) * 3);
    const Rgb bg = colour_rgb(scene.background);
    const double inv = 1.0 / (double(size) * samples);
    const int n = samples * samples;
    for (int py = 0; py < size; ++py) {
        for (int px = 0; px < size; ++px) {
            // Accumulate colour over sub-samples; later shapes are drawn over earlier ones.
            int acc[3] = {0, 0, 0};
            for (int sy = 0; sy < samples; ++sy) {
                for (int sx = 0; sx < samples; ++sx) {
                    const double x = (px * samples + sx + 0.5) * inv;
                    const double y = (py * samples + sy + 0.5) * inv;
                    Rgb c = bg;
                    for (const Shape& s : scene.shapes)
                        if (shape_contains(s, x, y)) c = colour_rgb(s.colour);
                    acc[0] += c.r;
                    acc[1] += c.g;
                    acc[2] += c.b;
                }
            }
            uint8_t* p = &img.rgb[(size_t(py) * size_t(size) + size_t(px)) * 3];
            for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>((acc[k] + n / 2) / n);
        }
    }
    return img;
}

torch::Tensor image_to_tensor(const Image& image) {
    if (image.rgb.size() != size_t(image.width) * size_t(image.height) * 3)
        throw Error("image_to_tensor: pixel buffer does not match width x height x 3");
    auto t = torch::from_blob(const_cast<uint8_t*>(image.rgb.data()), {image.height, image.width, 3},
                              torch::kUInt8)
                 .to(torch::kFloat32)
                 .permute({2, 0, 1})
                 .contiguous();
    return t.div_(127.5).sub_(1.0);
}

Image tensor_to_image(const torch::Tensor& tensor) {
    torch::Tensor t = tensor.detach().to(torch::kCPU, torch::kFloat32);
    if (t.dim() == 4 && t.size(0) == 1) t = t.squeeze(0);
    if (t.dim() != 3 || t.size(0) != 3)
        throw Error("tensor_to_image: expected a [3,H,W] tensor, got " + std::to_string(t.dim()) +
                    " dimensions");
    t = ((t.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch::kUInt8).permute({1, 2, 0}).contiguous();
    Image img;
    img.height = int(t.size(0));
    img.width = int(t.size(1));
    img.rgb.assign(t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + t.numel());
    return img;
}

}  // namespace kto::shapes
