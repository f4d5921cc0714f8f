#pragma once
// The preview grid of a run: one row per probe prompt x seed, the base model's image (the step-0
// preview, or the earliest one) beside the image at the chosen step, and a slider over the steps at
// which previews were taken. The slider follows the newest preview unless the user moved it back.
#include <QMap>
#include <QWidget>

#include "ui/workers/training_request.h"

class QGridLayout;
class QLabel;
class QSlider;

namespace kto::ui {

class ImageView;

class PreviewGrid : public QWidget {
    Q_OBJECT
public:
    explicit PreviewGrid(QWidget* parent = nullptr);

    void clear();
    void addStep(qint64 step, const PreviewTiles& tiles);  // replaces that step if already shown
    void setSteps(const QMap<qint64, PreviewTiles>& steps);

    QSlider* slider() const { return slider_; }
    QList<qint64> steps() const { return steps_.keys(); }
    qint64 currentStep() const;  // -1 when there are no previews
    int rows() const { return rows_.size(); }
    // The images shown in a row now (base, current); null images where none.
    QImage baseImage(int row) const;
    QImage currentImage(int row) const;

signals:
    void currentStepChanged(qint64 step);

private:
    struct Row {
        QString prompt;
        qint64 seed = 0;
        QLabel* label = nullptr;
        ImageView* base = nullptr;
        ImageView* current = nullptr;
    };
    void rebuildRows();
    void showStep();
    static const PreviewTile* find(const PreviewTiles& tiles, const QString& prompt, qint64 seed);

    QMap<qint64, PreviewTiles> steps_;
    QVector<Row> rows_;
    QSlider* slider_;
    QLabel* step_label_;
    QLabel* empty_label_;
    QLabel* base_header_;
    QLabel* current_header_;
    QGridLayout* grid_;
};

}  // namespace kto::ui
