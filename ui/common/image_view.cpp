#include "ui/common/image_view.h"

#include <QPainter>

namespace kto::ui {

ImageView::ImageView(QWidget* parent) : QWidget(parent) {
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Expanding);
    setMinimumSize(128, 128);
}

void ImageView::setImage(const QImage& image) {
    image_ = image;
    update();
}

void ImageView::setPlaceholder(const QString& text) {
    placeholder_ = text;
    update();
}

void ImageView::paintEvent(QPaintEvent*) {
    QPainter p(this);
    if (image_.isNull()) {
        p.setPen(palette().color(QPalette::PlaceholderText));
        p.drawText(rect().adjusted(8, 8, -8, -8), Qt::AlignCenter | Qt::TextWordWrap, placeholder_);
        return;
    }
    QSize s = image_.size().scaled(size(), Qt::KeepAspectRatio);
    QRect target(QPoint(0, 0), s);
    target.moveCenter(rect().center());
    const bool enlarge = s.width() > image_.width();
    p.setRenderHint(QPainter::SmoothPixmapTransform, !enlarge);
    p.drawImage(target, image_);
}

}  // namespace kto::ui
