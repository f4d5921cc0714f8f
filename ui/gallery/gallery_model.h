#pragma once
// The gallery's item model: one row per stored image, newest first, loaded a page at a time
// (canFetchMore/fetchMore) from the store's reader thread, so 10,000 images cost only what is seen.
// Pages arrive asynchronously: fetchMore() emits pageRequested and receivePage() appends the rows.
#include <QAbstractTableModel>
#include <QHash>

#include "ui/store/records.h"

namespace kto::ui {

class ThumbnailCache;

class GalleryModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { ImageColumn, PromptColumn, LabelColumn, ModelColumn, SeedColumn, CreatedColumn, ColumnCount };
    enum Role {
        ImageIdRole = Qt::UserRole + 1,
        PathRole,
        LabelRole,      // int(Label)
        PromptRole,
        RecordRole,     // QVariant<ImageRecord>
    };
    static constexpr int kPageSize = 200;

    explicit GalleryModel(ThumbnailCache* thumbnails, QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;
    bool canFetchMore(const QModelIndex& parent) const override;
    void fetchMore(const QModelIndex& parent) override;

    const GalleryFilter& filter() const { return filter_; }
    // Drops all rows and starts again from the first page under `filter`.
    void setFilter(const GalleryFilter& filter);
    void reload() { setFilter(filter_); }

    const ImageRecord* record(int row) const;
    int rowOfImage(qint64 image_id) const;
    bool loading() const { return in_flight_ != 0; }

    // Answers a pageRequested; pages for an older token (a filter since replaced) are ignored.
    void receivePage(quint64 token, const kto::ui::ImageRecords& rows, bool exhausted);
    // Store events, applied in place.
    void applyLabels(const QVector<qint64>& image_ids, kto::ui::Label label);
    void removeImages(const QVector<qint64>& image_ids);
    // Newly generated images, newest first: prepended when they match the current filter.
    void prependImages(const kto::ui::ImageRecords& rows);

signals:
    // Rows [offset, offset + limit) of `filter`, newest first; answered through receivePage().
    void pageRequested(const kto::ui::GalleryFilter& filter, int offset, int limit, quint64 token);
    void pageLoaded(int rows_now);

private:
    bool matches(const ImageRecord& r) const;
    void rebuildIndex(int from_row);
    ThumbnailCache* thumbnails_;
    GalleryFilter filter_;
    ImageRecords rows_;
    QHash<qint64, int> row_of_;
    quint64 token_ = 1;
    quint64 in_flight_ = 0;  // token of the page being loaded, 0 when idle
    bool exhausted_ = false;
    bool started_ = false;
    bool inserting_ = false;  // between beginInsertRows and endInsertRows
};

QString labelText(Label label);

}  // namespace kto::ui
