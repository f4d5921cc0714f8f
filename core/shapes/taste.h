#pragma once
// Synthetic tastes: scripted raters that like or dislike an image the way a person with one fixed
// taste would, from the pixels alone (the prompt-match rater also reads the prompt).
// They let tests and benchmarks label hundreds of images without a person. Thread-safe (const).
#include <memory>
#include <string>
#include <vector>

#include "core/shapes/renderer.h"

namespace kto::shapes {

class Taste {
public:
    virtual ~Taste() = default;
    // Stable identifier, e.g. "likes-large-shapes".
    virtual std::string name() const = 0;
    // One line a person can read: what this rater likes.
    virtual std::string description() const = 0;
    // True = like (desirable), false = dislike.
    virtual bool likes(const Image& image, const std::string& prompt) const = 0;
};

// Likes an image whose foreground covers more than `min_fraction` of it.
class LikesLargeShapes : public Taste {
public:
    explicit LikesLargeShapes(double min_fraction = 0.1) : min_fraction_(min_fraction) {}
    std::string name() const override { return "likes-large-shapes"; }
    std::string description() const override;
    bool likes(const Image& image, const std::string& prompt) const override;

private:
    double min_fraction_;
};

// Likes an image whose foreground is mostly red, orange or yellow.
class LikesWarmColours : public Taste {
public:
    explicit LikesWarmColours(double min_share = 0.5) : min_share_(min_share) {}
    std::string name() const override { return "likes-warm-colours"; }
    std::string description() const override;
    bool likes(const Image& image, const std::string& prompt) const override;

private:
    double min_share_;
};

// Dislikes an image that does not show what its prompt asks for (every named attribute, shape
// count and background, as read by the scorer). A prompt outside the grammar is a kto::Error.
class DislikesPromptMismatch : public Taste {
public:
    std::string name() const override { return "dislikes-prompt-mismatch"; }
    std::string description() const override;
    bool likes(const Image& image, const std::string& prompt) const override;
};

// The names make_taste accepts.
std::vector<std::string> taste_names();
// A taste by name; kto::Error listing the known names for an unknown one.
std::unique_ptr<Taste> make_taste(const std::string& name);

}  // namespace kto::shapes
