#include "ui/compare/compare_panel.h"

#include <QLabel>
#include <QListView>
#include <QVBoxLayout>

#include "ui/generate/model_catalog.h"

namespace kto::ui {

ComparePanel::ComparePanel(ModelCatalog* catalog, QWidget* parent) : QWidget(parent), catalog_(catalog) {
    setObjectName("comparePanel");
    auto* title = new QLabel(tr("<h2>Compare</h2>"), this);
    state_ = new QLabel(this);
    state_->setObjectName("compareState");
    state_->setWordWrap(true);
    auto* list = new QListView(this);
    list->setObjectName("compareModels");
    list->setModel(catalog_);
    list->setMaximumHeight(180);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(title);
    layout->addWidget(state_);
    layout->addWidget(new QLabel(tr("Models and checkpoints available:"), this));
    layout->addWidget(list);
    layout->addStretch();
    connect(catalog_, &QAbstractItemModel::modelReset, this, &ComparePanel::update);
    update();
}

void ComparePanel::update() {
    int checkpoints = 0;
    for (int i = 0; i < catalog_->rowCount(); ++i)
        if (catalog_->entry(i)->kind == ModelEntry::Kind::Checkpoint) ++checkpoints;
    state_->setText(checkpoints == 0
                        ? tr("Comparing is coming with the trainer: it sets a base model beside a checkpoint of "
                             "a training run, side by side and as a blind A/B vote. No checkpoints exist in this "
                             "workspace yet.")
                        : tr("Comparing is coming with the trainer: checkpoints found: %1, ready to be "
                             "compared once the comparison view lands.")
                              .arg(checkpoints));
}

}  // namespace kto::ui
