#include "ui/compare/swipe_view.h"

#include <QMouseEvent>
#include <QPainter>
#include <algorithm>

namespace kto::ui {

SwipeView::SwipeView(QWidget* parent) : QWidget(parent) {
    setObjectName("compareSwipe");
    setMinimumSize(160, 160);
    setFocusPolicy(Qt::StrongFocus);
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Expanding);
}

void SwipeView::setImages(const QImage& a, const QImage& b) {
    a_ = a;
    b_ = b;
    update();
}

void SwipeView::setLabels(const QString& a, const QString& b) {
    label_a_ = a;
    label_b_ = b;
    update();
}

void SwipeView::setSplit(double fraction) {
    fraction = std::clamp(fraction, 0.0, 1.0);
    if (fraction == split_) return;
    split_ = fraction;
    update();
    emit splitChanged(split_);
}

void SwipeView::toggle() { setSplit(split_ >= 0.5 ? 0.0 : 1.0); }

QRect SwipeView::imageRect() const {
    const QImage& ref = a_.isNull() ? b_ : a_;
    if (ref.isNull()) return rect();
    QSize s = ref.size().scaled(size() - QSize(8, 8), Qt::KeepAspectRatio);
    return QRect(QPoint((width() - s.width()) / 2, (height() - s.height()) / 2), s);
}

void SwipeView::paintEvent(QPaintEvent*) {
    QPainter p(this);
    p.fillRect(rect(), palette().window());
    if (a_.isNull() && b_.isNull()) {
        p.drawText(rect(), Qt::AlignCenter, tr("Render a comparison to swipe between its two sides"));
        return;
    }
    // Sharp pixels when enlarging small model outputs.
    p.setRenderHint(QPainter::SmoothPixmapTransform, false);
    const QRect r = imageRect();
    const int x = r.left() + static_cast<int>(split_ * r.width());
    if (!a_.isNull()) {
        p.save();
        p.setClipRect(QRect(r.topLeft(), QPoint(x, r.bottom())));
        p.drawImage(r, a_);
        p.restore();
    }
    if (!b_.isNull()) {
        p.save();
        p.setClipRect(QRect(QPoint(x, r.top()), r.bottomRight()));
        p.drawImage(r, b_);
        p.restore();
    }
    p.setPen(QPen(Qt::white, 2));
    p.drawLine(x, r.top(), x, r.bottom());
    const QRect tag_a(r.left() + 4, r.top() + 4, r.width() / 2 - 8, 20);
    const QRect tag_b(r.center().x() + 4, r.top() + 4, r.width() / 2 - 8, 20);
    p.setPen(Qt::white);
    if (split_ > 0.0) p.drawText(tag_a, Qt::AlignLeft | Qt::AlignVCenter, label_a_);
    if (split_ < 1.0) p.drawText(tag_b, Qt::AlignRight | Qt::AlignVCenter, label_b_);
}

void SwipeView::mousePressEvent(QMouseEvent* event) { mouseMoveEvent(event); }

void SwipeView::mouseMoveEvent(QMouseEvent* event) {
    const QRect r = imageRect();
    if (r.width() <= 0) return;
    setSplit((event->position().x() - r.left()) / static_cast<double>(r.width()));
}

}  // namespace kto::ui
