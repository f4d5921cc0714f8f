#pragma once
// Paints one gallery cell: the thumbnail, a label badge in the corner, the selection frame.
#include <QStyledItemDelegate>

namespace kto::ui {

class GalleryDelegate : public QStyledItemDelegate {
    Q_OBJECT
public:
    explicit GalleryDelegate(QSize thumb, QObject* parent = nullptr);
    void paint(QPainter* painter, const QStyleOptionViewItem& option, const QModelIndex& index) const override;
    QSize sizeHint(const QStyleOptionViewItem& option, const QModelIndex& index) const override;

private:
    QSize thumb_;
};

}  // namespace kto::ui
