#include "ui/generate/generate_panel.h"

#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QRandomGenerator>
#include <QSpinBox>
#include <QSplitter>
#include <QToolButton>
#include <QVBoxLayout>

#include "ui/common/dialogs.h"
#include "ui/common/image_view.h"
#include "ui/generate/model_catalog.h"

namespace kto::ui {

QStringList samplerNames() {
    return {"euler", "euler_ancestral", "euler_karras", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "pndm", "ddpm"};
}

GeneratePanel::GeneratePanel(ModelCatalog* catalog, QWidget* parent) : QWidget(parent), catalog_(catalog) {
    setObjectName("generatePanel");
    prompt_ = new QPlainTextEdit(this);
    prompt_->setObjectName("prompt");
    prompt_->setPlaceholderText(tr("Describe the image, e.g. \"a large red circle on a blue background\""));
    prompt_->setTabChangesFocus(true);
    prompt_->setMaximumHeight(90);
    negative_ = new QLineEdit(this);
    negative_->setObjectName("negativePrompt");
    negative_->setPlaceholderText(tr("What to steer away from (optional)"));

    seed_ = new QSpinBox(this);
    seed_->setObjectName("seed");
    seed_->setRange(0, std::numeric_limits<int>::max());
    random_seed_ = new QCheckBox(tr("Random"), this);
    random_seed_->setObjectName("randomSeed");
    random_seed_->setToolTip(tr("Draw a new seed for every press of Generate; the seed used stays shown"));
    random_seed_->setChecked(true);
    seeds_used_ = new QLabel(this);
    seeds_used_->setObjectName("seedsUsed");
    seeds_used_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* seed_row = new QHBoxLayout;
    seed_row->addWidget(seed_, 1);
    seed_row->addWidget(random_seed_);

    steps_ = new QSpinBox(this);
    steps_->setObjectName("steps");
    steps_->setRange(1, 200);
    cfg_ = new QDoubleSpinBox(this);
    cfg_->setObjectName("cfg");
    cfg_->setRange(1.0, 30.0);
    cfg_->setSingleStep(0.5);
    cfg_->setDecimals(1);
    sampler_ = new QComboBox(this);
    sampler_->setObjectName("sampler");
    sampler_->addItems(samplerNames());
    width_ = new QSpinBox(this);
    width_->setObjectName("width");
    height_ = new QSpinBox(this);
    height_->setObjectName("height");
    for (QSpinBox* s : {width_, height_}) {
        s->setRange(8, 2048);
        s->setSingleStep(8);
        s->setSuffix(" px");
    }
    auto* size_row = new QHBoxLayout;
    size_row->addWidget(width_);
    size_row->addWidget(new QLabel(QStringLiteral("×"), this));
    size_row->addWidget(height_);
    count_ = new QSpinBox(this);
    count_->setObjectName("imagesPerPrompt");
    count_->setRange(1, 64);

    model_ = new QComboBox(this);
    model_->setObjectName("model");
    model_->setModel(catalog_);
    model_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    model_->setMinimumContentsLength(18);
    auto* add_model_button = new QToolButton(this);
    add_model_ = new QAction(tr("Add model folder…"), this);
    add_model_->setObjectName("addModelFolder");
    add_model_->setToolTip(tr("Add a diffusers model folder (one holding model_index.json)"));
    add_model_button->setDefaultAction(add_model_);
    connect(add_model_, &QAction::triggered, this, [this] {
        const QString dir = FileDialog::getExistingDirectory(this, tr("Add a model folder"));
        if (dir.isEmpty()) return;
        if (!ModelCatalog::isModelFolder(dir)) {
            MessageBox::critical(this, tr("Not a model folder"),
                                 tr("%1 holds no model_index.json. Pick the folder of a diffusers-layout model "
                                    "(it contains model_index.json, unet/, vae/, text_encoder/, tokenizer/ and "
                                    "scheduler/).")
                                     .arg(dir));
            return;
        }
        emit addModelFolderRequested(dir);
    });
    auto* model_row = new QHBoxLayout;
    model_row->addWidget(model_, 1);
    model_row->addWidget(add_model_button);

    auto* form = new QFormLayout;
    form->addRow(tr("&Prompt"), prompt_);
    form->addRow(tr("&Negative prompt"), negative_);
    form->addRow(tr("Model"), model_row);
    form->addRow(tr("Seed"), seed_row);
    form->addRow(QString(), seeds_used_);
    form->addRow(tr("S&teps"), steps_);
    form->addRow(tr("&CFG scale"), cfg_);
    form->addRow(tr("S&ampler"), sampler_);
    form->addRow(tr("Size"), size_row);
    form->addRow(tr("&Images per prompt"), count_);

    generate_ = new QAction(tr("Generate"), this);
    generate_->setObjectName("generate");
    generate_->setShortcuts({QKeySequence(Qt::CTRL | Qt::Key_Return), QKeySequence(Qt::CTRL | Qt::Key_Enter)});
    generate_->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    cancel_ = new QAction(tr("Cancel generation"), this);
    cancel_->setObjectName("cancelGeneration");
    cancel_->setShortcut(Qt::Key_Escape);
    cancel_->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    cancel_->setEnabled(false);
    addAction(generate_);
    addAction(cancel_);
    connect(generate_, &QAction::triggered, this, &GeneratePanel::generate);
    connect(cancel_, &QAction::triggered, this, [this] {
        status_->setText(tr("Cancelling…"));
        emit cancelRequested();
    });
    generate_button_ = new QPushButton(tr("Generate  [Ctrl+Enter]"), this);
    generate_button_->setObjectName("generateButton");
    generate_button_->setDefault(true);
    cancel_button_ = new QPushButton(tr("Cancel  [Esc]"), this);
    cancel_button_->setObjectName("cancelButton");
    cancel_button_->setEnabled(false);
    connect(generate_button_, &QPushButton::clicked, generate_, &QAction::trigger);
    connect(cancel_button_, &QPushButton::clicked, cancel_, &QAction::trigger);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(generate_button_, 1);
    buttons->addWidget(cancel_button_);

    progress_ = new QProgressBar(this);
    progress_->setObjectName("generateProgress");
    progress_->setRange(0, 1);
    progress_->setValue(0);
    status_ = new QLabel(tr("Ready"), this);
    status_->setObjectName("generateStatus");
    status_->setWordWrap(true);

    auto* left = new QWidget(this);
    auto* left_layout = new QVBoxLayout(left);
    left_layout->addLayout(form);
    left_layout->addLayout(buttons);
    left_layout->addWidget(progress_);
    left_layout->addWidget(status_);
    left_layout->addStretch();

    preview_ = new ImageView(this);
    preview_->setObjectName("generatePreview");
    preview_->setPlaceholder(tr("The live preview of the denoising appears here."));
    results_ = new QListWidget(this);
    results_->setObjectName("generateResults");
    results_->setViewMode(QListView::IconMode);
    results_->setFlow(QListView::LeftToRight);
    results_->setWrapping(false);
    results_->setIconSize(QSize(96, 96));
    results_->setFixedHeight(128);
    results_->setMovement(QListView::Static);
    connect(results_, &QListWidget::currentItemChanged, this, [this](QListWidgetItem* item) {
        if (item && !busy_) preview_->setImage(item->data(Qt::UserRole).value<QImage>());
    });
    auto* right = new QWidget(this);
    auto* right_layout = new QVBoxLayout(right);
    right_layout->addWidget(preview_, 1);
    right_layout->addWidget(results_);

    auto* split = new QSplitter(this);
    split->setObjectName("generateSplitter");
    split->addWidget(left);
    split->addWidget(right);
    split->setStretchFactor(1, 1);
    auto* layout = new QHBoxLayout(this);
    layout->addWidget(split);

    applyDefaults(GenerationDefaults{});
}

void GeneratePanel::applyDefaults(const GenerationDefaults& d) {
    steps_->setValue(d.steps);
    cfg_->setValue(d.cfg);
    sampler_->setCurrentIndex(qMax(0, sampler_->findText(d.sampler)));
    width_->setValue(d.width);
    height_->setValue(d.height);
    count_->setValue(d.images_per_prompt);
    negative_->setText(d.negative_prompt);
}

GenerationDefaults GeneratePanel::currentAsDefaults() const {
    GenerationDefaults d;
    d.steps = steps_->value();
    d.cfg = cfg_->value();
    d.sampler = sampler_->currentText();
    d.width = width_->value();
    d.height = height_->value();
    d.images_per_prompt = count_->value();
    d.negative_prompt = negative_->text();
    return d;
}

bool GeneratePanel::selectModel(const QString& path, const QString& unet_path) {
    const int row = catalog_->rowOfPath(path, unet_path);
    if (row < 0) return false;
    model_->setCurrentIndex(row);
    return true;
}

void GeneratePanel::fillFrom(const ImageRecord& r) {
    prompt_->setPlainText(r.prompt);
    negative_->setText(r.negative_prompt);
    random_seed_->setChecked(false);
    seed_->setValue(static_cast<int>(qBound<qint64>(0, r.seed, qint64(std::numeric_limits<int>::max()))));
    if (r.steps > 0) steps_->setValue(r.steps);
    if (r.cfg > 0) cfg_->setValue(r.cfg);
    const int s = sampler_->findText(r.sampler);
    if (s >= 0) sampler_->setCurrentIndex(s);
    if (r.width > 0) width_->setValue(r.width);
    if (r.height > 0) height_->setValue(r.height);
    count_->setValue(1);
    // The checkpoint (if any) names the model most precisely; else the base model's name.
    int row = -1;
    for (int i = 0; i < catalog_->rowCount() && row < 0; ++i) {
        const ModelEntry* e = catalog_->entry(i);
        if (!r.checkpoint.isEmpty() && (e->unet_path == r.checkpoint || e->path == r.checkpoint)) row = i;
    }
    if (row < 0 && r.checkpoint.isEmpty()) row = catalog_->rowOfName(r.model);
    if (row >= 0) {
        model_->setCurrentIndex(row);
        status_->setText(tr("Settings of image %1 loaded: press Generate to make it again.").arg(r.image_id));
    } else {
        status_->setText(tr("Settings of image %1 loaded, but its model \"%2\" is not in the list: add its "
                            "folder with \"Add model folder…\".")
                             .arg(r.image_id)
                             .arg(r.checkpoint.isEmpty() ? r.model : r.checkpoint));
    }
    prompt_->setFocus();
}

GenerationRequest GeneratePanel::makeRequest() {
    if (random_seed_->isChecked())
        seed_->setValue(static_cast<int>(QRandomGenerator::global()->bounded(std::numeric_limits<int>::max())));
    GenerationRequest r;
    r.id = next_id_++;
    if (const ModelEntry* e = catalog_->entry(model_->currentIndex())) {
        r.model_path = e->path;
        r.unet_path = e->unet_path;
        r.model_name = e->name;
    }
    r.device = device_;
    r.prompt = prompt_->toPlainText().trimmed();
    r.negative_prompt = negative_->text().trimmed();
    r.seed = seed_->value();
    r.steps = steps_->value();
    r.cfg = cfg_->value();
    r.sampler = sampler_->currentText();
    r.width = width_->value();
    r.height = height_->value();
    r.count = count_->value();
    return r;
}

void GeneratePanel::generate() {
    if (busy_) return;
    if (prompt_->toPlainText().trimmed().isEmpty()) {
        status_->setText(tr("Write a prompt first."));
        prompt_->setFocus();
        return;
    }
    if (model_->currentIndex() < 0) {
        status_->setText(tr("No model to generate with: add a model folder (the button beside Model)."));
        return;
    }
    if (width_->value() % 8 || height_->value() % 8) {
        status_->setText(tr("Width and height must be multiples of 8."));
        return;
    }
    GenerationRequest r = makeRequest();
    running_id_ = r.id;
    seeds_used_->setText(r.count == 1 ? tr("seed %1").arg(r.seed)
                                      : tr("seeds %1 – %2").arg(r.seed).arg(r.seed + r.count - 1));
    progress_->setRange(0, r.count * r.steps);
    progress_->setValue(0);
    status_->setText(tr("Starting…"));
    setBusy(true);
    emit generateRequested(r);
}

void GeneratePanel::setBusy(bool busy) {
    busy_ = busy;
    generate_->setEnabled(!busy);
    generate_button_->setEnabled(!busy);
    cancel_->setEnabled(busy);
    cancel_button_->setEnabled(busy);
}

void GeneratePanel::onModelStatus(const QString& text) { status_->setText(text); }

void GeneratePanel::onProgress(quint64 id, int image, int count, int step, int steps) {
    if (id != running_id_) return;
    progress_->setRange(0, count * steps);
    progress_->setValue(image * steps + step);
    status_->setText(tr("Image %1 of %2 · step %3 of %4").arg(image + 1).arg(count).arg(step).arg(steps));
}

void GeneratePanel::onPreview(quint64 id, int, const QImage& preview) {
    if (id == running_id_) preview_->setImage(preview);
}

void GeneratePanel::onImageReady(const GenerationRequest& request, int image, qint64 seed, const QImage& result) {
    if (request.id != running_id_) return;
    preview_->setImage(result);
    auto* item = new QListWidgetItem(QIcon(QPixmap::fromImage(result)), tr("seed %1").arg(seed));
    item->setData(Qt::UserRole, result);
    item->setToolTip(tr("%1\nimage %2 of %3, seed %4").arg(request.prompt).arg(image + 1).arg(request.count).arg(seed));
    results_->insertItem(0, item);
    while (results_->count() > 64) delete results_->takeItem(results_->count() - 1);
}

void GeneratePanel::onFinished(quint64 id, bool cancelled, const QString& error) {
    if (id != running_id_) return;
    setBusy(false);
    running_id_ = 0;
    if (!error.isEmpty()) {
        status_->setText(tr("Generation failed: %1").arg(error));
        MessageBox::critical(this, tr("Generation failed"), error);
    } else if (cancelled) {
        status_->setText(tr("Cancelled. The images finished before cancelling were kept."));
    } else {
        progress_->setValue(progress_->maximum());
        status_->setText(tr("Done: the images are in the Gallery and waiting in Rate."));
    }
}

}  // namespace kto::ui
