#pragma once
// Two images of the same prompt and seed on top of each other: A left of a divider, B right of it.
// Dragging the mouse (or setSplit) moves the divider; toggle() flips between all-A and all-B, for
// spotting small differences. Small images are enlarged with sharp pixels.
#include <QImage>
#include <QWidget>

namespace kto::ui {

class SwipeView : public QWidget {
    Q_OBJECT
public:
    explicit SwipeView(QWidget* parent = nullptr);
    void setImages(const QImage& a, const QImage& b);
    void setLabels(const QString& a, const QString& b);
    double split() const { return split_; }  // 0: all B, 1: all A
    QSize sizeHint() const override { return {320, 320}; }

public slots:
    void setSplit(double fraction);
    void toggle();  // all A <-> all B

signals:
    void splitChanged(double fraction);

protected:
    void paintEvent(QPaintEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    void mouseMoveEvent(QMouseEvent* event) override;

private:
    QRect imageRect() const;
    QImage a_, b_;
    QString label_a_ = "A", label_b_ = "B";
    double split_ = 0.5;
};

}  // namespace kto::ui
