#pragma once
// The main window: one area per step of the loop (Generate, Rate, Gallery, Train, Compare), the
// store and generation threads, menus with every action's shortcut, a status bar with the
// workspace and its label counts, and a keyboard help overlay (F1 or ?).
#include <QMainWindow>

#include "ui/app/app_settings.h"
#include "ui/store/records.h"

class QAction;
class QLabel;
class QTabWidget;
class QThread;

namespace kto::ui {

class ComparePanel;
class GalleryPanel;
class GeneratePanel;
class GenerationWorker;
class HelpOverlay;
class ModelCatalog;
class RatePanel;
class StoreService;
class TrainPanel;
class TrainingWorker;

struct StartupOptions {
    QString workspace;     // overrides the remembered workspace for this run (--workspace)
    QString model;         // a model folder to add and select (--model)
    QString demo_model;    // the built-in demo model's folder, if installed
    bool restore_state = true;  // window geometry from QSettings
};

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    enum Area { GenerateArea, RateArea, GalleryArea, TrainArea, CompareArea };

    explicit MainWindow(const StartupOptions& options = {}, QWidget* parent = nullptr);
    ~MainWindow() override;

    QTabWidget* areas() const { return areas_; }
    GeneratePanel* generatePanel() const { return generate_; }
    RatePanel* ratePanel() const { return rate_; }
    GalleryPanel* galleryPanel() const { return gallery_; }
    TrainPanel* trainPanel() const { return train_; }
    ComparePanel* comparePanel() const { return compare_; }
    StoreService* store() const { return store_; }
    ModelCatalog* catalog() const { return catalog_; }
    GenerationWorker* worker() const { return worker_; }
    TrainingWorker* trainingWorker() const { return training_worker_; }
    HelpOverlay* helpOverlay() const { return help_; }
    const AppSettings& settings() const { return settings_; }
    QString statusCountsText() const;

    QAction* exportAction() const { return export_; }
    QAction* importAction() const { return import_; }
    QAction* settingsAction() const { return settings_action_; }
    QAction* helpAction() const { return help_action_; }

    void showArea(Area area);
    // Switches to another workspace folder (reopens the store, rescans checkpoints).
    void openWorkspace(const QString& dir);
    void applySettings(const AppSettings& s);
    void rescanModels();

public slots:
    void exportDataset();
    void importDataset();
    void showSettings();

signals:
    void workspaceOpened(bool ok);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void buildActions();
    void buildMenus();
    void updateStatus();
    void saveState();
    void onAreaChanged(int index);

    AppSettings settings_;
    StartupOptions options_;
    StoreService* store_ = nullptr;
    ModelCatalog* catalog_ = nullptr;
    QThread* generation_thread_ = nullptr;
    GenerationWorker* worker_ = nullptr;
    QThread* training_thread_ = nullptr;
    TrainingWorker* training_worker_ = nullptr;

    QTabWidget* areas_ = nullptr;
    GeneratePanel* generate_ = nullptr;
    RatePanel* rate_ = nullptr;
    GalleryPanel* gallery_ = nullptr;
    TrainPanel* train_ = nullptr;
    ComparePanel* compare_ = nullptr;
    HelpOverlay* help_ = nullptr;
    QLabel* workspace_label_ = nullptr;
    QLabel* counts_label_ = nullptr;
    QLabel* device_label_ = nullptr;

    QList<QAction*> area_actions_;
    QAction* open_workspace_ = nullptr;
    QAction* export_ = nullptr;
    QAction* import_ = nullptr;
    QAction* settings_action_ = nullptr;
    QAction* quit_ = nullptr;
    QAction* help_action_ = nullptr;
    QAction* about_ = nullptr;
};

}  // namespace kto::ui
