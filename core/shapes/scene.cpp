#include "core/shapes/scene.h"

#include <algorithm>

#include "core/common/error.h"

namespace kto::shapes {

std::string name(ShapeClass c) {
    switch (c) {
        case ShapeClass::Circle: return "circle";
        case ShapeClass::Square: return "square";
        case ShapeClass::Triangle: return "triangle";
        case ShapeClass::Star: return "star";
    }
    throw Error("unknown shape class");
}

std::string name(Colour c) {
    switch (c) {
        case Colour::Red: return "red";
        case Colour::Orange: return "orange";
        case Colour::Yellow: return "yellow";
        case Colour::Green: return "green";
        case Colour::Blue: return "blue";
        case Colour::Purple: return "purple";
        case Colour::White: return "white";
        case Colour::Black: return "black";
    }
    throw Error("unknown colour");
}

std::string name(Size s) {
    switch (s) {
        case Size::Small: return "small";
        case Size::Medium: return "medium";
        case Size::Large: return "large";
    }
    throw Error("unknown size");
}

std::string name(Position p) {
    switch (p) {
        case Position::Centre: return "centre";
        case Position::Left: return "left";
        case Position::Right: return "right";
        case Position::Top: return "top";
        case Position::Bottom: return "bottom";
        case Position::TopLeft: return "top left";
        case Position::TopRight: return "top right";
        case Position::BottomLeft: return "bottom left";
        case Position::BottomRight: return "bottom right";
    }
    throw Error("unknown position");
}

Rgb colour_rgb(Colour c) {
    switch (c) {
        case Colour::Red: return {220, 20, 20};
        case Colour::Orange: return {255, 140, 0};
        case Colour::Yellow: return {255, 225, 0};
        case Colour::Green: return {20, 160, 40};
        case Colour::Blue: return {20, 60, 220};
        case Colour::Purple: return {130, 30, 180};
        case Colour::White: return {255, 255, 255};
        case Colour::Black: return {0, 0, 0};
    }
    throw Error("unknown colour");
}

bool is_warm(Colour c) { return c == Colour::Red || c == Colour::Orange || c == Colour::Yellow; }

uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

Rng::Rng(uint64_t seed, uint64_t stream) {
    uint64_t s = seed;
    uint64_t init_state = splitmix64(s);
    uint64_t t = stream ^ 0xDA3E39CB94B95BDBULL;
    inc_ = (splitmix64(t) << 1u) | 1u;
    state_ = 0;
    next_u32();
    state_ += init_state;
    next_u32();
}

uint32_t Rng::next_u32() {
    uint64_t old = state_;
    state_ = old * 6364136223846793005ULL + inc_;
    auto xorshifted = static_cast<uint32_t>(((old >> 18u) ^ old) >> 27u);
    auto rot = static_cast<uint32_t>(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

double Rng::uniform() { return next_u32() * (1.0 / 4294967296.0); }

uint32_t Rng::below(uint32_t n) {
    if (n == 0) throw Error("Rng::below: n must be positive");
    uint64_t m = uint64_t(next_u32()) * n;
    auto low = static_cast<uint32_t>(m);
    if (low < n) {
        uint32_t threshold = (0u - n) % n;
        while (low < threshold) {
            m = uint64_t(next_u32()) * n;
            low = static_cast<uint32_t>(m);
        }
    }
    return static_cast<uint32_t>(m >> 32);
}

double nominal_extent(Size s) {
    switch (s) {
        case Size::Small: return 0.11;
        case Size::Medium: return 0.17;
        case Size::Large: return 0.26;
    }
    throw Error("unknown size");
}

namespace {
double axis_anchor(int sign) { return sign < 0 ? 0.25 : (sign > 0 ? 0.75 : 0.5); }
int x_sign(Position p) {
    switch (p) {
        case Position::Left: case Position::TopLeft: case Position::BottomLeft: return -1;
        case Position::Right: case Position::TopRight: case Position::BottomRight: return 1;
        default: return 0;
    }
}
int y_sign(Position p) {
    switch (p) {
        case Position::Top: case Position::TopLeft: case Position::TopRight: return -1;
        case Position::Bottom: case Position::BottomLeft: case Position::BottomRight: return 1;
        default: return 0;
    }
}
}  // namespace

Shape place_shape(ShapeClass cls, Colour colour, Size size, Position position, Rng& jitter) {
    Shape s;
    s.cls = cls;
    s.colour = colour;
    s.size = size;
    s.position = position;
    s.extent = nominal_extent(size) + jitter.uniform(-0.01, 0.01);
    const double margin = 0.03;
    const double lo = s.extent + margin, hi = 1.0 - s.extent - margin;
    s.cx = std::clamp(axis_anchor(x_sign(position)) + jitter.uniform(-0.03, 0.03), lo, hi);
    s.cy = std::clamp(axis_anchor(y_sign(position)) + jitter.uniform(-0.03, 0.03), lo, hi);
    return s;
}

bool reads_before(const Shape& a, const Shape& b) {
    const int ay = y_sign(a.position), by = y_sign(b.position);
    if (ay != by) return ay < by;
    return x_sign(a.position) < x_sign(b.position);
}

Scene sample_scene(Rng& rng, const SceneOptions& options) {
    Scene scene;
    if (rng.chance(options.two_shape_probability)) {
        static constexpr std::array<std::pair<Position, Position>, 4> kPairs{
            std::pair{Position::Left, Position::Right}, std::pair{Position::Top, Position::Bottom},
            std::pair{Position::TopLeft, Position::BottomRight},
            std::pair{Position::TopRight, Position::BottomLeft}};
        auto pair = kPairs[rng.below(kPairs.size())];
        if (rng.chance(0.5)) std::swap(pair.first, pair.second);
        const Colour c1 = kAllColours[rng.below(kAllColours.size())];
        Colour c2 = kAllColours[rng.below(kAllColours.size() - 1)];
        if (c2 == c1) c2 = kAllColours.back();  // distinct colours, still uniform over the rest
        const Position ps[2] = {pair.first, pair.second};
        const Colour cs[2] = {c1, c2};
        for (int i = 0; i < 2; ++i) {
            const ShapeClass cls = kAllClasses[rng.below(kAllClasses.size())];
            const Size size = rng.chance(0.5) ? Size::Small : Size::Medium;
            scene.shapes.push_back(place_shape(cls, cs[i], size, ps[i], rng));
        }
    } else {
        const ShapeClass cls = kAllClasses[rng.below(kAllClasses.size())];
        const Colour colour = kAllColours[rng.below(kAllColours.size())];
        const Size size = kAllSizes[rng.below(kAllSizes.size())];
        const Position position = kAllPositions[rng.below(kAllPositions.size())];
        scene.shapes.push_back(place_shape(cls, colour, size, position, rng));
    }
    std::vector<Colour> free;
    for (Colour c : kAllColours) {
        bool used = false;
        for (const Shape& s : scene.shapes) used = used || s.colour == c;
        if (!used) free.push_back(c);
    }
    scene.background = free[rng.below(static_cast<uint32_t>(free.size()))];
    if (options.reading_order && scene.shapes.size() == 2 && reads_before(scene.shapes[1], scene.shapes[0]))
        std::swap(scene.shapes[0], scene.shapes[1]);
    return scene;
}

Scene scene_for_index(uint64_t seed, uint64_t index, const SceneOptions& options) {
    Rng rng(seed, index);
    return sample_scene(rng, options);
}

}  // namespace kto::shapes
