#pragma once
// The Train area. Until the trainer engine (core/train) offers a training job, it shows what a run
// would start from (liked / disliked counts of the workspace) and says training comes with the
// trainer; the run form, live curves and preview grid plug in here (issue 8).
#include <QWidget>

#include "ui/store/records.h"

class QLabel;

namespace kto::ui {

class StoreService;

class TrainPanel : public QWidget {
    Q_OBJECT
public:
    TrainPanel(StoreService* store, QWidget* parent = nullptr);
    QString readinessText() const;

private:
    void update(const LabelCounts& c);
    QLabel* readiness_;
    LabelCounts counts_;
};

}  // namespace kto::ui
