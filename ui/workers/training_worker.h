#pragma once
// The one long-lived training engine of the app: lives on its own QThread and runs one
// kto::TrainingJob at a time on the labels of the workspace (read through its own store
// connection), reporting steps, previews, checkpoints and messages through queued signals.
// Thread-safety: call start() through a queued connection; pause(), resume(), cancel() and
// state() may be called from any thread (they only touch the job's atomic controls).
//
// Besides what the job writes (trainer.h), the run folder gets:
//   run.json         status (running, finished, cancelled, failed), base model, preset, times, error
//   base_model.txt   the base model folder, so the Generate area can load UNet checkpoints on it
//   records.json, options.json, worker-<rank>.log   multi-process runs (request.workers > 1): the
//                    snapshot every rank trains on, and the output of ranks 1..N-1 (kto-studio-cli
//                    processes on this machine; this process is rank 0)
#include <QObject>
#include <QString>
#include <QVector>
#include <atomic>
#include <memory>
#include <mutex>

#include "ui/workers/training_request.h"

namespace kto {
class TrainingJob;
}

namespace kto::ui {

// A starting point for the training form: hardware-sized options (kto::TrainOptions JSON).
struct TrainingPreset {
    QString id;           // "demo-cpu", "sd15-lora-12gb", "sd15-full-24gb"
    QString title;        // what the preset picker shows
    QString description;  // one line: what it is for
    QByteArray options_json;
};
QVector<TrainingPreset> builtinTrainingPresets();

// Empty when the options are valid for a run (kto::TrainOptions::from_json + validate()), else the
// message naming the first problem.
QString checkTrainingOptions(const QByteArray& options_json);

class TrainingWorker : public QObject {
    Q_OBJECT
public:
    enum class State { Idle, Running, Paused };
    explicit TrainingWorker(QObject* parent = nullptr);
    ~TrainingWorker() override;

    void pause();   // takes effect between two optimizer steps (not offered for multi-process runs)
    void resume();
    void cancel();  // stops within one step, or during data preparation
    // Running while a job runs and steps; Paused once the job sits between two steps waiting.
    State state() const;

public slots:
    void start(const kto::ui::TrainingRequest& request);

signals:
    void started(const QString& run_dir);
    void message(const QString& text);  // phases, warnings, skipped images
    void stepDone(const kto::ui::TrainingStep& step);
    void previewReady(qint64 step, const kto::ui::PreviewTiles& tiles);
    void checkpointSaved(qint64 step, const QString& dir);
    void finished(const kto::ui::TrainingOutcome& outcome);

private:
    mutable std::mutex mutex_;           // guards job_ (created and destroyed on the worker thread)
    std::unique_ptr<TrainingJob> job_;
    std::atomic<bool> running_{false};
    std::atomic<bool> cancel_{false};    // before the job exists (reading labels)
    std::atomic<bool> pause_{false};
    std::atomic<bool> multi_process_{false};
};

}  // namespace kto::ui
