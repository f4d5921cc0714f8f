#include "ui/gallery/thumbnail_cache.h"

#include <QImageReader>
#include <QMetaObject>
#include <QtConcurrent/QtConcurrentRun>

namespace kto::ui {

ThumbnailCache::ThumbnailCache(QSize size, QObject* parent) : QObject(parent), size_(size) {
    cache_.setMaxCost(64 * 1024);  // KiB of decoded thumbnails
    pool_.setMaxThreadCount(2);
}

ThumbnailCache::~ThumbnailCache() {
    pool_.clear();
    pool_.waitForDone();
}

QImage ThumbnailCache::thumbnail(qint64 id, const QString& path) {
    if (QImage* hit = cache_.object(id)) return *hit;
    if (pending_.contains(id) || failed_.contains(id)) return {};
    pending_.insert(id);
    const QSize size = size_;
    (void)QtConcurrent::run(&pool_, [this, id, path, size] {
        QImageReader reader(path);
        QSize full = reader.size();
        if (full.isValid()) reader.setScaledSize(full.scaled(size, Qt::KeepAspectRatio));
        QImage img = reader.read();
        if (!img.isNull() && img.width() < size.width() && img.height() < size.height())
            img = img.scaled(size, Qt::KeepAspectRatio, Qt::SmoothTransformation);
        if (!img.isNull()) img = img.convertToFormat(QImage::Format_ARGB32_Premultiplied);
        // The destructor waits for the pool, so `this` is alive here; Qt drops the posted call if
        // the cache is deleted before it runs.
        QMetaObject::invokeMethod(this, [this, id, img] { deliver(id, img); }, Qt::QueuedConnection);
    });
    return {};
}

void ThumbnailCache::deliver(qint64 id, const QImage& image) {
    pending_.remove(id);
    if (image.isNull()) {
        failed_.insert(id);  // a missing or broken file: don't retry on every repaint
    } else {
        cache_.insert(id, new QImage(image), qMax<qsizetype>(1, image.sizeInBytes() / 1024));
    }
    emit ready(id);
}

void ThumbnailCache::forget(qint64 id) {
    cache_.remove(id);
    failed_.remove(id);
}

void ThumbnailCache::waitForDone() { pool_.waitForDone(); }

}  // namespace kto::ui
