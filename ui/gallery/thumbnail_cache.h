#pragma once
// Lazy, cached thumbnails: decoded and scaled on a small private thread pool, never on the GUI
// thread; `ready` tells the model which image to repaint. Only images a view asks for get loaded.
#include <QCache>
#include <QHash>
#include <QImage>
#include <QObject>
#include <QSet>
#include <QSize>
#include <QThreadPool>

namespace kto::ui {

class ThumbnailCache : public QObject {
    Q_OBJECT
public:
    explicit ThumbnailCache(QSize size = {128, 128}, QObject* parent = nullptr);
    ~ThumbnailCache() override;

    // The cached thumbnail, or a null image after queueing a load (then `ready(id)` follows).
    QImage thumbnail(qint64 id, const QString& path);
    void forget(qint64 id);
    QSize size() const { return size_; }
    int pending() const { return pending_.size(); }
    // Blocks until queued loads finish; for tests and shutdown.
    void waitForDone();

signals:
    void ready(qint64 id);

private:
    void deliver(qint64 id, const QImage& image);
    QSize size_;
    QCache<qint64, QImage> cache_;
    QSet<qint64> pending_;
    QSet<qint64> failed_;
    QThreadPool pool_;
};

}  // namespace kto::ui
