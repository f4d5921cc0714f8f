#pragma once
// The Compare area. Comparing before/after needs a fine-tuned checkpoint, which the trainer makes;
// until then it lists the models and checkpoints the comparison will choose from (issue 8 plugs the
// side-by-side and blind A/B views in here).
#include <QWidget>

class QLabel;
class QListView;

namespace kto::ui {

class ModelCatalog;

class ComparePanel : public QWidget {
    Q_OBJECT
public:
    ComparePanel(ModelCatalog* catalog, QWidget* parent = nullptr);

private:
    void update();
    ModelCatalog* catalog_;
    QLabel* state_;
};

}  // namespace kto::ui
