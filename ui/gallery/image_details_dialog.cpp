#include "ui/gallery/image_details_dialog.h"

#include <QApplication>
#include <QClipboard>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLocale>
#include <QPushButton>

#include "ui/gallery/gallery_model.h"

namespace kto::ui {

ImageDetailsDialog::ImageDetailsDialog(const ImageRecord& r, QWidget* parent) : QDialog(parent), record_(r) {
    setObjectName("imageDetails");
    setWindowTitle(tr("Image %1").arg(r.image_id));
    auto* picture = new QLabel(this);
    picture->setObjectName("detailsImage");
    QImage img(r.path);
    if (img.isNull()) {
        picture->setText(tr("The image file is missing:\n%1").arg(r.path));
    } else {
        // Small model outputs are shown enlarged with sharp pixels, large ones fit the dialog.
        const int side = 384;
        QSize s = img.size().scaled(side, side, Qt::KeepAspectRatio);
        picture->setPixmap(QPixmap::fromImage(img.scaled(s, Qt::KeepAspectRatio,
                                                         img.width() < side ? Qt::FastTransformation
                                                                            : Qt::SmoothTransformation)));
    }
    picture->setAlignment(Qt::AlignCenter);
    picture->setMinimumSize(384, 384);

    auto* form = new QFormLayout;
    auto add = [&](const QString& name, const QString& value) {
        auto* v = new QLabel(value, this);
        v->setTextInteractionFlags(Qt::TextSelectableByMouse);
        v->setWordWrap(true);
        form->addRow(name, v);
    };
    add(tr("Prompt"), r.prompt);
    add(tr("Negative prompt"), r.negative_prompt.isEmpty() ? tr("(none)") : r.negative_prompt);
    add(tr("Seed"), QString::number(r.seed));
    add(tr("Steps"), QString::number(r.steps));
    add(tr("CFG scale"), QString::number(r.cfg));
    add(tr("Sampler"), r.sampler);
    add(tr("Size"), QStringLiteral("%1 × %2").arg(r.width).arg(r.height));
    add(tr("Model"), r.model);
    add(tr("Source"), r.source);
    add(tr("Label"), labelText(r.label));
    add(tr("Created"), QLocale().toString(r.created.toLocalTime(), QLocale::LongFormat));
    add(tr("File"), r.path);

    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    auto* regen = buttons->addButton(tr("&Regenerate"), QDialogButtonBox::ActionRole);
    regen->setObjectName("regenerateButton");
    regen->setToolTip(tr("Fill the Generate form with these settings"));
    auto* copy = buttons->addButton(tr("&Copy parameters"), QDialogButtonBox::ActionRole);
    connect(regen, &QPushButton::clicked, this, [this] {
        emit regenerateRequested(record_);
        accept();
    });
    connect(copy, &QPushButton::clicked, this, [this] { QApplication::clipboard()->setText(provenanceText()); });
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);

    auto* top = new QHBoxLayout;
    top->addWidget(picture);
    top->addLayout(form, 1);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(top);
    layout->addWidget(buttons);
}

QString ImageDetailsDialog::provenanceText() const {
    const ImageRecord& r = record_;
    QString neg = r.negative_prompt.isEmpty() ? QString() : "\nNegative prompt: " + r.negative_prompt;
    return QStringLiteral("%1%2\nSteps: %3, Sampler: %4, CFG scale: %5, Seed: %6, Size: %7x%8, Model: %9")
        .arg(r.prompt, neg)
        .arg(r.steps)
        .arg(r.sampler)
        .arg(r.cfg)
        .arg(r.seed)
        .arg(r.width)
        .arg(r.height)
        .arg(r.model);
}

}  // namespace kto::ui
