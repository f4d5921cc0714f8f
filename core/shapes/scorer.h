#pragma once
// Reads a shapes image back into attributes (background, then each shape's colour, size, position
// and class) and checks them against what a prompt of the caption grammar asked for.
#include <optional>
#include <string>
#include <vector>

#include "core/shapes/caption.h"
#include "core/shapes/renderer.h"

namespace kto::shapes {

// One foreground blob read from the pixels.
struct DetectedShape {
    ShapeClass cls = ShapeClass::Circle;
    Colour colour = Colour::Red;
    Size size = Size::Medium;
    Position position = Position::Centre;
    double area = 0;           // coverage-weighted pixel count
    double fill = 0;           // area / bounding-box area
    double bottom_share = 0;   // share of the area in the lower half of the bounding box
    double corner_share = 0;   // coverage of the bounding box's four corner cells
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // inclusive bounding box in pixels
};

struct SceneEstimate {
    Colour background = Colour::Black;
    Rgb background_rgb;
    std::vector<DetectedShape> shapes;  // largest first
    double foreground_fraction = 0;     // coverage-weighted share of the image that is foreground
    double warm_share = 0;              // share of the foreground coverage in red/orange/yellow
};

// The named colour nearest to `c` (Euclidean RGB over the drawn palette).
Colour nearest_colour(Rgb c);
// Nearest named colour other than `excluded`.
Colour nearest_colour_except(Rgb c, Colour excluded);

// Background from the border pixels, foreground by colour distance, shapes by connected components.
SceneEstimate estimate_scene(const Image& image);

struct AttributeScore {
    int asked = 0;
    int right = 0;
    double rate() const { return asked ? double(right) / asked : 1.0; }
};

// Per attribute: how many times the prompt named it and how many the image got right.
struct Fidelity {
    AttributeScore colour, size, position, cls, background, count;
    // Per requested shape (prompt order): the index in SceneEstimate::shapes of the blob it was
    // judged against, or -1 when the image has too few blobs.
    std::vector<int> matched;
    // Colour, class, background and count right; size and position too where `judge_*` says so.
    bool right(bool judge_size, bool judge_position) const {
        return colour.right == colour.asked && (!judge_size || size.right == size.asked) &&
               (!judge_position || position.right == position.asked) && cls.right == cls.asked &&
               background.right == background.asked && count.right == count.asked;
    }
    bool all_right() const { return right(true, true); }
};

// Checks an image against a parsed request; shapes are matched to blobs by best agreement.
Fidelity fidelity(const SceneEstimate& estimate, const PromptRequest& request);
Fidelity fidelity(const Image& image, const PromptRequest& request);
// Parses `prompt` (kto::Error if it is outside the caption grammar) and checks the image.
Fidelity fidelity(const Image& image, const std::string& prompt);

}  // namespace kto::shapes
