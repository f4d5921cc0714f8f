#include "core/shapes/taste.h"

#include "core/common/error.h"
#include "core/shapes/scorer.h"

namespace kto::shapes {

std::string LikesLargeShapes::description() const {
    return "likes images whose shapes cover more than " + std::to_string(int(min_fraction_ * 100)) +
           "% of the picture";
}

bool LikesLargeShapes::likes(const Image& image, const std::string&) const {
    return estimate_scene(image).foreground_fraction > min_fraction_;
}

std::string LikesWarmColours::description() const {
    return "likes images whose shapes are mostly red, orange or yellow";
}

bool LikesWarmColours::likes(const Image& image, const std::string&) const {
    const SceneEstimate est = estimate_scene(image);
    return est.foreground_fraction > 0 && est.warm_share > min_share_;
}

std::string DislikesPromptMismatch::description() const {
    return "dislikes images that do not show what their prompt asks for";
}

bool DislikesPromptMismatch::likes(const Image& image, const std::string& prompt) const {
    return fidelity(image, prompt).all_right();
}

std::vector<std::string> taste_names() {
    return {"likes-large-shapes", "likes-warm-colours", "dislikes-prompt-mismatch"};
}

std::unique_ptr<Taste> make_taste(const std::string& name) {
    if (name == "likes-large-shapes") return std::make_unique<LikesLargeShapes>();
    if (name == "likes-warm-colours") return std::make_unique<LikesWarmColours>();
    if (name == "dislikes-prompt-mismatch") return std::make_unique<DislikesPromptMismatch>();
    std::string known;
    for (const auto& n : taste_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error("unknown taste '" + name + "' (known: " + known + ")");
}

}  // namespace kto::shapes
