#include "ui/app/settings_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QThread>
#include <QVBoxLayout>

#include "core/common/runtime.h"
#include "ui/common/dialogs.h"
#include "ui/generate/generate_panel.h"

namespace kto::ui {

SettingsDialog::SettingsDialog(const AppSettings& s, bool cuda_available, QWidget* parent)
    : QDialog(parent), base_(s) {
    setObjectName("settingsDialog");
    setWindowTitle(tr("Settings"));

    workspace_ = new QLineEdit(s.workspace, this);
    workspace_->setObjectName("workspace");
    auto* browse = new QPushButton(tr("Browse…"), this);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString dir = FileDialog::getExistingDirectory(this, tr("Workspace folder"), workspace_->text());
        if (!dir.isEmpty()) workspace_->setText(dir);
    });
    auto* ws_row = new QHBoxLayout;
    ws_row->addWidget(workspace_, 1);
    ws_row->addWidget(browse);

    device_ = new QComboBox(this);
    device_->setObjectName("device");
    device_->addItem(tr("CPU"), "cpu");
    if (cuda_available) device_->addItem(tr("CUDA (GPU)"), "cuda");
    device_->setCurrentIndex(qMax(0, device_->findData(s.device)));
    if (!cuda_available) device_->setToolTip(tr("No CUDA device was found by libtorch"));
    threads_ = new QSpinBox(this);
    threads_->setObjectName("threads");
    threads_->setRange(0, 256);
    threads_->setSpecialValueText(tr("All cores (%1)").arg(QThread::idealThreadCount()));
    threads_->setValue(s.threads);

    precision_ = new QComboBox(this);
    precision_->setObjectName("cpuPrecision");
    precision_->addItem(cpu_has_bf16_matrix_units() ? tr("Automatic (bf16 on this CPU, small models fp32)") : tr("Automatic (fp32 on this CPU)"),
                        "auto");
    precision_->addItem(tr("fp32"), "fp32");
    // libtorch 1.13 on a CPU without AVX-512 sums a bf16 product's terms in bf16 (cpu_bf16_matmul_sums_in_fp32):
    // there bf16 is not only slower but visibly less exact, and the choice says so.
    const bool exact_bf16 = cpu_has_bf16_matrix_units() || cpu_bf16_matmul_sums_in_fp32();
    precision_->addItem(exact_bf16 ? tr("bf16") : tr("bf16 (slower and less exact on this CPU)"), "bf16");
    precision_->setCurrentIndex(qMax(0, precision_->findData(s.cpu_precision)));
    precision_->setToolTip(tr("What Generate, Compare and the demo training preset compute in on the CPU. bf16 is "
                              "several times faster where the CPU has AMX or AVX512-BF16 and slower elsewhere; "
                              "a seed's image in bf16 is close to, not the same as, the fp32 one. Automatic keeps a small "
                              "model (under 100 million UNet parameters, such as the demo model) in fp32, where it is "
                              "faster.") +
                           (exact_bf16 ? QString()
                                       : tr(" On this CPU libtorch sums bf16 products in bf16: a long product errs by "
                                            "several percent, so bf16 images and training drift from fp32's.")));

    auto* general = new QFormLayout;
    // A row holding a layout gets no buddy from QFormLayout, and its label would show the "&" itself.
    auto* ws_label = new QLabel(tr("&Workspace folder"), this);
    ws_label->setBuddy(workspace_);
    general->addRow(ws_label, ws_row);
    general->addRow(tr("&Device"), device_);
    general->addRow(tr("&Threads"), threads_);
    general->addRow(tr("&Precision on the CPU"), precision_);

    steps_ = new QSpinBox(this);
    steps_->setRange(1, 200);
    steps_->setValue(s.defaults.steps);
    cfg_ = new QDoubleSpinBox(this);
    cfg_->setRange(1.0, 30.0);
    cfg_->setDecimals(1);
    cfg_->setValue(s.defaults.cfg);
    sampler_ = new QComboBox(this);
    sampler_->addItems(samplerNames());
    sampler_->setCurrentIndex(qMax(0, sampler_->findText(s.defaults.sampler)));
    width_ = new QSpinBox(this);
    height_ = new QSpinBox(this);
    for (QSpinBox* b : {width_, height_}) {
        b->setRange(8, 2048);
        b->setSingleStep(8);
    }
    width_->setValue(s.defaults.width);
    height_->setValue(s.defaults.height);
    count_ = new QSpinBox(this);
    count_->setRange(1, 64);
    count_->setValue(s.defaults.images_per_prompt);
    negative_ = new QLineEdit(s.defaults.negative_prompt, this);
    auto* defaults_box = new QGroupBox(tr("Generation defaults"), this);
    auto* defaults = new QFormLayout(defaults_box);
    defaults->addRow(tr("Steps"), steps_);
    defaults->addRow(tr("CFG scale"), cfg_);
    defaults->addRow(tr("Sampler"), sampler_);
    defaults->addRow(tr("Width"), width_);
    defaults->addRow(tr("Height"), height_);
    defaults->addRow(tr("Images per prompt"), count_);
    defaults->addRow(tr("Negative prompt"), negative_);

    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(general);
    layout->addWidget(defaults_box);
    layout->addWidget(buttons);
}

AppSettings SettingsDialog::settings() const {
    AppSettings s = base_;
    s.workspace = workspace_->text().trimmed();
    s.device = device_->currentData().toString();
    s.threads = threads_->value();
    s.cpu_precision = precision_->currentData().toString();
    s.defaults.steps = steps_->value();
    s.defaults.cfg = cfg_->value();
    s.defaults.sampler = sampler_->currentText();
    s.defaults.width = width_->value();
    s.defaults.height = height_->value();
    s.defaults.images_per_prompt = count_->value();
    s.defaults.negative_prompt = negative_->text();
    return s;
}

}  // namespace kto::ui
