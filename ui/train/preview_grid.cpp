#include "ui/train/preview_grid.h"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QScrollArea>
#include <QSlider>
#include <QVBoxLayout>
#include <algorithm>

#include "ui/common/image_view.h"

namespace kto::ui {

PreviewGrid::PreviewGrid(QWidget* parent) : QWidget(parent) {
    setObjectName("previewGrid");
    slider_ = new QSlider(Qt::Horizontal, this);
    slider_->setObjectName("previewStepSlider");
    slider_->setToolTip(tr("The steps at which previews were rendered"));
    slider_->setPageStep(1);
    slider_->setTickPosition(QSlider::TicksBelow);
    step_label_ = new QLabel(this);
    step_label_->setObjectName("previewStepLabel");
    step_label_->setMinimumWidth(90);
    auto* slider_row = new QHBoxLayout;
    slider_row->addWidget(new QLabel(tr("Step"), this));
    slider_row->addWidget(slider_, 1);
    slider_row->addWidget(step_label_);

    empty_label_ = new QLabel(tr("No previews yet. They are rendered at the start of a run and every "
                                 "\"preview every\" steps, for each probe prompt and seed."),
                              this);
    empty_label_->setWordWrap(true);
    empty_label_->setAlignment(Qt::AlignCenter);

    auto* grid_host = new QWidget;
    grid_ = new QGridLayout(grid_host);
    grid_->setColumnStretch(0, 1);
    base_header_ = new QLabel(tr("<b>Base</b>"), grid_host);
    current_header_ = new QLabel(grid_host);
    base_header_->setAlignment(Qt::AlignCenter);
    current_header_->setAlignment(Qt::AlignCenter);
    grid_->addWidget(base_header_, 0, 1);
    grid_->addWidget(current_header_, 0, 2);
    grid_->setRowStretch(1000, 1);
    auto* scroll = new QScrollArea(this);
    scroll->setWidgetResizable(true);
    scroll->setWidget(grid_host);
    scroll->setFrameShape(QFrame::NoFrame);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(slider_row);
    layout->addWidget(empty_label_);
    layout->addWidget(scroll, 1);
    connect(slider_, &QSlider::valueChanged, this, [this] {
        showStep();
        emit currentStepChanged(currentStep());
    });
    clear();
}

void PreviewGrid::clear() {
    steps_.clear();
    rebuildRows();
}

const PreviewTile* PreviewGrid::find(const PreviewTiles& tiles, const QString& prompt, qint64 seed) {
    for (const PreviewTile& t : tiles)
        if (t.prompt == prompt && t.seed == seed) return &t;
    return nullptr;
}

void PreviewGrid::addStep(qint64 step, const PreviewTiles& tiles) {
    const bool follow = steps_.isEmpty() || slider_->value() == slider_->maximum();
    steps_.insert(step, tiles);
    bool new_rows = false;
    for (const PreviewTile& t : tiles) {
        bool known = false;
        for (const Row& r : rows_) known = known || (r.prompt == t.prompt && r.seed == t.seed);
        new_rows = new_rows || !known;
    }
    if (new_rows) {
        rebuildRows();
    } else {
        const QSignalBlocker block(slider_);
        slider_->setRange(0, steps_.size() - 1);
    }
    if (follow) {
        const QSignalBlocker block(slider_);
        slider_->setValue(slider_->maximum());
    }
    showStep();
    if (follow) emit currentStepChanged(currentStep());
}

void PreviewGrid::setSteps(const QMap<qint64, PreviewTiles>& steps) {
    steps_ = steps;
    rebuildRows();
}

void PreviewGrid::rebuildRows() {
    for (Row& r : rows_) {
        delete r.label;
        delete r.base;
        delete r.current;
    }
    rows_.clear();
    // Rows in the order of the first step that shows each prompt x seed.
    for (const PreviewTiles& tiles : steps_)
        for (const PreviewTile& t : tiles)
            if (!std::any_of(rows_.begin(), rows_.end(),
                             [&](const Row& r) { return r.prompt == t.prompt && r.seed == t.seed; }))
            {
                Row r;
                r.prompt = t.prompt;
                r.seed = t.seed;
                rows_.push_back(r);
            }
    QWidget* host = base_header_->parentWidget();
    for (int i = 0; i < rows_.size(); ++i) {
        Row& r = rows_[i];
        r.label = new QLabel(tr("%1\nseed %2").arg(r.prompt).arg(r.seed), host);
        r.label->setWordWrap(true);
        r.base = new ImageView(host);
        r.current = new ImageView(host);
        for (ImageView* v : {r.base, r.current}) {
            v->setFixedSize(160, 160);
            v->setPlaceholder(tr("—"));
        }
        grid_->addWidget(r.label, i + 1, 0);
        grid_->addWidget(r.base, i + 1, 1);
        grid_->addWidget(r.current, i + 1, 2);
    }
    {
        const QSignalBlocker block(slider_);
        slider_->setRange(0, std::max<int>(0, static_cast<int>(steps_.size()) - 1));
        slider_->setValue(slider_->maximum());
    }
    empty_label_->setVisible(steps_.isEmpty());
    base_header_->setVisible(!steps_.isEmpty());
    current_header_->setVisible(!steps_.isEmpty());
    slider_->setEnabled(steps_.size() > 1);
    showStep();
}

qint64 PreviewGrid::currentStep() const {
    if (steps_.isEmpty()) return -1;
    return steps_.keys().value(slider_->value(), steps_.lastKey());
}

void PreviewGrid::showStep() {
    slider_->setEnabled(steps_.size() > 1);
    const qint64 step = currentStep();
    step_label_->setText(step < 0 ? QString() : tr("%1 (%2 of %3)").arg(step).arg(slider_->value() + 1).arg(steps_.size()));
    current_header_->setText(tr("<b>Step %1</b>").arg(step));
    for (Row& r : rows_) {
        // Base: the earliest step that has this prompt x seed (step 0 when the run rendered it).
        const PreviewTile* base = nullptr;
        for (const PreviewTiles& tiles : steps_)
            if ((base = find(tiles, r.prompt, r.seed))) break;
        const PreviewTile* current = step < 0 ? nullptr : find(steps_.value(step), r.prompt, r.seed);
        r.base->setImage(base ? base->image : QImage());
        r.current->setImage(current ? current->image : QImage());
    }
}

QImage PreviewGrid::baseImage(int row) const { return rows_.value(row).base ? rows_[row].base->image() : QImage(); }

QImage PreviewGrid::currentImage(int row) const {
    return rows_.value(row).current ? rows_[row].current->image() : QImage();
}

}  // namespace kto::ui
