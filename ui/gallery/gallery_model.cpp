#include "ui/gallery/gallery_model.h"

#include <QLocale>

#include "ui/gallery/thumbnail_cache.h"

namespace kto::ui {

QString labelText(Label label) {
    switch (label) {
        case Label::Liked: return QObject::tr("liked");
        case Label::Disliked: return QObject::tr("disliked");
        case Label::None: break;
    }
    return QObject::tr("unlabelled");
}

GalleryModel::GalleryModel(ThumbnailCache* thumbnails, QObject* parent)
    : QAbstractTableModel(parent), thumbnails_(thumbnails) {
    if (thumbnails_) {
        connect(thumbnails_, &ThumbnailCache::ready, this, [this](qint64 id) {
            int row = rowOfImage(id);
            if (row >= 0) emit dataChanged(index(row, ImageColumn), index(row, ImageColumn), {Qt::DecorationRole});
        });
    }
}

int GalleryModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : rows_.size(); }
int GalleryModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant GalleryModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
    const ImageRecord& r = rows_[index.row()];
    switch (role) {
        case ImageIdRole: return r.image_id;
        case PathRole: return r.path;
        case LabelRole: return static_cast<int>(r.label);
        case PromptRole: return r.prompt;
        case RecordRole: return QVariant::fromValue(r);
        case Qt::ToolTipRole:
            return tr("%1\nseed %2 · %3 · %4").arg(r.prompt).arg(r.seed).arg(r.model, labelText(r.label));
        default: break;
    }
    switch (index.column()) {
        case ImageColumn:
            if (role == Qt::DecorationRole && thumbnails_) return thumbnails_->thumbnail(r.image_id, r.path);
            if (role == Qt::DisplayRole) return r.prompt;
            break;
        case PromptColumn:
            if (role == Qt::DisplayRole) return r.prompt;
            break;
        case LabelColumn:
            if (role == Qt::DisplayRole) return labelText(r.label);
            break;
        case ModelColumn:
            if (role == Qt::DisplayRole) return r.model;
            break;
        case SeedColumn:
            if (role == Qt::DisplayRole) return r.seed;
            break;
        case CreatedColumn:
            if (role == Qt::DisplayRole) return QLocale().toString(r.created.toLocalTime(), QLocale::ShortFormat);
            break;
        default: break;
    }
    return {};
}

QVariant GalleryModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
    switch (section) {
        case ImageColumn: return tr("Image");
        case PromptColumn: return tr("Prompt");
        case LabelColumn: return tr("Label");
        case ModelColumn: return tr("Model");
        case SeedColumn: return tr("Seed");
        case CreatedColumn: return tr("Created");
        default: return {};
    }
}

Qt::ItemFlags GalleryModel::flags(const QModelIndex& index) const {
    if (!index.isValid()) return Qt::NoItemFlags;
    return Qt::ItemIsEnabled | Qt::ItemIsSelectable | Qt::ItemNeverHasChildren;
}

bool GalleryModel::canFetchMore(const QModelIndex& parent) const {
    return !parent.isValid() && !exhausted_;
}

void GalleryModel::fetchMore(const QModelIndex& parent) {
    // Not while rows are being inserted: the offset would not count them yet.
    if (parent.isValid() || exhausted_ || in_flight_ || inserting_) return;
    in_flight_ = token_;
    started_ = true;
    emit pageRequested(filter_, rows_.size(), kPageSize, token_);
}

void GalleryModel::setFilter(const GalleryFilter& filter) {
    beginResetModel();
    filter_ = filter;
    rows_.clear();
    row_of_.clear();
    exhausted_ = false;
    in_flight_ = 0;
    ++token_;
    endResetModel();
    fetchMore({});
}

void GalleryModel::receivePage(quint64 token, const ImageRecords& rows, bool exhausted) {
    if (token != token_ || in_flight_ != token) return;
    in_flight_ = 0;
    exhausted_ = exhausted || rows.size() < kPageSize;
    ImageRecords fresh;
    fresh.reserve(rows.size());
    for (const ImageRecord& r : rows)
        if (!row_of_.contains(r.image_id)) fresh.push_back(r);  // prepended meanwhile
    if (!fresh.isEmpty()) {
        const int first = rows_.size();
        inserting_ = true;
        beginInsertRows({}, first, first + fresh.size() - 1);
        rows_ += fresh;
        rebuildIndex(first);
        endInsertRows();
        inserting_ = false;
    } else if (!exhausted_) {
        fetchMore({});  // a page of rows we already hold (shifted by prepends): ask for the next
    }
    emit pageLoaded(rows_.size());
}

const ImageRecord* GalleryModel::record(int row) const {
    return row >= 0 && row < rows_.size() ? &rows_[row] : nullptr;
}

int GalleryModel::rowOfImage(qint64 image_id) const { return row_of_.value(image_id, -1); }

void GalleryModel::rebuildIndex(int from_row) {
    for (int i = from_row; i < rows_.size(); ++i) row_of_.insert(rows_[i].image_id, i);
}

void GalleryModel::applyLabels(const QVector<qint64>& image_ids, Label label) {
    for (qint64 id : image_ids) {
        int row = rowOfImage(id);
        if (row < 0) continue;
        rows_[row].label = label;
        emit dataChanged(index(row, 0), index(row, ColumnCount - 1));
    }
}

void GalleryModel::removeImages(const QVector<qint64>& image_ids) {
    for (qint64 id : image_ids) {
        int row = rowOfImage(id);
        if (row < 0) continue;
        beginRemoveRows({}, row, row);
        rows_.removeAt(row);
        row_of_.remove(id);
        for (auto it = row_of_.begin(); it != row_of_.end(); ++it)
            if (it.value() > row) --it.value();
        endRemoveRows();
        if (thumbnails_) thumbnails_->forget(id);
    }
}

bool GalleryModel::matches(const ImageRecord& r) const {
    using LF = GalleryFilter::LabelFilter;
    switch (filter_.label) {
        case LF::Liked: if (r.label != Label::Liked) return false; break;
        case LF::Disliked: if (r.label != Label::Disliked) return false; break;
        case LF::Unlabelled: if (r.label != Label::None) return false; break;
        case LF::Labelled: if (r.label == Label::None) return false; break;
        case LF::Any: break;
    }
    if (!filter_.prompt_text.isEmpty() && !r.prompt.contains(filter_.prompt_text, Qt::CaseInsensitive)) return false;
    if (!filter_.model.isEmpty() && r.model != filter_.model) return false;
    const QDate day = r.created.toLocalTime().date();
    if (filter_.from.isValid() && day < filter_.from) return false;
    if (filter_.to.isValid() && day > filter_.to) return false;
    return true;
}

void GalleryModel::prependImages(const ImageRecords& rows) {
    ImageRecords keep;
    for (const ImageRecord& r : rows)
        if (matches(r) && !row_of_.contains(r.image_id)) keep.push_back(r);
    if (keep.isEmpty()) return;
    inserting_ = true;
    beginInsertRows({}, 0, keep.size() - 1);
    rows_ = keep + rows_;
    row_of_.clear();
    rebuildIndex(0);
    endInsertRows();
    inserting_ = false;
}

}  // namespace kto::ui
