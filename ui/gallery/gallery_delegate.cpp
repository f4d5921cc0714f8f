#include "ui/gallery/gallery_delegate.h"

#include <QApplication>
#include <QPainter>
#include <QPainterPath>

#include "ui/gallery/gallery_model.h"

namespace kto::ui {

GalleryDelegate::GalleryDelegate(QSize thumb, QObject* parent) : QStyledItemDelegate(parent), thumb_(thumb) {}

QSize GalleryDelegate::sizeHint(const QStyleOptionViewItem&, const QModelIndex&) const {
    return thumb_ + QSize(12, 12);
}

void GalleryDelegate::paint(QPainter* p, const QStyleOptionViewItem& option, const QModelIndex& index) const {
    p->save();
    const QPalette& pal = option.palette;
    const QRect cell = option.rect.adjusted(2, 2, -2, -2);
    if (option.state & QStyle::State_Selected) {
        p->fillRect(cell, pal.color(QPalette::Highlight));
    } else if (option.state & QStyle::State_MouseOver) {
        p->fillRect(cell, pal.color(QPalette::Midlight));
    }
    const QRect box = QRect(QPoint(0, 0), thumb_).translated(cell.center() - QPoint(thumb_.width() / 2, thumb_.height() / 2));
    const QImage img = index.data(Qt::DecorationRole).value<QImage>();
    if (img.isNull()) {
        p->fillRect(box, pal.color(QPalette::AlternateBase));  // still loading
    } else {
        QSize s = img.size().scaled(thumb_, Qt::KeepAspectRatio);
        QRect target(QPoint(0, 0), s);
        target.moveCenter(box.center());
        p->drawImage(target, img);
    }
    const auto label = static_cast<Label>(index.data(GalleryModel::LabelRole).toInt());
    if (label != Label::None) {
        // Badge colours carry meaning (green like, red dislike) and bring their own text colour,
        // so they read the same on light and dark palettes.
        const bool liked = label == Label::Liked;
        QRect badge(box.right() - 24, box.top() + 4, 20, 20);
        p->setRenderHint(QPainter::Antialiasing);
        p->setPen(Qt::NoPen);
        p->setBrush(liked ? QColor(0x2e, 0x7d, 0x32) : QColor(0xc6, 0x28, 0x28));
        p->drawEllipse(badge);
        p->setPen(Qt::white);
        QFont f = option.font;
        f.setBold(true);
        p->setFont(f);
        p->drawText(badge, Qt::AlignCenter, liked ? QStringLiteral("+") : QStringLiteral("\u2212"));
    }
    if (option.state & QStyle::State_HasFocus) {
        p->setPen(QPen(pal.color(QPalette::Highlight), 2));
        p->setBrush(Qt::NoBrush);
        p->drawRect(cell.adjusted(1, 1, -1, -1));
    }
    p->restore();
}

}  // namespace kto::ui
