#pragma once
// The Generate area: prompt, negative prompt, seed (fixed or random, always shown), steps, CFG,
// sampler, size, images per prompt and the model picker; progress per image with a live preview;
// cancel. The work itself runs on the GenerationWorker's thread.
#include <QWidget>

#include "ui/app/app_settings.h"
#include "ui/store/records.h"
#include "ui/workers/generation_request.h"

class QAction;
class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;

namespace kto::ui {

class ImageView;
class ModelCatalog;

class GeneratePanel : public QWidget {
    Q_OBJECT
public:
    GeneratePanel(ModelCatalog* catalog, QWidget* parent = nullptr);

    QAction* generateAction() const { return generate_; }
    QAction* cancelAction() const { return cancel_; }
    QAction* addModelAction() const { return add_model_; }

    QPlainTextEdit* promptEdit() const { return prompt_; }
    QLineEdit* negativeEdit() const { return negative_; }
    QSpinBox* seedBox() const { return seed_; }
    QCheckBox* randomSeedBox() const { return random_seed_; }
    QSpinBox* stepsBox() const { return steps_; }
    QDoubleSpinBox* cfgBox() const { return cfg_; }
    QComboBox* samplerBox() const { return sampler_; }
    QSpinBox* widthBox() const { return width_; }
    QSpinBox* heightBox() const { return height_; }
    QSpinBox* countBox() const { return count_; }
    QComboBox* modelBox() const { return model_; }
    QProgressBar* progressBar() const { return progress_; }
    ImageView* preview() const { return preview_; }
    QListWidget* results() const { return results_; }
    bool busy() const { return busy_; }
    QString device() const { return device_; }

    void applyDefaults(const GenerationDefaults& d);
    GenerationDefaults currentAsDefaults() const;
    void setDevice(const QString& device) { device_ = device; }
    // Selects the model with this folder (and UNet checkpoint) if the catalog has it.
    bool selectModel(const QString& path, const QString& unet_path = {});
    // "Regenerate" from the gallery: the form takes the image's settings, one image, fixed seed.
    void fillFrom(const ImageRecord& record);
    // The request the form describes now (drawing a new seed first when "random" is on).
    GenerationRequest makeRequest();

public slots:
    void generate();
    void onModelStatus(const QString& text);
    void onProgress(quint64 id, int image, int count, int step, int steps);
    void onPreview(quint64 id, int image, const QImage& preview);
    void onImageReady(const kto::ui::GenerationRequest& request, int image, qint64 seed, const QImage& result);
    void onFinished(quint64 id, bool cancelled, const QString& error);

signals:
    void generateRequested(const kto::ui::GenerationRequest& request);
    void cancelRequested();
    void addModelFolderRequested(const QString& folder);

private:
    void setBusy(bool busy);

    ModelCatalog* catalog_;
    QPlainTextEdit* prompt_;
    QLineEdit* negative_;
    QSpinBox* seed_;
    QCheckBox* random_seed_;
    QSpinBox* steps_;
    QDoubleSpinBox* cfg_;
    QComboBox* sampler_;
    QSpinBox* width_;
    QSpinBox* height_;
    QSpinBox* count_;
    QComboBox* model_;
    QPushButton* generate_button_;
    QPushButton* cancel_button_;
    QProgressBar* progress_;
    QLabel* status_;
    QLabel* seeds_used_;
    ImageView* preview_;
    QListWidget* results_;
    QAction* generate_;
    QAction* cancel_;
    QAction* add_model_;
    QString device_ = "cpu";
    bool busy_ = false;
    quint64 next_id_ = 1;
    quint64 running_id_ = 0;
};

// The sampler names the engine's make_scheduler() accepts, in the order the picker shows them.
QStringList samplerNames();

}  // namespace kto::ui
