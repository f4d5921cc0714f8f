#pragma once
// The comparison engine of the Compare area: lives on its own QThread and renders a comparison
// (core/compare: both sides, same prompts x seeds and settings, cached on disk) when asked through
// a queued call; images come back as they become available (from the cache at once, rendered ones
// one by one). Thread-safety: call render() through a queued connection; cancel() may be called
// from any thread (a flag checked between denoising steps).
#include <QImage>
#include <QMetaType>
#include <QObject>
#include <QString>
#include <QStringList>
#include <QVector>
#include <atomic>

#include "ui/store/comparison_records.h"

namespace kto::ui {

struct ComparisonRequest {
    quint64 id = 0;  // echoed in every signal
    ComparisonSession session;  // sides, prompts, seeds, steps, cfg (sampler/size: empty/0 = side A's)
    QString cache_dir;          // where rendered images are kept (the workspace's cache/compare)
    QString device = "cpu";
};

// One prompt x seed of a finished comparison.
struct ComparisonCellResult {
    QString prompt;
    qint64 seed = 0;
    QString image_a;  // PNG files in the cache
    QString image_b;
};
using ComparisonCells = QVector<ComparisonCellResult>;

class ComparisonWorker : public QObject {
    Q_OBJECT
public:
    explicit ComparisonWorker(QObject* parent = nullptr);
    void cancel() { cancel_.store(true); }

public slots:
    void render(const kto::ui::ComparisonRequest& request);

signals:
    // images done (cached or rendered) out of all of them (2 x prompts x seeds)
    void progress(quint64 id, int done, int total, const QString& text);
    // side 0 = A, 1 = B; cell indexes prompts x seeds, prompt-major
    void imageReady(quint64 id, int side, int cell, const QImage& image);
    // session carries the resolved sampler and size; cells are empty on error or cancel
    void finished(quint64 id, const kto::ui::ComparisonSession& session, const kto::ui::ComparisonCells& cells,
                  bool cancelled, const QString& error);

private:
    std::atomic<bool> cancel_{false};
};

}  // namespace kto::ui

Q_DECLARE_METATYPE(kto::ui::ComparisonRequest)
Q_DECLARE_METATYPE(kto::ui::ComparisonCells)
