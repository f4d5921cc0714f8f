#pragma once
// The GUI's door to the label store (storage/). Every call returns at once: writes run in order on
// a writer thread that owns the one writer connection (each write one transaction), reads run on a
// reader thread with its own connection; results come back on the GUI thread through signals or a
// callback bound to a context object (dropped if that object is gone). Thread-safety: call from the
// GUI thread only.
#include <QImage>
#include <QMap>
#include <QObject>
#include <QPointer>
#include <QStringList>
#include <atomic>
#include <functional>
#include <memory>

#include "ui/store/comparison_records.h"
#include "ui/store/records.h"
#include "ui/workers/generation_request.h"

class QThread;

namespace kto::ui {

class StoreConnection;

struct ExportPlan {          // what an export would write, shown before acting
    qint64 liked = 0;
    qint64 disliked = 0;
};
struct ImportPlan {          // what the dataset's CSV holds, shown before importing
    qint64 rows = 0;
    qint64 missing_files = 0;            // rows whose image file is not in the folder
    QMap<QString, qint64> label_values;  // the CSV's label/split values and how many rows each
};
struct DatasetResult {
    bool ok = false;
    bool cancelled = false;
    qint64 count = 0;        // rows written / imported
    QString message;         // user-facing summary or error
};

class StoreService : public QObject {
    Q_OBJECT
public:
    explicit StoreService(QObject* parent = nullptr);
    ~StoreService() override;

    // Opens (creating if needed) the workspace folder; `opened` reports the result.
    void open(const QString& workspace_dir);
    QString workspace() const { return workspace_; }
    bool isOpen() const { return open_; }
    LabelCounts counts() const { return counts_; }

    // Reads (reader thread).
    // Images matching `filter`, newest first, rows [offset, offset + limit).
    void queryImages(const GalleryFilter& filter, qint64 offset, int limit, QObject* context,
                     std::function<void(const ImageRecords&, bool exhausted)> done);
    void modelsUsed(QObject* context, std::function<void(const QStringList&)> done);
    void planExport(QObject* context, std::function<void(const ExportPlan&, const QString& error)> done);
    // `dataset_dir` holds train_processed_v3.csv and the images it names.
    void planImport(const QString& dataset_dir, QObject* context,
                    std::function<void(const ImportPlan&, const QString& error)> done);
    // Export runs on the reader thread, import on the writer; progress(done, total) comes back queued.
    void exportDataset(const QString& out_dir, bool overwrite, QObject* context, std::function<void(qint64, qint64)> progress,
                       std::function<void(const DatasetResult&)> done);
    void importDataset(const QString& dataset_dir, QObject* context, std::function<void(qint64, qint64)> progress,
                       std::function<void(const DatasetResult&)> done);
    void cancelDatasetJob();  // cooperative, checked between rows

    // Writes (writer thread, in order).
    void setLabel(const QVector<qint64>& image_ids, Label label);
    // Undoes the image's latest label (the store keeps the history); labelsChanged gives the result.
    void undoLabel(qint64 image_id);
    void deleteImages(const QVector<qint64>& image_ids);  // rows and files
    void addGeneratedImage(const GenerationRequest& request, qint64 seed, const QImage& image);
    // Comparison sessions (Compare area): records the session and its two sides' models.
    void startComparison(const ComparisonSession& session);
    // Adds both images of a vote to the store (with their side's provenance, like generated ones)
    // and records the vote; `done` gets an empty string or the error.
    void recordVote(const ComparisonSession& session, const ComparisonVoteRecord& vote, QObject* context,
                    std::function<void(const QString& error)> done);
    // Turns the session's votes into labels (winner liked, loser disliked; ties skipped), once.
    void applyVoteLabels(const QString& compare_id, QObject* context,
                         std::function<void(qint64 votes, const QString& error)> done);
    // Label counts of one prompt, read after all queued writes (so they include them).
    void promptCounts(const QString& prompt, QObject* context, std::function<void(const LabelCounts&)> done);

signals:
    void opened(bool ok, const QString& error);
    void countsChanged(const kto::ui::LabelCounts& counts);
    void imagesAdded(const kto::ui::ImageRecords& records);
    void labelsChanged(const QVector<qint64>& image_ids, kto::ui::Label label);
    void imagesRemoved(const QVector<qint64>& image_ids);
    void failed(const QString& message);  // a write that did not happen, in words

private:
    using Job = std::function<void(StoreConnection&)>;
    void post(StoreConnection* conn, Job job);
    void deliver(const QPointer<QObject>& context, std::function<void()> fn);
    void deliver(std::function<void()> fn);
    void updateCounts(const LabelCounts& c);

    QString workspace_;
    bool open_ = false;
    LabelCounts counts_;
    QThread* writer_thread_ = nullptr;
    QThread* reader_thread_ = nullptr;
    StoreConnection* writer_ = nullptr;
    StoreConnection* reader_ = nullptr;
    std::shared_ptr<std::atomic<bool>> cancel_dataset_;
};

}  // namespace kto::ui
