#include "ui/app/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QComboBox>
#include <QListView>
#include <QPlainTextEdit>
#include <QDir>
#include <QLabel>
#include <QMenuBar>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>
#include <QThread>

#include "core/common/runtime.h"
#include "ui/app/help_overlay.h"
#include "ui/app/settings_dialog.h"
#include "ui/common/dialogs.h"
#include "ui/compare/compare_panel.h"
#include "ui/dataset/dataset_dialogs.h"
#include "ui/gallery/gallery_panel.h"
#include "ui/generate/generate_panel.h"
#include "ui/generate/model_catalog.h"
#include "ui/rate/rate_panel.h"
#include "ui/store/store_service.h"
#include "ui/train/train_panel.h"
#include "ui/workers/generation_worker.h"
#include "ui/workers/training_worker.h"

namespace kto::ui {

MainWindow::MainWindow(const StartupOptions& options, QWidget* parent)
    : QMainWindow(parent), settings_(AppSettings::load()), options_(options) {
    setObjectName("MainWindow");
    setWindowTitle(tr("KTO Studio"));
    qRegisterMetaType<kto::ui::GenerationRequest>();

    store_ = new StoreService(this);
    catalog_ = new ModelCatalog(this);

    // The generation engine: one worker on its own thread for the life of the window.
    generation_thread_ = new QThread(this);
    generation_thread_->setObjectName("kto-generation");
    worker_ = new GenerationWorker;
    worker_->moveToThread(generation_thread_);
    connect(generation_thread_, &QThread::finished, worker_, &QObject::deleteLater);
    generation_thread_->start();

    // The training engine: its own thread, so a run goes on while the user generates and rates.
    training_thread_ = new QThread(this);
    training_thread_->setObjectName("kto-training");
    training_worker_ = new TrainingWorker;
    training_worker_->moveToThread(training_thread_);
    connect(training_thread_, &QThread::finished, training_worker_, &QObject::deleteLater);
    training_thread_->start();

    areas_ = new QTabWidget(this);
    areas_->setObjectName("areas");
    areas_->setDocumentMode(true);
    generate_ = new GeneratePanel(catalog_, areas_);
    rate_ = new RatePanel(store_, areas_);
    gallery_ = new GalleryPanel(store_, areas_);
    train_ = new TrainPanel(store_, catalog_, training_worker_, areas_);
    compare_ = new ComparePanel(catalog_, store_, areas_);
    areas_->addTab(generate_, tr("&Generate"));
    areas_->addTab(rate_, tr("&Rate"));
    areas_->addTab(gallery_, tr("G&allery"));
    areas_->addTab(train_, tr("&Train"));
    areas_->addTab(compare_, tr("&Compare"));
    setCentralWidget(areas_);
    connect(areas_, &QTabWidget::currentChanged, this, &MainWindow::onAreaChanged);

    // Generation: form -> worker (queued) -> progress back to the form, images into the store.
    connect(generate_, &GeneratePanel::generateRequested, worker_, &GenerationWorker::generate);
    connect(generate_, &GeneratePanel::cancelRequested, this, [this] { worker_->cancel(); });
    connect(worker_, &GenerationWorker::status, generate_, &GeneratePanel::onModelStatus);
    connect(worker_, &GenerationWorker::progress, generate_, &GeneratePanel::onProgress);
    connect(worker_, &GenerationWorker::preview, generate_, &GeneratePanel::onPreview);
    connect(worker_, &GenerationWorker::imageReady, generate_, &GeneratePanel::onImageReady);
    connect(worker_, &GenerationWorker::finished, generate_, &GeneratePanel::onFinished);
    connect(worker_, &GenerationWorker::imageReady, this,
            [this](const GenerationRequest& r, int, qint64 seed, const QImage& img) {
                store_->addGeneratedImage(r, seed, img);
            });
    connect(generate_, &GeneratePanel::addModelFolderRequested, this, [this](const QString& dir) {
        if (!settings_.model_folders.contains(dir)) settings_.model_folders << dir;
        settings_.save();
        rescanModels();
        generate_->selectModel(QDir(dir).absolutePath());
    });
    // New checkpoints of a finished or running run appear in the Generate area's model picker.
    connect(train_, &TrainPanel::checkpointsChanged, this, &MainWindow::rescanModels);
    connect(gallery_, &GalleryPanel::regenerateRequested, this, [this](const ImageRecord& r) {
        generate_->fillFrom(r);
        showArea(GenerateArea);
    });

    connect(store_, &StoreService::countsChanged, this, &MainWindow::updateStatus);
    connect(store_, &StoreService::failed, this, [this](const QString& m) { statusBar()->showMessage(m, 10000); });
    connect(store_, &StoreService::opened, this, [this](bool ok, const QString& error) {
        updateStatus();
        if (!ok) {
            MessageBox::critical(this, tr("Cannot open the workspace"),
                                 tr("The workspace %1 could not be opened: %2\nChoose another folder in "
                                    "Settings (Ctrl+,) or File > Open workspace.")
                                     .arg(store_->workspace(), error));
        } else {
            gallery_->reload();
            rate_->reset();
            if (areas_->currentWidget() == rate_) rate_->activate();
        }
        emit workspaceOpened(ok);
    });

    workspace_label_ = new QLabel(this);
    workspace_label_->setObjectName("statusWorkspace");
    counts_label_ = new QLabel(this);
    counts_label_->setObjectName("statusCounts");
    device_label_ = new QLabel(this);
    device_label_->setObjectName("statusDevice");
    statusBar()->addPermanentWidget(workspace_label_, 1);
    statusBar()->addPermanentWidget(counts_label_);
    statusBar()->addPermanentWidget(device_label_);

    help_ = new HelpOverlay(this);
    buildActions();
    buildMenus();

    if (!options_.model.isEmpty()) {
        const QString m = QDir(options_.model).absolutePath();
        if (!settings_.model_folders.contains(m)) settings_.model_folders << m;
        settings_.last_model = m;
    }
    applySettings(settings_);
    openWorkspace(options_.workspace.isEmpty() ? settings_.workspace : options_.workspace);

    resize(1200, 800);
    if (options_.restore_state) {
        QSettings s;
        restoreGeometry(s.value("window/geometry").toByteArray());
        restoreState(s.value("window/state").toByteArray());
        areas_->setCurrentIndex(s.value("window/area", 0).toInt());
    }
}

MainWindow::~MainWindow() {
    training_worker_->cancel();  // within one step; checkpoints already written stay
    worker_->cancel();
    QMetaObject::invokeMethod(worker_, &GenerationWorker::unload, Qt::QueuedConnection);
    generation_thread_->quit();
    generation_thread_->wait();
    training_thread_->quit();
    training_thread_->wait();
}

void MainWindow::buildActions() {
    const QStringList names = {tr("Generate"), tr("Rate"), tr("Gallery"), tr("Train"), tr("Compare")};
    for (int i = 0; i < names.size(); ++i) {
        auto* a = new QAction(tr("Go to %1").arg(names[i]), this);
        a->setObjectName(QStringLiteral("area%1").arg(i + 1));
        a->setShortcut(QKeySequence(Qt::CTRL | (Qt::Key_1 + i)));
        connect(a, &QAction::triggered, this, [this, i] { showArea(static_cast<Area>(i)); });
        addAction(a);
        area_actions_ << a;
    }
    open_workspace_ = new QAction(tr("&Open workspace…"), this);
    open_workspace_->setShortcut(QKeySequence::Open);
    connect(open_workspace_, &QAction::triggered, this, [this] {
        const QString dir = FileDialog::getExistingDirectory(this, tr("Open a workspace folder"), store_->workspace());
        if (dir.isEmpty()) return;
        settings_.workspace = dir;
        settings_.save();
        openWorkspace(dir);
    });
    export_ = new QAction(tr("&Export dataset…"), this);
    export_->setObjectName("exportDataset");
    export_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    connect(export_, &QAction::triggered, this, &MainWindow::exportDataset);
    import_ = new QAction(tr("&Import dataset…"), this);
    import_->setObjectName("importDataset");
    import_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_I));
    connect(import_, &QAction::triggered, this, &MainWindow::importDataset);
    settings_action_ = new QAction(tr("&Settings…"), this);
    settings_action_->setObjectName("settings");
    settings_action_->setShortcuts({QKeySequence(Qt::CTRL | Qt::Key_Comma), QKeySequence::Preferences});
    connect(settings_action_, &QAction::triggered, this, &MainWindow::showSettings);
    quit_ = new QAction(tr("&Quit"), this);
    quit_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Q));
    connect(quit_, &QAction::triggered, this, &QWidget::close);
    help_action_ = new QAction(tr("&Keyboard shortcuts"), this);
    help_action_->setObjectName("help");
    help_action_->setShortcuts({QKeySequence(Qt::Key_F1), QKeySequence(Qt::Key_Question)});
    connect(help_action_, &QAction::triggered, help_, &HelpOverlay::toggle);
    about_ = new QAction(tr("&About KTO Studio"), this);
    connect(about_, &QAction::triggered, this, [this] {
        MessageBox::information(this, tr("About KTO Studio"),
                                tr("KTO Studio %1\nGenerate images, rate them, and fine-tune text-to-image "
                                   "models toward what you like (Diffusion-KTO).")
                                    .arg(QApplication::applicationVersion()));
    });
    for (QAction* a : {open_workspace_, export_, import_, settings_action_, quit_, help_action_}) addAction(a);

    help_->setSections({
        {tr("Areas"), area_actions_},
        {tr("Generate"), {generate_->generateAction(), generate_->cancelAction()}},
        {tr("Rate"),
         {rate_->likeAction(), rate_->dislikeAction(), rate_->skipAction(), rate_->undoAction(), rate_->nextAction()}},
        {tr("Gallery"),
         {gallery_->findAction(), gallery_->openAction(), gallery_->likeAction(), gallery_->dislikeAction(),
          gallery_->clearAction(), gallery_->deleteAction()}},
        {tr("Train"), {train_->startAction(), train_->pauseAction(), train_->resumeAction(), train_->cancelAction()}},
        {tr("Compare (blind A/B)"),
         {compare_->voteLeftAction(), compare_->voteRightAction(), compare_->voteTieAction(), compare_->toggleAction()}},
        {tr("Workspace"), {open_workspace_, export_, import_, settings_action_, quit_, help_action_}},
    });
}

void MainWindow::buildMenus() {
    QMenu* file = menuBar()->addMenu(tr("&File"));
    file->addAction(open_workspace_);
    file->addSeparator();
    file->addAction(export_);
    file->addAction(import_);
    file->addSeparator();
    file->addAction(generate_->addModelAction());
    file->addAction(settings_action_);
    file->addSeparator();
    file->addAction(quit_);

    QMenu* view = menuBar()->addMenu(tr("&View"));
    view->addActions(area_actions_);

    QMenu* generate = menuBar()->addMenu(tr("&Generate"));
    generate->addAction(generate_->generateAction());
    generate->addAction(generate_->cancelAction());

    QMenu* rate = menuBar()->addMenu(tr("&Rate"));
    rate->addActions({rate_->likeAction(), rate_->dislikeAction(), rate_->skipAction(), rate_->undoAction(),
                      rate_->nextAction()});

    QMenu* gallery = menuBar()->addMenu(tr("G&allery"));
    gallery->addActions({gallery_->findAction(), gallery_->openAction(), gallery_->likeAction(),
                         gallery_->dislikeAction(), gallery_->clearAction(), gallery_->deleteAction()});

    QMenu* train = menuBar()->addMenu(tr("&Train"));
    train->addActions({train_->startAction(), train_->pauseAction(), train_->resumeAction(), train_->cancelAction()});

    QMenu* help = menuBar()->addMenu(tr("&Help"));
    help->addAction(help_action_);
    help->addAction(about_);
}

void MainWindow::showArea(Area area) { areas_->setCurrentIndex(static_cast<int>(area)); }

void MainWindow::onAreaChanged(int index) {
    switch (static_cast<Area>(index)) {
        case RateArea: rate_->activate(); break;
        case GalleryArea: gallery_->view()->setFocus(); break;
        case GenerateArea: generate_->promptEdit()->setFocus(); break;
        default: break;
    }
}

void MainWindow::openWorkspace(const QString& dir) {
    workspace_label_->setText(tr("Workspace: %1").arg(QDir::toNativeSeparators(dir)));
    store_->open(dir);
    rescanModels();
}

void MainWindow::rescanModels() {
    const QString keep_path = generate_->modelBox()->currentData(ModelCatalog::PathRole).toString();
    const QString keep_unet = generate_->modelBox()->currentData(ModelCatalog::UnetPathRole).toString();
    const QString runs = store_->workspace().isEmpty() ? QString() : store_->workspace() + "/runs";
    catalog_->rescan(options_.demo_model, settings_.model_folders, runs);
    if (!keep_path.isEmpty() && generate_->selectModel(keep_path, keep_unet)) return;
    if (!settings_.last_model.isEmpty() && generate_->selectModel(settings_.last_model)) return;
    if (catalog_->rowCount() > 0) generate_->modelBox()->setCurrentIndex(0);
}

void MainWindow::applySettings(const AppSettings& s) {
    settings_ = s;
    generate_->applyDefaults(s.defaults);
    generate_->setDevice(s.device);
    compare_->setDevice(s.device);
    QMetaObject::invokeMethod(worker_, [w = worker_, t = s.threads] { w->setThreads(t); }, Qt::QueuedConnection);
    device_label_->setText(s.device == "cuda" ? tr("CUDA") : tr("CPU"));
    set_cpu_dtype_choice(s.cpu_precision.toStdString());
}

void MainWindow::showSettings() {
    SettingsDialog dialog(settings_, cudaAvailable(), this);
    if (dialog.exec() != QDialog::Accepted) return;
    AppSettings s = dialog.settings();
    const bool workspace_changed = QDir(s.workspace).absolutePath() != QDir(store_->workspace()).absolutePath();
    applySettings(s);
    settings_.save();
    if (workspace_changed) openWorkspace(s.workspace);
}

QString MainWindow::statusCountsText() const {
    const LabelCounts c = store_->counts();
    return tr("%1 images · %2 liked · %3 disliked · %4 unlabelled")
        .arg(c.total)
        .arg(c.liked)
        .arg(c.disliked)
        .arg(c.unlabelled());
}

void MainWindow::updateStatus() {
    counts_label_->setText(store_->isOpen() ? statusCountsText() : tr("no workspace open"));
}

void MainWindow::exportDataset() {
    auto* dialog = new ExportDialog(store_, this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->open();
}

void MainWindow::importDataset() {
    auto* dialog = new ImportDialog(store_, this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    connect(dialog, &DatasetJobDialog::jobFinished, this, [this](bool ok) {
        if (!ok) return;
        gallery_->reload();
        rate_->reset();
        if (areas_->currentWidget() == rate_) rate_->activate();
    });
    dialog->open();
}

void MainWindow::saveState() {
    QSettings s;
    s.setValue("window/geometry", saveGeometry());
    s.setValue("window/state", QMainWindow::saveState());
    s.setValue("window/area", areas_->currentIndex());
    settings_.last_model = generate_->modelBox()->currentData(ModelCatalog::PathRole).toString();
    settings_.save();
}

void MainWindow::closeEvent(QCloseEvent* event) {
    if (train_->running() &&
        MessageBox::question(this, tr("Training is running"),
                             tr("Quitting cancels the training run. Checkpoints written so far stay, and the run "
                                "can be continued later from the Train area's run history. Quit now?")) !=
            QMessageBox::Yes) {
        event->ignore();
        return;
    }
    saveState();
    worker_->cancel();
    QMainWindow::closeEvent(event);
}

}  // namespace kto::ui
