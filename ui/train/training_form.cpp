#include "ui/train/training_form.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QSettings>
#include <QSpinBox>
#include <QVBoxLayout>
#include <algorithm>
#include <cstring>
#include <limits>

#include "ui/generate/model_catalog.h"
#include "ui/workers/generation_worker.h"
#include "ui/workers/training_worker.h"

namespace kto::ui {

namespace {
const char* kSavedPrefix = "saved:";
const char* kSettingsGroup = "train/presets";

QSpinBox* spin(QWidget* parent, const char* name, int lo, int hi, const QString& tip) {
    auto* s = new QSpinBox(parent);
    s->setObjectName(name);
    s->setRange(lo, hi);
    s->setToolTip(tip);
    return s;
}

QDoubleSpinBox* dspin(QWidget* parent, const char* name, double lo, double hi, double step, int decimals,
                      const QString& tip) {
    auto* s = new QDoubleSpinBox(parent);
    s->setObjectName(name);
    s->setRange(lo, hi);
    s->setSingleStep(step);
    s->setDecimals(decimals);
    s->setToolTip(tip);
    return s;
}

QComboBox* combo(QWidget* parent, const char* name, const QStringList& items) {
    auto* c = new QComboBox(parent);
    c->setObjectName(name);
    c->addItems(items);
    return c;
}

QString setting_key(const QString& name) {
    QString key = name;
    return key.replace('/', '-').replace('\\', '-');
}
}  // namespace

TrainingForm::TrainingForm(ModelCatalog* catalog, QWidget* parent) : QWidget(parent), catalog_(catalog) {
    setObjectName("trainingForm");
    preset_ = combo(this, "trainPreset", {});
    preset_->setToolTip(tr("Starting points sized for the hardware; your saved settings follow"));
    preset_name_ = new QLineEdit(this);
    preset_name_->setObjectName("trainPresetName");
    preset_name_->setPlaceholderText(tr("Name to save these settings as"));
    save_preset_ = new QPushButton(tr("Save"), this);
    save_preset_->setObjectName("saveTrainPreset");
    save_preset_->setToolTip(tr("Save the form (base model and options) under this name"));
    connect(preset_name_, &QLineEdit::textChanged, this, [this](const QString& t) {
        save_preset_->setEnabled(!t.trimmed().isEmpty());
    });
    save_preset_->setEnabled(false);
    connect(save_preset_, &QPushButton::clicked, this, [this] { savePreset(preset_name_->text()); });
    connect(preset_, &QComboBox::activated, this, [this](int i) { applyPreset(preset_->itemData(i).toString()); });
    auto* save_row = new QHBoxLayout;
    save_row->addWidget(preset_name_, 1);
    save_row->addWidget(save_preset_);

    model_ = combo(this, "trainBaseModel", {});
    model_->setToolTip(tr("The model to fine-tune (a diffusers folder; add folders in the Generate area)"));
    model_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    model_->setMinimumContentsLength(16);
    connect(catalog_, &QAbstractItemModel::modelReset, this, &TrainingForm::refreshModels);

    objective_ = combo(this, "trainObjective", {"kto", "sft", "dpo"});
    objective_->setToolTip(tr("kto: liked and disliked images on their own (Diffusion-KTO); sft: liked only; "
                              "dpo: liked/disliked pairs of the same prompt"));
    beta_ = dspin(this, "trainBeta", 0, 1e6, 100, 0, tr("Implicit-reward scale; 0 = the objective's default "
                                                         "(1000 KTO, 5000 DPO)"));
    beta_->setSpecialValueText(tr("default"));
    steps_ = spin(this, "trainSteps", 1, 1000000, tr("Optimizer steps"));
    batch_ = spin(this, "trainBatch", 1, 1024, tr("Samples per micro-batch (DPO: pairs)"));
    accumulation_ = spin(this, "trainAccumulation", 1, 1024, tr("Micro-batches per optimizer step"));
    lr_ = new QLineEdit(this);
    lr_->setObjectName("trainLearningRate");
    lr_->setToolTip(tr("Learning rate, e.g. 1e-7 for SD 1.5 full fine-tuning, 2e-4 for the demo model"));
    warmup_ = spin(this, "trainWarmup", 0, 1000000, tr("Linear warmup steps"));
    schedule_ = combo(this, "trainSchedule", {"constant", "cosine"});
    seed_ = spin(this, "trainSeed", 0, std::numeric_limits<int>::max(), tr("Seed of the training random streams"));
    caption_dropout_ = dspin(this, "trainCaptionDropout", 0, 1, 0.05, 2, tr("Share of captions replaced by \"\""));
    positive_ratio_ = dspin(this, "trainPositiveRatio", 0, 1, 0.05, 2, tr("Probability of drawing a liked image"));
    flip_ = dspin(this, "trainFlipProbability", 0, 1, 0.05, 2,
                  tr("Probability of mirroring an image left to right when it is drawn (0.5 in the reference run; "
                     "0 where the captions name left and right, as the demo model's do)"));
    lora_ = new QCheckBox(tr("Train LoRA adapters (not the full UNet)"), this);
    lora_->setObjectName("trainLora");
    lora_rank_ = spin(this, "trainLoraRank", 1, 256, tr("LoRA rank (alpha = rank)"));
    connect(lora_, &QCheckBox::toggled, lora_rank_, &QWidget::setEnabled);
    device_ = combo(this, "trainDevice", {"cpu", "cuda"});
    workers_ = spin(this, "trainWorkers", 1, 64,
                    tr("Processes of a data-parallel run on this machine (torch.distributed: NCCL on GPUs, "
                       "Gloo on the CPU): one per GPU on a multi-GPU machine. Pause is not offered for "
                       "multi-process runs."));
    workers_->setValue(std::max(1, cudaDeviceCount()));
    precision_ = combo(this, "trainPrecision", {"no", "fp16", "bf16"});
    precision_->setToolTip(tr("Mixed precision: fp16 or bf16 on CUDA; bf16 on the CPU (several times faster where "
                              "the CPU has AMX or AVX512-BF16, slower elsewhere)"));
    checkpointing_ = new QCheckBox(tr("Gradient checkpointing (less memory, slower)"), this);
    checkpointing_->setObjectName("trainGradientCheckpointing");
    checkpoint_every_ = spin(this, "trainCheckpointEvery", 0, 1000000, tr("Steps between checkpoints; 0 = only at the end"));
    checkpoint_every_->setSpecialValueText(tr("at the end"));
    keep_last_ = spin(this, "trainKeepLast", 1, 100, tr("Checkpoints kept (the final one always is)"));
    preview_every_ = spin(this, "trainPreviewEvery", 0, 1000000, tr("Steps between previews; 0 = no previews"));
    preview_every_->setSpecialValueText(tr("off"));
    preview_steps_ = spin(this, "trainPreviewSteps", 1, 200, tr("Denoising steps of a preview image"));
    probe_prompts_ = new QPlainTextEdit(this);
    probe_prompts_->setObjectName("trainProbePrompts");
    probe_prompts_->setPlaceholderText(tr("One prompt a line"));
    probe_prompts_->setTabChangesFocus(true);
    probe_prompts_->setMaximumHeight(70);
    probe_seeds_ = new QLineEdit(this);
    probe_seeds_->setObjectName("trainProbeSeeds");
    probe_seeds_->setPlaceholderText(tr("e.g. 0, 1"));

    auto* setup = new QFormLayout;
    setup->addRow(tr("Pre&set"), preset_);
    setup->addRow(QString(), save_row);
    setup->addRow(tr("Base &model"), model_);

    auto* objective_box = new QGroupBox(tr("Objective"), this);
    auto* of = new QFormLayout(objective_box);
    of->addRow(tr("&Objective"), objective_);
    of->addRow(tr("&Beta"), beta_);
    of->addRow(tr("Caption dropout"), caption_dropout_);
    of->addRow(tr("Liked share"), positive_ratio_);
    of->addRow(tr("Mirror share"), flip_);

    auto* optim_box = new QGroupBox(tr("Optimisation"), this);
    auto* pf = new QFormLayout(optim_box);
    pf->addRow(tr("S&teps"), steps_);
    auto* batch_row = new QHBoxLayout;
    batch_row->addWidget(batch_);
    batch_row->addWidget(new QLabel(QStringLiteral("×"), this));
    batch_row->addWidget(accumulation_);
    pf->addRow(tr("Batch × accumulation"), batch_row);
    pf->addRow(tr("&Learning rate"), lr_);
    auto* warmup_row = new QHBoxLayout;
    warmup_row->addWidget(warmup_);
    warmup_row->addWidget(schedule_);
    pf->addRow(tr("Warmup, schedule"), warmup_row);
    pf->addRow(tr("Seed"), seed_);
    auto* lora_row = new QHBoxLayout;
    lora_row->addWidget(lora_, 1);
    lora_row->addWidget(new QLabel(tr("rank"), this));
    lora_row->addWidget(lora_rank_);
    pf->addRow(lora_row);

    auto* device_box = new QGroupBox(tr("Device"), this);
    auto* df = new QFormLayout(device_box);
    auto* device_row = new QHBoxLayout;
    device_row->addWidget(device_);
    device_row->addWidget(new QLabel(tr("mixed precision"), this));
    device_row->addWidget(precision_);
    auto* device_label = new QLabel(tr("&Device"), this);  // a layout as the field: set the buddy by hand
    device_label->setBuddy(device_);
    df->addRow(device_label, device_row);
    df->addRow(tr("&Processes"), workers_);
    df->addRow(checkpointing_);

    auto* out_box = new QGroupBox(tr("Checkpoints and previews"), this);
    auto* cf = new QFormLayout(out_box);
    auto* ckpt_row = new QHBoxLayout;
    ckpt_row->addWidget(checkpoint_every_);
    ckpt_row->addWidget(new QLabel(tr("keep"), this));
    ckpt_row->addWidget(keep_last_);
    cf->addRow(tr("Checkpoint every"), ckpt_row);
    auto* preview_row = new QHBoxLayout;
    preview_row->addWidget(preview_every_);
    preview_row->addWidget(new QLabel(tr("denoising steps"), this));
    preview_row->addWidget(preview_steps_);
    cf->addRow(tr("Preview every"), preview_row);
    cf->addRow(tr("Probe &prompts"), probe_prompts_);
    cf->addRow(tr("Probe seeds"), probe_seeds_);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addLayout(setup);
    layout->addWidget(objective_box);
    layout->addWidget(optim_box);
    layout->addWidget(device_box);
    layout->addWidget(out_box);
    layout->addStretch();

    refreshModels();
    refreshPresets();
    applyPreset("demo-cpu");
}

void TrainingForm::refreshModels() {
    const QString keep = modelPath();
    model_->clear();
    for (int i = 0; i < catalog_->rowCount(); ++i) {
        const ModelEntry* e = catalog_->entry(i);
        if (e->kind == ModelEntry::Kind::Checkpoint) continue;  // a run needs a whole diffusers folder
        model_->addItem(catalog_->index(i).data().toString(), e->path);
        model_->setItemData(model_->count() - 1, e->name, Qt::UserRole + 1);
    }
    if (!selectModel(keep) && preset_id_ == "demo-cpu") {
        for (int i = 0; i < catalog_->rowCount(); ++i)
            if (catalog_->entry(i)->kind == ModelEntry::Kind::Demo) selectModel(catalog_->entry(i)->path);
    }
}

bool TrainingForm::selectModel(const QString& path) {
    const int row = path.isEmpty() ? -1 : model_->findData(path);
    if (row >= 0) model_->setCurrentIndex(row);
    return row >= 0;
}

QString TrainingForm::modelPath() const { return model_->currentData().toString(); }

QString TrainingForm::modelName() const { return model_->currentData(Qt::UserRole + 1).toString(); }

QString TrainingForm::presetId() const { return preset_id_; }

QStringList TrainingForm::savedPresetNames() {
    QSettings s;
    s.beginGroup(kSettingsGroup);
    QStringList names = s.childKeys();
    names.sort(Qt::CaseInsensitive);
    return names;
}

void TrainingForm::refreshPresets() {
    const QSignalBlocker block(preset_);
    preset_->clear();
    for (const TrainingPreset& p : builtinTrainingPresets()) {
        preset_->addItem(p.title, p.id);
        preset_->setItemData(preset_->count() - 1, p.description, Qt::ToolTipRole);
    }
    for (const QString& name : savedPresetNames()) preset_->addItem(tr("%1 (saved)").arg(name), kSavedPrefix + name);
    const int row = preset_->findData(preset_id_);
    preset_->setCurrentIndex(row);
}

bool TrainingForm::applyPreset(const QString& id) {
    QJsonObject options;
    QString model;
    if (id.startsWith(kSavedPrefix)) {
        QSettings s;
        s.beginGroup(kSettingsGroup);
        const QJsonObject saved = QJsonDocument::fromJson(s.value(id.mid(int(strlen(kSavedPrefix)))).toByteArray()).object();
        if (saved.isEmpty()) return false;
        options = saved.value("options").toObject();
        model = saved.value("model").toString();
    } else {
        bool found = false;
        for (const TrainingPreset& p : builtinTrainingPresets()) {
            if (p.id != id) continue;
            options = QJsonDocument::fromJson(p.options_json).object();
            found = true;
        }
        if (!found) return false;
        if (id == "demo-cpu")
            for (int i = 0; i < catalog_->rowCount(); ++i)
                if (catalog_->entry(i)->kind == ModelEntry::Kind::Demo) model = catalog_->entry(i)->path;
    }
    preset_id_ = id;
    setOptions(options);
    if (!model.isEmpty()) selectModel(model);
    preset_->setCurrentIndex(preset_->findData(id));
    emit presetApplied(id);
    return true;
}

void TrainingForm::savePreset(const QString& raw_name) {
    const QString name = setting_key(raw_name.trimmed());
    if (name.isEmpty()) return;
    QSettings s;
    s.beginGroup(kSettingsGroup);
    const QJsonObject saved{{"model", modelPath()}, {"options", options()}};
    s.setValue(name, QJsonDocument(saved).toJson(QJsonDocument::Compact));
    s.endGroup();
    s.sync();
    preset_id_ = kSavedPrefix + name;
    refreshPresets();
    preset_name_->clear();
}

void TrainingForm::setOptions(const QJsonObject& o) {
    loaded_ = o;
    objective_->setCurrentText(o.value("objective").toString("kto"));
    beta_->setValue(o.contains("beta") ? o.value("beta").toDouble() : 0.0);
    steps_->setValue(int(o.value("steps").toInteger(1000)));
    batch_->setValue(int(o.value("batch_size").toInteger(2)));
    accumulation_->setValue(int(o.value("grad_accumulation").toInteger(1)));
    lr_->setText(QString::number(o.value("learning_rate").toDouble(1e-7), 'g', 6));
    warmup_->setValue(int(o.value("warmup_steps").toInteger(200)));
    schedule_->setCurrentText(o.value("lr_schedule").toString("constant"));
    seed_->setValue(int(o.value("seed").toInteger(0)));
    caption_dropout_->setValue(o.value("caption_dropout").toDouble(0.2));
    positive_ratio_->setValue(o.value("positive_ratio").toDouble(0.8));
    flip_->setValue(o.value("flip_probability").toDouble(0.5));
    const QJsonObject lora = o.value("lora").toObject();
    lora_->setChecked(lora.value("enabled").toBool(false));
    lora_rank_->setValue(int(lora.value("rank").toInteger(4)));
    lora_rank_->setEnabled(lora_->isChecked());
    device_->setCurrentText(o.value("device").toString("cpu"));
    precision_->setCurrentText(o.value("mixed_precision").toString("no"));
    checkpointing_->setChecked(o.value("gradient_checkpointing").toBool(false));
    checkpoint_every_->setValue(int(std::max<qint64>(0, o.value("checkpoint_every").toInteger(500))));
    keep_last_->setValue(int(o.value("keep_last").toInteger(3)));
    preview_every_->setValue(int(std::max<qint64>(0, o.value("preview_every").toInteger(0))));
    preview_steps_->setValue(int(o.value("preview_steps").toInteger(20)));
    QStringList prompts;
    for (const QJsonValue& v : o.value("probe_prompts").toArray()) prompts << v.toString();
    probe_prompts_->setPlainText(prompts.join('\n'));
    QStringList seeds;
    for (const QJsonValue& v : o.value("probe_seeds").toArray()) seeds << QString::number(v.toInteger());
    probe_seeds_->setText(seeds.join(", "));
}

QList<qint64> TrainingForm::seeds(bool* ok) const {
    QList<qint64> out;
    *ok = true;
    for (const QString& part : probe_seeds_->text().split(QRegularExpression("[,\\s]+"), Qt::SkipEmptyParts)) {
        bool good = false;
        const qint64 s = part.toLongLong(&good);
        if (!good || s < 0) *ok = false;
        else out << s;
    }
    return out;
}

QJsonObject TrainingForm::options() const {
    QJsonObject o = loaded_;
    o["objective"] = objective_->currentText();
    if (beta_->value() > 0) o["beta"] = beta_->value();
    else o.remove("beta");
    o["steps"] = steps_->value();
    o["batch_size"] = batch_->value();
    o["grad_accumulation"] = accumulation_->value();
    o["learning_rate"] = lr_->text().trimmed().toDouble();
    o["warmup_steps"] = warmup_->value();
    o["lr_schedule"] = schedule_->currentText();
    o["seed"] = seed_->value();
    o["caption_dropout"] = caption_dropout_->value();
    o["positive_ratio"] = positive_ratio_->value();
    o["flip_probability"] = flip_->value();
    QJsonObject lora = o.value("lora").toObject();
    lora["enabled"] = lora_->isChecked();
    lora["rank"] = lora_rank_->value();
    lora["alpha"] = double(lora_rank_->value());
    o["lora"] = lora;
    o["device"] = device_->currentText();
    o["mixed_precision"] = precision_->currentText();
    o["gradient_checkpointing"] = checkpointing_->isChecked();
    o["checkpoint_every"] = checkpoint_every_->value();
    o["keep_last"] = keep_last_->value();
    o["preview_every"] = preview_every_->value();
    o["preview_steps"] = preview_steps_->value();
    QJsonArray prompts;
    for (const QString& p : probe_prompts_->toPlainText().split('\n'))
        if (!p.trimmed().isEmpty()) prompts.append(p.trimmed());
    o["probe_prompts"] = prompts;
    bool ok = false;
    QJsonArray seed_list;
    for (qint64 s : seeds(&ok)) seed_list.append(s);
    o["probe_seeds"] = seed_list;
    return o;
}

int TrainingForm::workers() const { return workers_->value(); }

QString TrainingForm::problem() const {
    if (modelPath().isEmpty()) return tr("Choose a base model (add a model folder in the Generate area).");
    bool lr_ok = false;
    const double lr = lr_->text().trimmed().toDouble(&lr_ok);
    if (!lr_ok || !(lr > 0)) return tr("Learning rate: enter a positive number such as 5e-5.");
    bool seeds_ok = false;
    seeds(&seeds_ok);
    if (!seeds_ok) return tr("Probe seeds: enter whole numbers separated by commas, e.g. 0, 1.");
    const QJsonObject o = options();
    const int gpus = cudaDeviceCount();
    if (workers() > 1 && device_->currentText() == "cuda" && workers() > gpus)
        return tr("%1 processes on CUDA need %1 GPUs; this machine has %2.").arg(workers()).arg(gpus);
    if (preview_every_->value() > 0 && o.value("probe_prompts").toArray().isEmpty())
        return tr("Previews need at least one probe prompt (or set \"Preview every\" to off).");
    return checkTrainingOptions(QJsonDocument(o).toJson(QJsonDocument::Compact));
}

}  // namespace kto::ui
