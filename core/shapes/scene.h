#pragma once
// The demo model's world: scenes of one or two coloured shapes on a plain background, sampled
// deterministically from a seed with our own PRNG (std distributions are implementation-defined).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace kto::shapes {

enum class ShapeClass { Circle, Square, Triangle, Star };
enum class Colour { Red, Orange, Yellow, Green, Blue, Purple, White, Black };
enum class Size { Small, Medium, Large };
enum class Position { Centre, Left, Right, Top, Bottom, TopLeft, TopRight, BottomLeft, BottomRight };

inline constexpr std::array<ShapeClass, 4> kAllClasses{ShapeClass::Circle, ShapeClass::Square,
                                                       ShapeClass::Triangle, ShapeClass::Star};
inline constexpr std::array<Colour, 8> kAllColours{Colour::Red,  Colour::Orange, Colour::Yellow,
                                                   Colour::Green, Colour::Blue,  Colour::Purple,
                                                   Colour::White, Colour::Black};
inline constexpr std::array<Size, 3> kAllSizes{Size::Small, Size::Medium, Size::Large};
inline constexpr std::array<Position, 9> kAllPositions{
    Position::Centre, Position::Left,    Position::Right,      Position::Top,        Position::Bottom,
    Position::TopLeft, Position::TopRight, Position::BottomLeft, Position::BottomRight};

// English words as used in captions ("circle", "orange", "large", "top left").
std::string name(ShapeClass c);
std::string name(Colour c);
std::string name(Size s);
std::string name(Position p);

struct Rgb {
    uint8_t r = 0, g = 0, b = 0;
};
// The plain colour a named colour is drawn with.
Rgb colour_rgb(Colour c);
// True for red, orange and yellow.
bool is_warm(Colour c);

// PCG32 (O'Neill 2014), seeded through splitmix64: identical streams on every platform.
class Rng {
public:
    explicit Rng(uint64_t seed, uint64_t stream = 0);
    uint32_t next_u32();
    // Uniform in [0, 1) with 32 bits of resolution.
    double uniform();
    // Uniform in [lo, hi).
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Uniform integer in [0, n), unbiased (Lemire's rejection method). n > 0.
    uint32_t below(uint32_t n);
    bool chance(double p) { return uniform() < p; }
    // The generator's whole state, to continue its stream later (train-demo's checkpoints).
    struct State {
        uint64_t state = 0;
        uint64_t inc = 1;
    };
    State state() const { return {state_, inc_}; }
    void set_state(const State& s) {
        state_ = s.state;
        inc_ = s.inc | 1u;
    }

private:
    uint64_t state_ = 0;
    uint64_t inc_ = 1;
};

uint64_t splitmix64(uint64_t& x);

// One shape: its attributes (the ground truth) and the geometry they were placed at,
// in unit image coordinates (0..1, y down) so the same scene renders at any resolution.
struct Shape {
    ShapeClass cls = ShapeClass::Circle;
    Colour colour = Colour::Red;
    Size size = Size::Medium;
    Position position = Position::Centre;
    double cx = 0.5, cy = 0.5;  // bounding-box centre
    double extent = 0.17;       // half the bounding-box side
};

struct Scene {
    std::vector<Shape> shapes;  // one or two, never overlapping
    Colour background = Colour::Black;
};

// Nominal half-side of a shape's bounding box, in unit coordinates.
double nominal_extent(Size s);
// Places a shape with the given attributes; `jitter` perturbs centre and extent slightly.
Shape place_shape(ShapeClass cls, Colour colour, Size size, Position position, Rng& jitter);

struct SceneOptions {
    double two_shape_probability = 0.25;  // share of scenes with two shapes
    // List the two shapes of a scene in reading order (the upper one first; at one height, the left
    // one), so a caption names them in that order. Otherwise the order is random. Only the order of
    // Scene::shapes changes: the image and the rest of the random stream stay the same.
    bool reading_order = false;
};

// True when `a` comes before `b` in reading order: higher up, or at the same height further left.
bool reads_before(const Shape& a, const Shape& b);

// A random scene: all attributes uniform; two-shape scenes use opposite positions, sizes small or
// medium and distinct colours, listed in random or reading order (SceneOptions); the background
// differs from every shape's colour.
Scene sample_scene(Rng& rng, const SceneOptions& options = {});
// The scene of sample number `index` of the stream `seed` (independent of other indices).
Scene scene_for_index(uint64_t seed, uint64_t index, const SceneOptions& options = {});

}  // namespace kto::shapes
