#pragma once
// The caption language: a small English grammar over scenes, with optional attributes.
//   caption   := shape ( " and " shape )? ( " on " article colour " background" )?
//   shape     := article ( size " " )? ( colour " " )? class ( " " where )?
//   where     := "in the centre" | "on the left" | "on the right" | "at the top" | "at the bottom"
//              | "at the top left" | "at the top right" | "at the bottom left" | "at the bottom right"
// e.g. "a red circle", "a large green star at the top left on a white background",
//      "a red circle and a blue square on a black background".
#include <optional>
#include <string>
#include <vector>

#include "core/shapes/scene.h"

namespace kto::shapes {

// What a caption asks for: every attribute it names (the class is always named).
struct ShapeRequest {
    ShapeClass cls = ShapeClass::Circle;
    std::optional<Colour> colour;
    std::optional<Size> size;
    std::optional<Position> position;
    bool operator==(const ShapeRequest& o) const {
        return cls == o.cls && colour == o.colour && size == o.size && position == o.position;
    }
};

struct PromptRequest {
    std::vector<ShapeRequest> shapes;  // one or two
    std::optional<Colour> background;
    bool operator==(const PromptRequest& o) const {
        return shapes == o.shapes && background == o.background;
    }
};

// How often a caption names each optional attribute.
struct CaptionOptions {
    double p_colour = 0.9;
    double p_size = 0.5;
    double p_position = 0.5;
    double p_background = 0.75;
};

// The request of a random caption of `scene`: each attribute kept with its probability.
PromptRequest sample_request(const Scene& scene, Rng& rng, const CaptionOptions& options = {});
// The full request of a scene (every attribute named).
PromptRequest full_request(const Scene& scene);
// English text of a request, following the grammar above.
std::string format_caption(const PromptRequest& request);
// Where each shape's attribute words stand in format_caption(request): for shape i, the indices
// (0-based, among the caption's space-separated words) of its size, colour and class words, in that
// order, those the request names. With a tokenizer that makes every caption word one token (the
// demo vocabulary), word w is token w + 1 (after the start token).
// `kinds` picks which of those words are listed (a shape's span may then be empty).
struct AttributeWordKinds {
    bool size = true, colour = true, cls = true;
};
std::vector<std::vector<int>> shape_attribute_words(const PromptRequest& request, const AttributeWordKinds& kinds = {});
// A random caption of `scene` (sample_request + format_caption).
std::string sample_caption(const Scene& scene, Rng& rng, const CaptionOptions& options = {});

// Parses a caption of the grammar (case-insensitive, "center"/"middle" accepted for "centre",
// a trailing full stop ignored). Throws kto::Error naming the word it could not read.
PromptRequest parse_caption(const std::string& text);
// As parse_caption, but returns nothing for text outside the grammar.
std::optional<PromptRequest> try_parse_caption(const std::string& text);

// Every word the grammar can produce (for building the tokenizer vocabulary).
std::vector<std::string> caption_words();

}  // namespace kto::shapes
