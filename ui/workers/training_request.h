#pragma once
// One press of "Start training" and what comes back from the training thread, as plain Qt values:
// the panel never sees a tensor or a core struct. The options travel as the JSON that
// kto::TrainOptions::from_json reads (core/train/trainer.h), so presets, saved settings and a run's
// config.json all share one format.
#include <QByteArray>
#include <QImage>
#include <QMetaType>
#include <QString>
#include <QVector>

namespace kto::ui {

struct TrainingRequest {
    QString workspace;        // the labels come from this workspace's store (liked + disliked images)
    QString run_dir;          // <workspace>/runs/<id>: config, metrics, previews, checkpoints
    QString model_path;       // base model, diffusers layout
    QString model_name;       // what the picker showed
    QString preset;           // the preset the form started from (recorded in run.json)
    QByteArray options_json;  // kto::TrainOptions as JSON
    bool resume = false;      // continue from the run folder's last complete checkpoint
    int workers = 1;          // > 1: a data-parallel run of this many local processes (one per GPU on CUDA)
};

// kto::StepMetrics, copied (NaN where a value is not defined for the step).
struct TrainingStep {
    qint64 step = 0;
    qint64 total_steps = 0;
    double loss = 0;
    double reward_margin = 0;
    double kl = 0;
    double grad_norm = 0;
    double lr = 0;
    double samples_per_second = 0;
    double eta_seconds = 0;
    double elapsed_seconds = 0;
};

// One probe prompt x seed rendered with the weights of one step.
struct PreviewTile {
    QString prompt;
    qint64 seed = 0;
    QString path;  // the PNG under previews/step-N/
    QImage image;
};
using PreviewTiles = QVector<PreviewTile>;

struct TrainingOutcome {
    bool cancelled = false;
    QString error;             // empty unless the run failed; in words a user can act on
    qint64 steps_done = 0;
    QString final_checkpoint;  // checkpoints/step-N, empty when none was written
};

}  // namespace kto::ui

Q_DECLARE_METATYPE(kto::ui::TrainingRequest)
Q_DECLARE_METATYPE(kto::ui::TrainingStep)
Q_DECLARE_METATYPE(kto::ui::PreviewTiles)
Q_DECLARE_METATYPE(kto::ui::TrainingOutcome)
