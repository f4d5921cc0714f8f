#include "ui/train/train_panel.h"

#include <QAction>
#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QFutureWatcher>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonArray>
#include <QJsonDocument>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QSplitter>
#include <QTabWidget>
#include <QTableView>
#include <QTimer>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>
#include <cmath>

#include "ui/train/metrics_charts.h"
#include "ui/train/preview_grid.h"
#include "ui/train/run_history.h"
#include "ui/train/training_form.h"
#include "ui/store/store_service.h"
#include "ui/workers/training_worker.h"

namespace kto::ui {

namespace {

QString duration_text(double s) {
    if (!std::isfinite(s) || s < 0) return QStringLiteral("?");
    const auto t = static_cast<qint64>(s + 0.5);
    if (t >= 3600) return QObject::tr("%1 h %2 min").arg(t / 3600).arg((t % 3600) / 60);
    if (t >= 60) return QObject::tr("%1 min %2 s").arg(t / 60).arg(t % 60);
    return QObject::tr("%1 s").arg(t);
}

QString number_text(double v, int precision = 4) {
    return std::isfinite(v) ? QString::number(v, 'g', precision) : QStringLiteral("–");
}

struct RunFiles {
    QVector<TrainingStep> steps;
    QMap<qint64, PreviewTiles> previews;
};

QPushButton* action_button(QAction* a, QWidget* parent) {
    auto* b = new QPushButton(a->text(), parent);
    b->setObjectName(a->objectName() + "Button");
    b->setToolTip(a->toolTip());
    QObject::connect(b, &QPushButton::clicked, a, &QAction::trigger);
    QObject::connect(a, &QAction::changed, b, [a, b] { b->setEnabled(a->isEnabled()); });
    b->setEnabled(a->isEnabled());
    return b;
}

}  // namespace

TrainPanel::TrainPanel(StoreService* store, ModelCatalog* catalog, TrainingWorker* worker, QWidget* parent)
    : QWidget(parent), store_(store), worker_(worker) {
    setObjectName("trainPanel");
    form_ = new TrainingForm(catalog, this);
    auto* form_scroll = new QScrollArea(this);
    form_scroll->setWidget(form_);
    form_scroll->setWidgetResizable(true);
    form_scroll->setFrameShape(QFrame::NoFrame);
    form_scroll->setMinimumWidth(form_->sizeHint().width() + 24);

    auto make_action = [this](const QString& text, const char* name, const QKeySequence& key, const QString& tip) {
        auto* a = new QAction(text, this);
        a->setObjectName(name);
        if (!key.isEmpty()) {
            a->setShortcut(key);
            a->setShortcutContext(Qt::WidgetWithChildrenShortcut);
        }
        a->setToolTip(key.isEmpty() ? tip : tip + " (" + key.toString(QKeySequence::NativeText) + ")");
        addAction(a);
        return a;
    };
    start_ = make_action(tr("Start training"), "startTraining", QKeySequence(Qt::CTRL | Qt::Key_Return),
                         tr("Fine-tune the base model on this workspace's liked and disliked images"));
    pause_ = make_action(tr("Pause"), "pauseTraining", QKeySequence(Qt::CTRL | Qt::Key_P),
                         tr("Pause after the current step; everything stays loaded"));
    resume_ = make_action(tr("Resume"), "resumeTraining", QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_P),
                          tr("Go on from where the run paused"));
    cancel_ = make_action(tr("Cancel"), "cancelTraining", QKeySequence(Qt::Key_Escape),
                          tr("Stop the run within one step; checkpoints written so far stay"));
    continue_ = make_action(tr("Continue run"), "continueRun", {},
                            tr("Resume the selected run from its last checkpoint, with its own settings"));
    use_settings_ = make_action(tr("Use its settings"), "useRunSettings", {},
                                tr("Load the selected run's base model and options into the form"));
    connect(start_, &QAction::triggered, this, &TrainPanel::start);
    connect(pause_, &QAction::triggered, this, &TrainPanel::pause);
    connect(resume_, &QAction::triggered, this, &TrainPanel::resume);
    connect(cancel_, &QAction::triggered, this, &TrainPanel::cancel);
    connect(continue_, &QAction::triggered, this, &TrainPanel::continueSelectedRun);
    connect(use_settings_, &QAction::triggered, this, &TrainPanel::useSelectedRunSettings);
    start_button_ = action_button(start_, this);
    start_button_->setDefault(true);
    pause_button_ = action_button(pause_, this);
    resume_button_ = action_button(resume_, this);
    cancel_button_ = action_button(cancel_, this);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(start_button_, 1);
    buttons->addWidget(pause_button_);
    buttons->addWidget(resume_button_);
    buttons->addWidget(cancel_button_);

    readiness_ = new QLabel(this);
    readiness_->setObjectName("trainReadiness");
    readiness_->setWordWrap(true);

    auto* left = new QWidget(this);
    auto* left_layout = new QVBoxLayout(left);
    left_layout->setContentsMargins(0, 0, 0, 0);
    left_layout->addWidget(form_scroll, 1);
    left_layout->addWidget(readiness_);
    left_layout->addLayout(buttons);

    progress_ = new QProgressBar(this);
    progress_->setObjectName("trainProgress");
    progress_->setRange(0, 1);
    progress_->setValue(0);
    progress_->setFormat(tr("step %v / %m"));
    status_ = new QLabel(tr("Idle."), this);
    status_->setObjectName("trainStatus");
    status_->setWordWrap(true);
    status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    eta_ = new QLabel(this);
    eta_->setObjectName("trainEta");
    log_ = new QPlainTextEdit(this);
    log_->setObjectName("trainLog");
    log_->setReadOnly(true);
    log_->setMaximumBlockCount(500);
    log_->setMaximumHeight(80);

    charts_ = new MetricsCharts(this);
    grid_ = new PreviewGrid(this);
    history_ = new RunHistoryModel(this);
    history_view_ = new QTableView(this);
    history_view_->setObjectName("runHistory");
    history_view_->setModel(history_);
    history_view_->setSelectionBehavior(QAbstractItemView::SelectRows);
    history_view_->setSelectionMode(QAbstractItemView::SingleSelection);
    history_view_->verticalHeader()->hide();
    history_view_->horizontalHeader()->setStretchLastSection(true);
    history_view_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    details_ = new QLabel(this);
    details_->setObjectName("runDetails");
    details_->setWordWrap(true);
    details_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    details_->setAlignment(Qt::AlignTop | Qt::AlignLeft);
    auto* history_page = new QWidget(this);
    auto* hl = new QVBoxLayout(history_page);
    hl->addWidget(history_view_, 2);
    hl->addWidget(details_, 1);
    auto* history_buttons = new QHBoxLayout;
    history_buttons->addStretch();
    history_buttons->addWidget(action_button(use_settings_, this));
    history_buttons->addWidget(action_button(continue_, this));
    hl->addLayout(history_buttons);

    tabs_ = new QTabWidget(this);
    tabs_->setObjectName("trainTabs");
    tabs_->addTab(charts_, tr("Curves"));
    tabs_->addTab(grid_, tr("Previews"));
    tabs_->addTab(history_page, tr("Run history"));

    auto* right = new QWidget(this);
    auto* right_layout = new QVBoxLayout(right);
    right_layout->setContentsMargins(0, 0, 0, 0);
    auto* progress_row = new QHBoxLayout;
    progress_row->addWidget(progress_, 1);
    progress_row->addWidget(eta_);
    right_layout->addLayout(progress_row);
    right_layout->addWidget(status_);
    right_layout->addWidget(log_);
    right_layout->addWidget(tabs_, 1);

    auto* splitter = new QSplitter(this);
    splitter->addWidget(left);
    splitter->addWidget(right);
    splitter->setStretchFactor(1, 1);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(splitter);

    pause_poll_ = new QTimer(this);
    pause_poll_->setInterval(100);
    connect(pause_poll_, &QTimer::timeout, this, &TrainPanel::pollPause);

    // The worker lives on the training thread: these connections are queued.
    connect(worker_, &TrainingWorker::started, this, &TrainPanel::onStarted);
    connect(worker_, &TrainingWorker::message, this, &TrainPanel::onMessage);
    connect(worker_, &TrainingWorker::stepDone, this, &TrainPanel::onStep);
    connect(worker_, &TrainingWorker::previewReady, this, &TrainPanel::onPreview);
    connect(worker_, &TrainingWorker::checkpointSaved, this, &TrainPanel::onCheckpoint);
    connect(worker_, &TrainingWorker::finished, this, &TrainPanel::onFinished);

    connect(history_view_->selectionModel(), &QItemSelectionModel::currentRowChanged, this,
            [this](const QModelIndex& current) {
                updateDetails();
                updateActions();
                if (const RunSummary* r = history_->run(current.row())) showRun(r->dir);
            });
    connect(history_, &RunHistoryModel::reloaded, this, [this] {
        // Keep the shown run selected across rescans.
        const int row = history_->rowOfDir(shown_dir_);
        if (row >= 0) {
            const QSignalBlocker block(history_view_->selectionModel());
            history_view_->selectRow(row);
        }
        history_view_->resizeColumnsToContents();
        updateDetails();
        updateActions();
    });
    connect(store_, &StoreService::countsChanged, this, &TrainPanel::updateReadiness);
    connect(store_, &StoreService::opened, this, [this](bool ok) {
        if (ok) reloadHistory();
    });
    updateReadiness(store_->counts());
    updateActions();
}

QString TrainPanel::readinessText() const {
    const LabelCounts& c = counts_;
    QString text = tr("Trains on this workspace's labels: %1 liked, %2 disliked (%3 unlabelled).")
                       .arg(c.liked)
                       .arg(c.disliked)
                       .arg(c.unlabelled());
    if (c.liked == 0 || c.disliked == 0)
        text += " " + tr("KTO learns from both kinds: rate some images in the Rate area (L like, D dislike).");
    return text;
}

void TrainPanel::updateReadiness(const LabelCounts& counts) {
    counts_ = counts;
    readiness_->setText(readinessText());
}

void TrainPanel::reloadHistory() {
    if (!store_->workspace().isEmpty()) history_->reload(store_->workspace() + "/runs");
}

QString TrainPanel::newRunDir() const {
    // Named by the start time, so runs sort in the order they were started.
    const QString base = store_->workspace() + "/runs/" + QDateTime::currentDateTime().toString("yyyyMMdd-HHmmss");
    QString dir = base;
    for (int n = 2; QFileInfo::exists(dir); ++n) dir = base + "-" + QString::number(n);
    return dir;
}

void TrainPanel::start() {
    if (running_) return;
    if (!store_->isOpen()) {
        status_->setText(tr("No workspace is open: open one (File > Open workspace) and label some images first."));
        return;
    }
    if (counts_.liked + counts_.disliked == 0) {
        status_->setText(tr("This workspace has no liked or disliked images yet. Rate some in the Rate area "
                            "(L like, D dislike), then start training."));
        return;
    }
    const QString problem = form_->problem();
    if (!problem.isEmpty()) {
        status_->setText(tr("Cannot start: %1").arg(problem));
        return;
    }
    TrainingRequest r;
    r.run_dir = newRunDir();
    r.model_path = form_->modelPath();
    r.model_name = form_->modelName();
    r.preset = form_->presetId();
    r.workers = form_->workers();
    startRequest(r, form_->options());
}

void TrainPanel::continueSelectedRun() {
    if (running_) return;
    const RunSummary* run = history_->run(history_view_->currentIndex().row());
    if (!run) return;
    if (run->options.isEmpty() || run->model_path.isEmpty()) {
        status_->setText(tr("Run %1 has no config.json (it stopped before training began): start a new run instead.")
                             .arg(run->id));
        return;
    }
    TrainingRequest r;
    r.run_dir = run->dir;
    r.model_path = run->model_path;
    r.model_name = run->model_name;
    r.preset = run->preset;
    r.resume = true;
    r.workers = form_->workers();  // a run resumes on any number of processes
    startRequest(r, run->options);
}

void TrainPanel::useSelectedRunSettings() {
    const RunSummary* run = history_->run(history_view_->currentIndex().row());
    if (!run || run->options.isEmpty()) return;
    form_->setOptions(run->options);
    form_->selectModel(run->model_path);
    status_->setText(tr("The form holds the settings of run %1.").arg(run->id));
}

void TrainPanel::startRequest(TrainingRequest request, const QJsonObject& options) {
    request.workspace = store_->workspace();
    request.options_json = QJsonDocument(options).toJson(QJsonDocument::Compact);
    running_ = true;
    pausing_ = paused_ = false;
    live_dir_ = QFileInfo(request.run_dir).absoluteFilePath();
    live_options_ = options;
    live_workers_ = request.workers;
    live_steps_.clear();
    live_previews_.clear();
    log_->clear();
    progress_->setRange(0, 0);  // busy until the first step: loading, encoding the images
    eta_->clear();
    status_->setText(request.resume ? tr("Continuing run %1…").arg(QFileInfo(live_dir_).fileName())
                                    : tr("Starting run %1…").arg(QFileInfo(live_dir_).fileName()));
    history_->setLiveRun(live_dir_);
    showRun(live_dir_);
    tabs_->setCurrentIndex(CurvesTab);
    updateActions();
    QMetaObject::invokeMethod(worker_, [w = worker_, request] { w->start(request); }, Qt::QueuedConnection);
}

void TrainPanel::pause() {
    if (!running_ || pausing_ || paused_) return;
    worker_->pause();
    pausing_ = true;
    status_->setText(tr("Pausing after the current step…"));
    pause_poll_->start();
    updateActions();
}

void TrainPanel::pollPause() {
    if (!running_ || worker_->state() != TrainingWorker::State::Paused) return;
    pause_poll_->stop();
    pausing_ = false;
    paused_ = true;
    status_->setText(tr("Paused at step %1. Resume goes on from here; Cancel ends the run.").arg(std::max<qint64>(0, lastStep())));
    updateActions();
}

void TrainPanel::resume() {
    if (!running_ || !(paused_ || pausing_)) return;
    worker_->resume();
    pause_poll_->stop();
    pausing_ = paused_ = false;
    status_->setText(tr("Resumed."));
    updateActions();
}

void TrainPanel::cancel() {
    if (!running_) return;
    worker_->cancel();
    pause_poll_->stop();
    status_->setText(tr("Cancelling…"));
    cancel_->setEnabled(false);
}

void TrainPanel::onStarted(const QString& run_dir) {
    Q_UNUSED(run_dir);
    reloadHistory();
}

void TrainPanel::onMessage(const QString& text) {
    log_->appendPlainText(text);
    if (!pausing_ && !paused_ && live_steps_.isEmpty()) status_->setText(text);
}

void TrainPanel::onStep(const TrainingStep& s) {
    if (!running_) return;
    live_steps_.push_back(s);
    progress_->setRange(0, static_cast<int>(s.total_steps));
    progress_->setValue(static_cast<int>(s.step));
    eta_->setText(tr("ETA %1").arg(duration_text(s.eta_seconds)));
    if (!pausing_ && !paused_)
        status_->setText(tr("Step %1 of %2 · loss %3 · margin %4 · KL %5 · %6 samples/s · %7 elapsed")
                             .arg(s.step)
                             .arg(s.total_steps)
                             .arg(number_text(s.loss))
                             .arg(number_text(s.reward_margin, 3))
                             .arg(number_text(s.kl, 3))
                             .arg(number_text(s.samples_per_second, 3))
                             .arg(duration_text(s.elapsed_seconds)));
    if (shown_dir_ == live_dir_) charts_->append(s);
}

void TrainPanel::onPreview(qint64 step, const PreviewTiles& tiles) {
    if (!running_) return;
    live_previews_.insert(step, tiles);
    if (shown_dir_ == live_dir_) grid_->addStep(step, tiles);
    log_->appendPlainText(tr("previews at step %1").arg(step));
}

void TrainPanel::onCheckpoint(qint64 step, const QString& dir) {
    log_->appendPlainText(tr("checkpoint at step %1: %2").arg(step).arg(QDir::toNativeSeparators(dir)));
    reloadHistory();
    emit checkpointsChanged();
}

void TrainPanel::onFinished(const TrainingOutcome& o) {
    running_ = false;
    pausing_ = paused_ = false;
    pause_poll_->stop();
    const QString run = QFileInfo(live_dir_).fileName();
    if (!o.error.isEmpty()) {
        status_->setText(tr("Run %1 failed: %2").arg(run, o.error));
        log_->appendPlainText(o.error);
    } else if (o.cancelled) {
        status_->setText(o.final_checkpoint.isEmpty()
                             ? tr("Run %1 cancelled after %2 steps; no checkpoint was written.").arg(run).arg(o.steps_done)
                             : tr("Run %1 cancelled after %2 steps; its last checkpoint is %3 (in the Generate "
                                  "area's model list).")
                                   .arg(run)
                                   .arg(o.steps_done)
                                   .arg(QFileInfo(o.final_checkpoint).fileName()));
    } else {
        status_->setText(tr("Run %1 finished: %2 steps. Its checkpoint %3 is in the Generate area's model list.")
                             .arg(run)
                             .arg(o.steps_done)
                             .arg(QFileInfo(o.final_checkpoint).fileName()));
    }
    if (progress_->maximum() == 0) progress_->setRange(0, 1);
    eta_->clear();
    history_->setLiveRun({});
    reloadHistory();
    updateActions();
    emit checkpointsChanged();
    emit runFinished(o);
}

void TrainPanel::showRun(const QString& run_dir) {
    const QString dir = run_dir.isEmpty() ? QString() : QFileInfo(run_dir).absoluteFilePath();
    shown_dir_ = dir;
    const quint64 generation = ++show_generation_;
    const bool live = !dir.isEmpty() && dir == live_dir_ && running_;
    if (live) {
        charts_->setSteps(live_steps_);
        grid_->setSteps(live_previews_);
    } else {
        charts_->clear();
        grid_->clear();
    }
    if (dir.isEmpty()) return;
    // The files hold what happened before this session saw the run (all of it for a past run).
    QJsonObject options = live ? live_options_ : QJsonObject();
    if (!live)
        if (const RunSummary* r = history_->run(history_->rowOfDir(dir))) options = r->options;
    auto* watcher = new QFutureWatcher<RunFiles>(this);
    connect(watcher, &QFutureWatcher<RunFiles>::finished, this, [this, watcher, generation, dir] {
        watcher->deleteLater();
        if (generation != show_generation_) return;  // another run was chosen meanwhile
        RunFiles files = watcher->result();
        const bool live_now = dir == live_dir_ && running_;
        if (live_now) {
            const qint64 last = files.steps.isEmpty() ? -1 : files.steps.last().step;
            for (const TrainingStep& s : live_steps_)
                if (s.step > last) files.steps.push_back(s);
            for (auto it = live_previews_.begin(); it != live_previews_.end(); ++it)
                files.previews.insert(it.key(), it.value());
        }
        charts_->setSteps(files.steps);
        grid_->setSteps(files.previews);
    });
    watcher->setFuture(QtConcurrent::run([dir, options] {
        return RunFiles{readRunMetrics(dir), readRunPreviews(dir, options)};
    }));
}

void TrainPanel::updateDetails() {
    const RunSummary* r = history_->run(history_view_->currentIndex().row());
    if (!r) {
        details_->setText(tr("Select a run to see its settings, curves and previews."));
        return;
    }
    const QJsonObject& o = r->options;
    QStringList lines;
    lines << tr("<b>%1</b> · %2 · base model %3").arg(r->id, r->status.toHtmlEscaped(), r->model_name.toHtmlEscaped());
    if (!r->preset.isEmpty()) lines << tr("Preset: %1").arg(r->preset.toHtmlEscaped());
    if (!o.isEmpty()) {
        const QJsonObject lora = o.value("lora").toObject();
        lines << tr("%1, beta %2, %3 steps, batch %4 × %5, learning rate %6, %7, %8")
                     .arg(o.value("objective").toString())
                     .arg(o.value("beta").toDouble())
                     .arg(o.value("steps").toInteger())
                     .arg(o.value("batch_size").toInteger())
                     .arg(o.value("grad_accumulation").toInteger())
                     .arg(o.value("learning_rate").toDouble())
                     .arg(lora.value("enabled").toBool() ? tr("LoRA rank %1").arg(lora.value("rank").toInteger())
                                                          : tr("full UNet"))
                     .arg(o.value("device").toString());
    }
    if (r->liked + r->disliked > 0)
        lines << tr("Training images: %1 liked, %2 disliked, %3 skipped").arg(r->liked).arg(r->disliked).arg(r->skipped);
    QStringList ckpts;
    for (const QString& c : r->checkpoints) ckpts << QFileInfo(c).fileName();
    lines << tr("Checkpoints: %1").arg(ckpts.isEmpty() ? tr("none") : ckpts.join(", "));
    lines << tr("Started %1%2").arg(r->started, r->finished.isEmpty() ? QString() : tr(", ended %1").arg(r->finished));
    if (!r->error.isEmpty()) lines << tr("Error: %1").arg(r->error.toHtmlEscaped());
    lines << tr("Folder: %1").arg(QDir::toNativeSeparators(r->dir).toHtmlEscaped());
    details_->setText(lines.join("<br>"));
}

void TrainPanel::updateActions() {
    start_->setEnabled(!running_);
    pause_->setEnabled(running_ && !pausing_ && !paused_ && live_workers_ <= 1);
    resume_->setEnabled(running_ && (pausing_ || paused_));
    cancel_->setEnabled(running_);
    form_->setEnabled(!running_);
    const RunSummary* r = history_->run(history_view_->currentIndex().row());
    continue_->setEnabled(!running_ && r && !r->options.isEmpty() && r->status != "finished" &&
                          r->steps_done < r->total_steps);
    use_settings_->setEnabled(!running_ && r && !r->options.isEmpty());
}

}  // namespace kto::ui
