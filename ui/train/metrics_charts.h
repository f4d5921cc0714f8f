#pragma once
// The live curves of a run (Qt Charts): loss, reward margin and KL estimate against the optimizer
// step, one small chart each so their very different scales stay readable. Steps whose value is
// not defined (NaN, e.g. a margin on a one-class batch) leave no point.
#include <QVector>
#include <QWidget>

#include "ui/workers/training_request.h"

class QChartView;
class QLineSeries;
class QValueAxis;

namespace kto::ui {

class MetricsCharts : public QWidget {
    Q_OBJECT
public:
    enum Metric { Loss, RewardMargin, Kl, MetricCount };
    explicit MetricsCharts(QWidget* parent = nullptr);

    void clear();
    // Appends one step; a step not after the last one shown is ignored (live and on-disk metrics
    // of the same run can overlap).
    void append(const TrainingStep& step);
    void setSteps(const QVector<TrainingStep>& steps);  // replaces everything shown
    int pointCount(Metric metric) const;
    qint64 lastStep() const { return last_step_; }

protected:
    void changeEvent(QEvent* event) override;

private:
    void applyPalette();
    struct Curve {
        QChartView* view = nullptr;
        QLineSeries* series = nullptr;
        QValueAxis* x = nullptr;
        QValueAxis* y = nullptr;
        double min = 0, max = 0;
    };
    void add(Curve& c, double step, double value);
    void fitAxes();
    Curve curves_[MetricCount];
    qint64 last_step_ = -1;
};

}  // namespace kto::ui
