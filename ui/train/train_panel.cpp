#include "ui/train/train_panel.h"

#include <QLabel>
#include <QVBoxLayout>

#include "ui/store/store_service.h"

namespace kto::ui {

TrainPanel::TrainPanel(StoreService* store, QWidget* parent) : QWidget(parent) {
    setObjectName("trainPanel");
    auto* title = new QLabel(tr("<h2>Train</h2>"), this);
    auto* state = new QLabel(this);
    state->setObjectName("trainState");
    state->setWordWrap(true);
    state->setText(tr("Training is coming with the trainer: this build has no training engine yet. When it "
                      "arrives, this area starts a Diffusion-KTO fine-tune from your likes and dislikes, with "
                      "live loss curves and a preview grid of fixed prompts and seeds, and its checkpoints "
                      "appear in the Generate area's model list."));
    readiness_ = new QLabel(this);
    readiness_->setObjectName("trainReadiness");
    readiness_->setWordWrap(true);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(title);
    layout->addWidget(state);
    layout->addSpacing(12);
    layout->addWidget(readiness_);
    layout->addStretch();
    connect(store, &StoreService::countsChanged, this, &TrainPanel::update);
    update(store->counts());
}

void TrainPanel::update(const LabelCounts& c) {
    counts_ = c;
    readiness_->setText(readinessText());
}

QString TrainPanel::readinessText() const {
    const LabelCounts& c = counts_;
    QString text = tr("Labels ready for training in this workspace: %1 liked, %2 disliked (%3 unlabelled).")
                       .arg(c.liked)
                       .arg(c.disliked)
                       .arg(c.unlabelled());
    if (c.liked == 0 || c.disliked == 0)
        text += " " + tr("KTO learns from both kinds: rate some images in the Rate area (L like, D dislike).");
    return text;
}

}  // namespace kto::ui
