#pragma once
// The Train area: the training form with presets, Start / Pause / Resume / Cancel, progress with
// an ETA, live curves, the live preview grid (base beside current, a slider over the preview
// steps) and the workspace's run history. The run itself is the TrainingWorker's, on its own
// thread: this panel only sends it requests and control calls and draws what its queued signals
// bring, so generating and rating go on while a run trains.
#include <QJsonObject>
#include <QMap>
#include <QVector>
#include <QWidget>

#include "ui/store/records.h"
#include "ui/workers/training_request.h"

class QAction;
class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QTabWidget;
class QTableView;
class QTimer;

namespace kto::ui {

class MetricsCharts;
class ModelCatalog;
class PreviewGrid;
class RunHistoryModel;
class StoreService;
class TrainingForm;
class TrainingWorker;

class TrainPanel : public QWidget {
    Q_OBJECT
public:
    enum Tab { CurvesTab, PreviewsTab, HistoryTab };
    TrainPanel(StoreService* store, ModelCatalog* catalog, TrainingWorker* worker, QWidget* parent = nullptr);

    QAction* startAction() const { return start_; }
    QAction* pauseAction() const { return pause_; }
    QAction* resumeAction() const { return resume_; }
    QAction* cancelAction() const { return cancel_; }
    QAction* continueAction() const { return continue_; }

    TrainingForm* form() const { return form_; }
    MetricsCharts* charts() const { return charts_; }
    PreviewGrid* previews() const { return grid_; }
    RunHistoryModel* history() const { return history_; }
    QTableView* historyView() const { return history_view_; }
    QTabWidget* tabs() const { return tabs_; }
    QProgressBar* progressBar() const { return progress_; }
    QLabel* statusLabel() const { return status_; }
    QLabel* etaLabel() const { return eta_; }
    QString readinessText() const;

    bool running() const { return running_; }
    bool paused() const { return paused_; }
    QString liveRunDir() const { return live_dir_; }
    QString shownRunDir() const { return shown_dir_; }
    qint64 lastStep() const { return live_steps_.isEmpty() ? -1 : live_steps_.last().step; }

    // Shows a run's curves and previews (the live run's come from memory and its files).
    void showRun(const QString& run_dir);
    // Rescans the workspace's runs/ folder.
    void reloadHistory();

public slots:
    void start();
    void pause();
    void resume();
    void cancel();
    void continueSelectedRun();  // resumes the selected run from its last checkpoint
    void useSelectedRunSettings();

signals:
    void checkpointsChanged();  // a checkpoint was written or a run ended: the model picker rescans
    void runFinished(const kto::ui::TrainingOutcome& outcome);

private:
    void startRequest(TrainingRequest request, const QJsonObject& options);
    void onStarted(const QString& run_dir);
    void onMessage(const QString& text);
    void onStep(const TrainingStep& step);
    void onPreview(qint64 step, const PreviewTiles& tiles);
    void onCheckpoint(qint64 step, const QString& dir);
    void onFinished(const TrainingOutcome& outcome);
    void updateActions();
    void updateReadiness(const LabelCounts& counts);
    void updateDetails();
    void pollPause();
    QString newRunDir() const;

    StoreService* store_;
    TrainingWorker* worker_;
    TrainingForm* form_;
    MetricsCharts* charts_;
    PreviewGrid* grid_;
    RunHistoryModel* history_;
    QTableView* history_view_;
    QLabel* details_;
    QTabWidget* tabs_;
    QProgressBar* progress_;
    QLabel* status_;
    QLabel* eta_;
    QLabel* readiness_;
    QPlainTextEdit* log_;
    QPushButton* start_button_;
    QPushButton* pause_button_;
    QPushButton* resume_button_;
    QPushButton* cancel_button_;
    QAction* start_;
    QAction* pause_;
    QAction* resume_;
    QAction* cancel_;
    QAction* continue_;
    QAction* use_settings_;
    QTimer* pause_poll_;
    LabelCounts counts_;

    bool running_ = false;
    bool pausing_ = false;
    bool paused_ = false;
    QString live_dir_;
    QJsonObject live_options_;
    int live_workers_ = 1;        // processes of the live run (> 1: data-parallel, no pause)
    QVector<TrainingStep> live_steps_;
    QMap<qint64, PreviewTiles> live_previews_;
    QString shown_dir_;
    quint64 show_generation_ = 0;
};

}  // namespace kto::ui
