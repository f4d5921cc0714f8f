#pragma once
// The training form: base model, preset, and the trainer's options (kto::TrainOptions, edited as
// its JSON so options the form does not show survive a round trip). Presets: the built-in
// hardware-sized ones, and the user's own, saved by name in QSettings ("train/presets/<name>").
#include <QJsonObject>
#include <QWidget>

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLineEdit;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;

namespace kto::ui {

class ModelCatalog;

class TrainingForm : public QWidget {
    Q_OBJECT
public:
    explicit TrainingForm(ModelCatalog* catalog, QWidget* parent = nullptr);

    // The options as kto::TrainOptions JSON: what was loaded, with the form's fields written over it.
    QJsonObject options() const;
    void setOptions(const QJsonObject& options);
    // Empty when the options can start a run, else what to fix (checkTrainingOptions + the form's own).
    QString problem() const;

    QString modelPath() const;   // the chosen base model folder
    QString modelName() const;
    bool selectModel(const QString& path);
    QString presetId() const;    // the built-in preset's id or "saved:<name>" the form started from

    // Applies a built-in preset ("demo-cpu", ...) or a saved one ("saved:<name>").
    bool applyPreset(const QString& id);
    // Saves the current options (and base model) under `name`; lists it in the preset picker.
    void savePreset(const QString& name);
    static QStringList savedPresetNames();

    QComboBox* presetBox() const { return preset_; }
    QComboBox* modelBox() const { return model_; }
    QLineEdit* presetNameEdit() const { return preset_name_; }
    QPushButton* savePresetButton() const { return save_preset_; }
    QComboBox* objectiveBox() const { return objective_; }
    QSpinBox* stepsBox() const { return steps_; }
    QSpinBox* batchBox() const { return batch_; }
    QLineEdit* learningRateEdit() const { return lr_; }
    QSpinBox* previewEveryBox() const { return preview_every_; }
    QSpinBox* previewStepsBox() const { return preview_steps_; }
    QSpinBox* checkpointEveryBox() const { return checkpoint_every_; }
    QPlainTextEdit* probePromptsEdit() const { return probe_prompts_; }
    QLineEdit* probeSeedsEdit() const { return probe_seeds_; }
    QCheckBox* loraBox() const { return lora_; }
    QComboBox* deviceBox() const { return device_; }
    // Processes of a data-parallel run on this machine (1: train in the app's own process).
    int workers() const;
    QSpinBox* workersBox() const { return workers_; }

public slots:
    void refreshModels();  // re-reads the catalog's base models (not checkpoints)

signals:
    void presetApplied(const QString& id);

private:
    void refreshPresets();
    QList<qint64> seeds(bool* ok) const;

    ModelCatalog* catalog_;
    QJsonObject loaded_;
    QString preset_id_;
    QComboBox* preset_;
    QLineEdit* preset_name_;
    QPushButton* save_preset_;
    QComboBox* model_;
    QComboBox* objective_;
    QDoubleSpinBox* beta_;
    QSpinBox* steps_;
    QSpinBox* batch_;
    QSpinBox* accumulation_;
    QLineEdit* lr_;
    QSpinBox* warmup_;
    QComboBox* schedule_;
    QSpinBox* seed_;
    QDoubleSpinBox* caption_dropout_;
    QDoubleSpinBox* positive_ratio_;
    QDoubleSpinBox* flip_;
    QCheckBox* lora_;
    QSpinBox* lora_rank_;
    QComboBox* device_;
    QSpinBox* workers_;
    QComboBox* precision_;
    QCheckBox* checkpointing_;
    QSpinBox* checkpoint_every_;
    QSpinBox* keep_last_;
    QSpinBox* preview_every_;
    QSpinBox* preview_steps_;
    QPlainTextEdit* probe_prompts_;
    QLineEdit* probe_seeds_;
};

}  // namespace kto::ui
