#include "ui/train/metrics_charts.h"

#include <QChart>
#include <QChartView>
#include <QEvent>
#include <QLineSeries>
#include <QPainter>
#include <QValueAxis>
#include <QVBoxLayout>
#include <cmath>

namespace kto::ui {

namespace {
double value_of(const TrainingStep& s, int metric) {
    switch (metric) {
        case MetricsCharts::Loss: return s.loss;
        case MetricsCharts::RewardMargin: return s.reward_margin;
        default: return s.kl;
    }
}
}  // namespace

MetricsCharts::MetricsCharts(QWidget* parent) : QWidget(parent) {
    setObjectName("metricsCharts");
    const QString titles[MetricCount] = {tr("Loss"), tr("Reward margin (liked − disliked)"), tr("KL estimate")};
    const char* names[MetricCount] = {"lossChart", "marginChart", "klChart"};
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    for (int m = 0; m < MetricCount; ++m) {
        Curve& c = curves_[m];
        auto* chart = new QChart;
        chart->setTitle(titles[m]);
        chart->legend()->hide();
        chart->setMargins(QMargins(4, 2, 4, 2));
        chart->setBackgroundRoundness(0);
        c.series = new QLineSeries(chart);
        chart->addSeries(c.series);
        c.x = new QValueAxis(chart);
        c.x->setLabelFormat("%d");
        c.x->setTitleText(tr("step"));
        c.y = new QValueAxis(chart);
        c.y->setLabelFormat("%.3g");
        chart->addAxis(c.x, Qt::AlignBottom);
        chart->addAxis(c.y, Qt::AlignLeft);
        c.series->attachAxis(c.x);
        c.series->attachAxis(c.y);
        c.view = new QChartView(chart, this);
        c.view->setObjectName(names[m]);
        c.view->setRenderHint(QPainter::Antialiasing);
        c.view->setMinimumHeight(120);
        layout->addWidget(c.view, 1);
    }
    applyPalette();
    clear();
}

void MetricsCharts::changeEvent(QEvent* event) {
    QWidget::changeEvent(event);
    if (event->type() == QEvent::PaletteChange) applyPalette();
}

// Charts paint their own light theme; follow the application palette (a dark desktop, a dark chart).
void MetricsCharts::applyPalette() {
    const QPalette p = palette();
    for (Curve& c : curves_) {
        QChart* chart = c.view->chart();
        chart->setBackgroundBrush(p.base());
        chart->setTitleBrush(p.text());
        for (QValueAxis* a : {c.x, c.y}) {
            a->setLabelsBrush(p.text());
            a->setTitleBrush(p.text());
            a->setGridLineColor(p.color(QPalette::Mid));
        }
        c.series->setColor(p.color(QPalette::Highlight));
    }
}

void MetricsCharts::clear() {
    for (Curve& c : curves_) {
        c.series->clear();
        c.min = c.max = 0;
    }
    last_step_ = -1;
    fitAxes();
}

void MetricsCharts::add(Curve& c, double step, double value) {
    if (!std::isfinite(value)) return;
    if (c.series->count() == 0) {
        c.min = c.max = value;
    } else {
        c.min = std::min(c.min, value);
        c.max = std::max(c.max, value);
    }
    c.series->append(step, value);
}

void MetricsCharts::fitAxes() {
    for (Curve& c : curves_) {
        c.x->setRange(0, std::max<double>(1.0, static_cast<double>(last_step_)));
        const double pad = c.max > c.min ? (c.max - c.min) * 0.08 : std::max(1e-6, std::abs(c.max) * 0.1 + 1e-6);
        c.y->setRange(c.min - pad, c.max + pad);
    }
}

void MetricsCharts::append(const TrainingStep& step) {
    if (step.step <= last_step_) return;
    for (int m = 0; m < MetricCount; ++m) add(curves_[m], static_cast<double>(step.step), value_of(step, m));
    last_step_ = step.step;
    fitAxes();
}

void MetricsCharts::setSteps(const QVector<TrainingStep>& steps) {
    // One replace() per series: appending thousands of points one by one redraws each time.
    for (int m = 0; m < MetricCount; ++m) {
        Curve& c = curves_[m];
        QList<QPointF> points;
        points.reserve(steps.size());
        c.min = c.max = 0;
        for (const TrainingStep& s : steps) {
            const double v = value_of(s, m);
            if (!std::isfinite(v)) continue;
            if (points.isEmpty()) c.min = c.max = v;
            c.min = std::min(c.min, v);
            c.max = std::max(c.max, v);
            points.push_back(QPointF(static_cast<double>(s.step), v));
        }
        c.series->replace(points);
    }
    last_step_ = steps.isEmpty() ? -1 : steps.last().step;
    fitAxes();
}

int MetricsCharts::pointCount(Metric metric) const { return curves_[metric].series->count(); }

}  // namespace kto::ui
