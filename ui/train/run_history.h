#pragma once
// Past and running training runs of a workspace, read from its runs/<id>/ folders (the folder is
// the record: run.json, config.json, metrics.jsonl, previews/, checkpoints/; see
// core/train/trainer.h and ui/workers/training_worker.h). The readers are plain functions that
// touch only files, so the model runs them on a pool thread and the GUI thread never waits on disk.
#include <QAbstractTableModel>
#include <QFutureWatcher>
#include <QJsonObject>
#include <QMap>
#include <QStringList>
#include <QVector>

#include "ui/workers/training_request.h"

namespace kto::ui {

struct RunSummary {
    QString id;               // the folder name
    QString dir;              // absolute path of runs/<id>
    QString status;           // running, finished, cancelled, failed; interrupted (running, no live job)
    QString model_path;       // the base model
    QString model_name;
    QString preset;
    QString started;          // ISO-8601
    QString finished;
    QString error;
    qint64 steps_done = 0;    // the last step in metrics.jsonl
    qint64 total_steps = 0;   // the configured steps (0 until config.json is written)
    qint64 liked = 0;         // training images used (config.json "data")
    qint64 disliked = 0;
    qint64 skipped = 0;
    QStringList checkpoints;  // complete checkpoints, oldest first (absolute paths of step-N)
    QJsonObject options;      // kto::TrainOptions as JSON (config.json "options")
};

// Reads one run folder; a folder with neither run.json nor config.json gives an empty id.
RunSummary readRunSummary(const QString& run_dir);
// Every run under runs_dir, newest first (by folder name, which starts with the start time).
QVector<RunSummary> readRuns(const QString& runs_dir);
// The run's metrics.jsonl (torn or malformed lines are skipped).
QVector<TrainingStep> readRunMetrics(const QString& run_dir);
// The run's previews/step-N/pP-sS.png, by step, named with the probe prompts of `options`.
QMap<qint64, PreviewTiles> readRunPreviews(const QString& run_dir, const QJsonObject& options);
// The complete checkpoints of a run (holding trainer_state.json), oldest first.
QStringList runCheckpoints(const QString& run_dir);

class RunHistoryModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { RunColumn, StatusColumn, ModelColumn, StepsColumn, DataColumn, CheckpointsColumn, ColumnCount };
    enum Role { DirRole = Qt::UserRole + 1 };
    explicit RunHistoryModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    // Rescans runs_dir on a pool thread; `reloaded` follows. A newer reload supersedes an older one.
    void reload(const QString& runs_dir);
    bool loading() const { return pending_ > 0; }
    // The run a job is training now: its "running" is live, others' "running" means interrupted.
    void setLiveRun(const QString& run_dir);
    const RunSummary* run(int row) const;
    int rowOfDir(const QString& run_dir) const;

signals:
    void reloaded();

private:
    QVector<RunSummary> runs_;
    QString live_dir_;
    int pending_ = 0;
    quint64 generation_ = 0;
};

}  // namespace kto::ui
