#pragma once
// What the Compare area hands the store: a comparison session (its two sides and settings) and
// blind A/B votes, as plain values (the store threads turn them into storage/ rows).
#include <QMetaType>
#include <QString>
#include <QStringList>
#include <QVector>

namespace kto::ui {

// One side of a comparison, as the model picker lists it.
struct ComparisonSide {
    QString name;        // what the picker shows; the store records it as the model name
    QString model_path;  // diffusers folder (the base model for a UNet-only checkpoint)
    QString unet_path;   // optional checkpoint: a unet/ folder, or a LoRA .safetensors file
};

struct ComparisonSession {
    QString id;  // unique per session ("compare-20261125-101500-123")
    ComparisonSide a;  // reference (usually the base model)
    ComparisonSide b;  // candidate (usually the newest checkpoint): the win rate is B's
    QStringList prompts;
    QVector<qint64> seeds;
    int steps = 20;
    double cfg = 7.5;
    QString sampler;  // as used (resolved by the renderer)
    int width = 0;
    int height = 0;
    bool blind = true;
};

enum class VoteChoice { Left, Right, Tie };

// One blind vote: which side was shown on the left, what was chosen, and the two images.
struct ComparisonVoteRecord {
    QString prompt;
    qint64 seed = 0;
    bool a_on_left = true;
    VoteChoice choice = VoteChoice::Tie;
    QString image_a;  // PNG files (the renderer's cache)
    QString image_b;
};

}  // namespace kto::ui

Q_DECLARE_METATYPE(kto::ui::ComparisonSession)
