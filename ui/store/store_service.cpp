#include "ui/store/store_service.h"

#include <QBuffer>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QDir>
#include <QImageWriter>
#include <QThread>
#include <exception>

#include "storage/dataset/csv.h"
#include "storage/dataset/dataset_export.h"
#include "storage/dataset/dataset_import.h"
#include "core/common/error.h"
#include "storage/store/store.h"
#include "storage/store/timestamps.h"

namespace kto::ui {

// One storage::Store (one SQLite connection) living on its own thread; jobs arrive as queued calls.
class StoreConnection : public QObject {
public:
    std::unique_ptr<storage::Store> store;
};

namespace {

Label from_storage(storage::Label l) {
    switch (l) {
        case storage::Label::Like: return Label::Liked;
        case storage::Label::Dislike: return Label::Disliked;
        case storage::Label::None: break;
    }
    return Label::None;
}

storage::Label to_storage(Label l) {
    switch (l) {
        case Label::Liked: return storage::Label::Like;
        case Label::Disliked: return storage::Label::Dislike;
        case Label::None: break;
    }
    return storage::Label::None;
}

ImageRecord to_ui(const storage::ImageRecord& r) {
    ImageRecord o;
    o.image_id = r.id;
    o.generation_id = r.generation_id;
    o.path = QString::fromStdString(r.path.string());
    o.prompt = QString::fromStdString(r.prompt);
    o.negative_prompt = QString::fromStdString(r.negative_prompt);
    o.seed = r.seed;
    o.steps = r.steps;
    o.cfg = r.cfg;
    o.sampler = QString::fromStdString(r.sampler);
    o.width = r.width;
    o.height = r.height;
    o.model = QString::fromStdString(r.model_name);
    o.checkpoint = r.checkpoint ? QString::fromStdString(*r.checkpoint) : QString();
    o.source = r.steps > 0 ? QObject::tr("generated") : QObject::tr("imported");
    o.label = from_storage(r.label);
    o.created = QDateTime::fromString(QString::fromStdString(r.created_at), Qt::ISODateWithMs);
    return o;
}

LabelCounts to_ui(const storage::LabelCounts& c) {
    LabelCounts o;
    o.total = c.images;
    o.liked = c.liked;
    o.disliked = c.disliked;
    return o;
}

std::string utc_bound(const QDate& day, bool upper) {
    // The user's local day, expressed in the store's UTC times.
    QDateTime t = upper ? QDateTime(day, QTime(23, 59, 59, 999)) : QDateTime(day, QTime(0, 0));
    return storage::iso_bound(t.toUTC().toString("yyyy-MM-ddTHH:mm:ss.zzz").toStdString(), upper, "date filter");
}

storage::ImageQuery to_query(const GalleryFilter& f) {
    storage::ImageQuery q;
    using LF = GalleryFilter::LabelFilter;
    switch (f.label) {
        case LF::Any: q.label = storage::LabelFilter::Any; break;
        case LF::Liked: q.label = storage::LabelFilter::Liked; break;
        case LF::Disliked: q.label = storage::LabelFilter::Disliked; break;
        case LF::Unlabelled: q.label = storage::LabelFilter::Unlabeled; break;
        case LF::Labelled: q.label = storage::LabelFilter::Labeled; break;
    }
    q.prompt_contains = f.prompt_text.toStdString();
    q.model_name = f.model.toStdString();
    if (f.from.isValid()) q.since = utc_bound(f.from, false);
    if (f.to.isValid()) q.until = utc_bound(f.to, true);
    q.newest_first = true;
    return q;
}

// A1111-style "parameters" text stored in the PNG, so the file alone tells how it was made.
QString parameters_text(const GenerationRequest& r, qint64 seed) {
    QString text = r.prompt;
    if (!r.negative_prompt.isEmpty()) text += "\nNegative prompt: " + r.negative_prompt;
    text += QStringLiteral("\nSteps: %1, Sampler: %2, CFG scale: %3, Seed: %4, Size: %5x%6, Model: %7")
                .arg(r.steps)
                .arg(r.sampler)
                .arg(r.cfg)
                .arg(seed)
                .arg(r.width)
                .arg(r.height)
                .arg(r.model_name);
    return text;
}

}  // namespace

StoreService::StoreService(QObject* parent) : QObject(parent), cancel_dataset_(std::make_shared<std::atomic<bool>>(false)) {
    qRegisterMetaType<kto::ui::LabelCounts>();
    qRegisterMetaType<kto::ui::ImageRecords>();
    qRegisterMetaType<kto::ui::Label>();
    qRegisterMetaType<QVector<qint64>>();
}

StoreService::~StoreService() {
    for (QThread* t : {writer_thread_, reader_thread_}) {
        if (!t) continue;
        t->quit();
        t->wait();
    }
}

void StoreService::open(const QString& workspace_dir) {
    // Old threads (another workspace) finish their queued jobs and go; their stores close there.
    for (QThread* t : {writer_thread_, reader_thread_}) {
        if (!t) continue;
        t->quit();
        t->wait();
        delete t;
    }
    writer_thread_ = new QThread(this);
    writer_thread_->setObjectName("kto-store-writer");
    reader_thread_ = new QThread(this);
    reader_thread_->setObjectName("kto-store-reader");
    writer_ = new StoreConnection;
    reader_ = new StoreConnection;
    writer_->moveToThread(writer_thread_);
    reader_->moveToThread(reader_thread_);
    connect(writer_thread_, &QThread::finished, writer_, &QObject::deleteLater);
    connect(reader_thread_, &QThread::finished, reader_, &QObject::deleteLater);
    writer_thread_->start();
    reader_thread_->start();

    workspace_ = QDir(workspace_dir).absolutePath();
    open_ = false;
    const std::string dir = workspace_.toStdString();
    // The writer opens first (creating and migrating the database), then the reader.
    post(writer_, [this, dir](StoreConnection& c) {
        QString error;
        LabelCounts counts;
        try {
            c.store = std::make_unique<storage::Store>(storage::Workspace(dir));
            counts = to_ui(c.store->counts());
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        if (!error.isEmpty()) {
            deliver([this, error] { emit opened(false, error); });
            return;
        }
        post(reader_, [this, dir, counts](StoreConnection& r) {
            QString error;
            try {
                r.store = std::make_unique<storage::Store>(storage::Workspace(dir));
            } catch (const std::exception& e) {
                error = QString::fromStdString(e.what());
            }
            deliver([this, error, counts] {
                open_ = error.isEmpty();
                if (open_) updateCounts(counts);
                emit opened(open_, error);
            });
        });
    });
}

void StoreService::post(StoreConnection* conn, Job job) {
    QMetaObject::invokeMethod(conn, [conn, job = std::move(job)] { job(*conn); }, Qt::QueuedConnection);
}

void StoreService::deliver(const QPointer<QObject>& guard, std::function<void()> fn) {
    // Runs `fn` on the GUI thread unless the context (guarded when the request was made, on the
    // GUI thread) was destroyed meanwhile; `this` outlives the store threads (its destructor joins them).
    QMetaObject::invokeMethod(this, [guard, fn = std::move(fn)] {
        if (guard) fn();
    }, Qt::QueuedConnection);
}

void StoreService::deliver(std::function<void()> fn) {
    QMetaObject::invokeMethod(this, std::move(fn), Qt::QueuedConnection);
}

void StoreService::updateCounts(const LabelCounts& c) {
    counts_ = c;
    emit countsChanged(c);
}

void StoreService::queryImages(const GalleryFilter& filter, qint64 offset, int limit, QObject* context,
                               std::function<void(const ImageRecords&, bool)> done) {
    if (!reader_) return;
    QPointer<QObject> context_guard(context);
    post(reader_, [this, filter, offset, limit, context_guard, done](StoreConnection& c) {
        ImageRecords rows;
        QString error;
        try {
            if (!c.store) return;
            storage::ImageQuery q = to_query(filter);
            q.offset = offset;
            q.limit = limit + 1;  // one more than asked tells whether there is a next page
            for (const storage::ImageRecord& r : c.store->query_images(q)) rows.push_back(to_ui(r));
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        const bool exhausted = rows.size() <= limit;
        if (!exhausted) rows.removeLast();
        deliver(context_guard, [this, rows, exhausted, done, error] {
            if (!error.isEmpty()) emit failed(tr("Could not read images: %1").arg(error));
            done(rows, exhausted || !error.isEmpty());
        });
    });
}

void StoreService::modelsUsed(QObject* context, std::function<void(const QStringList&)> done) {
    if (!reader_) return;
    QPointer<QObject> context_guard(context);
    post(reader_, [this, context_guard, done](StoreConnection& c) {
        QStringList names;
        try {
            if (!c.store) return;
            for (const storage::ModelRecord& m : c.store->models()) {
                const QString n = QString::fromStdString(m.name);
                if (!names.contains(n)) names << n;
            }
        } catch (const std::exception&) {
            return;  // the filter list keeps its entries
        }
        deliver(context_guard, [names, done] { done(names); });
    });
}

void StoreService::setLabel(const QVector<qint64>& ids, Label label) {
    if (!writer_ || ids.isEmpty()) return;
    post(writer_, [this, ids, label, known = counts_](StoreConnection& c) {
        QString error;
        LabelCounts counts;
        QVector<qint64> done_ids;
        try {
            if (!c.store) return;
            for (qint64 id : ids) {
                c.store->set_label(id, to_storage(label));
                done_ids << id;
            }
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        try {
            counts = to_ui(c.store->counts());
        } catch (const std::exception&) {
            counts = known;
        }
        deliver([this, done_ids, label, counts, error] {
            if (!done_ids.isEmpty()) emit labelsChanged(done_ids, label);
            updateCounts(counts);
            if (!error.isEmpty()) emit failed(tr("The label was not saved: %1").arg(error));
        });
    });
}

void StoreService::undoLabel(qint64 id) {
    if (!writer_) return;
    post(writer_, [this, id, known = counts_](StoreConnection& c) {
        QString error;
        Label now = Label::None;
        LabelCounts counts = known;
        try {
            if (!c.store) return;
            now = from_storage(c.store->undo_label(id));
            counts = to_ui(c.store->counts());
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        deliver([this, id, now, counts, error] {
            if (!error.isEmpty()) {
                emit failed(tr("Could not undo the label: %1").arg(error));
                return;
            }
            emit labelsChanged({id}, now);
            updateCounts(counts);
        });
    });
}

void StoreService::deleteImages(const QVector<qint64>& ids) {
    if (!writer_ || ids.isEmpty()) return;
    post(writer_, [this, ids, known = counts_](StoreConnection& c) {
        QString error;
        LabelCounts counts = known;
        try {
            if (!c.store) return;
            c.store->delete_images(std::vector<std::int64_t>(ids.begin(), ids.end()));
            counts = to_ui(c.store->counts());
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        deliver([this, ids, counts, error] {
            if (!error.isEmpty()) {
                emit failed(tr("The images were not deleted: %1").arg(error));
                return;
            }
            emit imagesRemoved(ids);
            updateCounts(counts);
        });
    });
}

void StoreService::addGeneratedImage(const GenerationRequest& request, qint64 seed, const QImage& image) {
    if (!writer_) return;
    post(writer_, [this, request, seed, image, known = counts_](StoreConnection& c) {
        QString error;
        ImageRecords added;
        LabelCounts counts = known;
        try {
            if (!c.store) return;
            QImage tagged = image;
            tagged.setText("parameters", parameters_text(request, seed));
            QByteArray png;
            QBuffer buffer(&png);
            buffer.open(QIODevice::WriteOnly);
            QImageWriter writer(&buffer, "png");
            if (!writer.write(tagged)) throw std::runtime_error("cannot encode PNG: " + writer.errorString().toStdString());

            storage::GenerationInput g;
            g.prompt = request.prompt.toStdString();
            g.negative_prompt = request.negative_prompt.toStdString();
            g.seed = seed;
            g.steps = request.steps;
            g.cfg = request.cfg;
            g.sampler = request.sampler.toStdString();
            g.width = image.width();
            g.height = image.height();
            g.model_id = c.store->ensure_model(request.model_name.toStdString(), request.model_path.toStdString());
            if (!request.unet_path.isEmpty()) g.checkpoint = request.unet_path.toStdString();
            storage::ImageInput in;
            in.encoded = std::string(png.constData(), png.size());
            in.width = image.width();
            in.height = image.height();
            const storage::AddedGeneration a = c.store->add_generation(g, {in});
            for (std::int64_t id : a.image_ids)
                if (auto r = c.store->image(id)) added.push_back(to_ui(*r));
            counts = to_ui(c.store->counts());
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        deliver([this, added, counts, error] {
            if (!error.isEmpty()) {
                emit failed(tr("The generated image was not saved: %1").arg(error));
                return;
            }
            updateCounts(counts);
            emit imagesAdded(added);
        });
    });
}

void StoreService::promptCounts(const QString& prompt, QObject* context,
                                std::function<void(const LabelCounts&)> done) {
    if (!writer_) return;
    QPointer<QObject> context_guard(context);
    post(writer_, [this, prompt, context_guard, done](StoreConnection& c) {
        LabelCounts counts;
        try {
            if (!c.store) return;
            storage::ImageQuery q;
            q.prompt_contains = prompt.toStdString();
            // prompt_contains is a substring match: count exact prompts only.
            storage::LabelCounts exact;
            for (const storage::ImageRecord& r : c.store->query_images(q)) {
                if (r.prompt != q.prompt_contains) continue;
                ++exact.images;
                if (r.label == storage::Label::Like) ++exact.liked;
                if (r.label == storage::Label::Dislike) ++exact.disliked;
            }
            counts = to_ui(exact);
        } catch (const std::exception&) {
            return;
        }
        deliver(context_guard, [counts, done] { done(counts); });
    });
}

void StoreService::planExport(QObject* context, std::function<void(const ExportPlan&, const QString&)> done) {
    if (!reader_) return;
    QPointer<QObject> context_guard(context);
    post(reader_, [this, context_guard, done](StoreConnection& c) {
        ExportPlan plan;
        QString error;
        try {
            if (!c.store) throw Error("the workspace is not open");
            const storage::LabelCounts n = c.store->counts();
            plan.liked = n.liked;
            plan.disliked = n.disliked;
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        deliver(context_guard, [plan, error, done] { done(plan, error); });
    });
}

void StoreService::exportDataset(const QString& out_dir, bool overwrite, QObject* context,
                                 std::function<void(qint64, qint64)> progress,
                                 std::function<void(const DatasetResult&)> done) {
    if (!reader_) return;
    QPointer<QObject> context_guard(context);
    cancel_dataset_->store(false);
    auto cancel = cancel_dataset_;
    post(reader_, [this, out_dir, overwrite, context_guard, progress, done, cancel](StoreConnection& c) {
        DatasetResult result;
        try {
            if (!c.store) throw Error("the workspace is not open");
            storage::ExportOptions options;
            options.overwrite = overwrite;
            qint64 last_report = -1;
            options.progress = [&](std::int64_t d, std::int64_t t) {
                // Every 1% is plenty for a progress bar and keeps the GUI's queue short.
                if (d == t || d - last_report >= qMax<qint64>(1, t / 100)) {
                    last_report = d;
                    deliver(context_guard, [progress, d, t] { progress(d, t); });
                }
                return !cancel->load();
            };
            const storage::ExportResult r = storage::export_dataset(*c.store, out_dir.toStdString(), options);
            result.ok = true;
            result.count = r.images;
            result.message = tr("Exported %1 images (%2 liked, %3 disliked) to %4")
                                 .arg(r.images)
                                 .arg(r.liked)
                                 .arg(r.disliked)
                                 .arg(QString::fromStdString(r.csv.string()));
        } catch (const Cancelled&) {
            result.cancelled = true;
            result.message = tr("Export cancelled: the folder was left as it was.");
        } catch (const std::exception& e) {
            result.message = tr("Export failed: %1").arg(QString::fromStdString(e.what()));
        }
        deliver(context_guard, [result, done] { done(result); });
    });
}

void StoreService::planImport(const QString& dataset_dir, QObject* context,
                              std::function<void(const ImportPlan&, const QString&)> done) {
    if (!reader_) return;
    QPointer<QObject> context_guard(context);
    post(reader_, [dataset_dir, context_guard, done, this](StoreConnection&) {
        // Reads the CSV only (no database): rows, label values, images present.
        ImportPlan plan;
        QString error;
        try {
            const std::filesystem::path dir = dataset_dir.toStdString();
            const std::filesystem::path csv = dir / storage::ImportOptions{}.csv_name;
            if (!std::filesystem::exists(csv))
                throw Error(csv.string() + ": not found; pick the folder that holds train_processed_v3.csv");
            storage::CsvReader reader(csv);
            std::vector<std::string> fields;
            if (!reader.next(fields)) throw Error(csv.string() + ": the file is empty");
            int file_col = -1, label_col = -1;
            for (int i = 0; i < int(fields.size()); ++i) {
                if (fields[i] == "file_path" || (file_col < 0 && fields[i] == "file_name")) file_col = i;
                if (fields[i] == "label" || (label_col < 0 && fields[i] == "split")) label_col = i;
            }
            if (file_col < 0) throw Error(csv.string() + ": missing column 'file_path' (or 'file_name')");
            if (label_col < 0) throw Error(csv.string() + ": missing column 'label' (or 'split')");
            while (reader.next(fields)) {
                ++plan.rows;
                if (label_col < int(fields.size())) ++plan.label_values[QString::fromStdString(fields[label_col])];
                if (file_col >= int(fields.size()) || !std::filesystem::is_regular_file(dir / fields[file_col]))
                    ++plan.missing_files;
            }
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        deliver(context_guard, [plan, error, done] { done(plan, error); });
    });
}

void StoreService::importDataset(const QString& dataset_dir, QObject* context,
                                 std::function<void(qint64, qint64)> progress,
                                 std::function<void(const DatasetResult&)> done) {
    if (!writer_) return;
    QPointer<QObject> context_guard(context);
    cancel_dataset_->store(false);
    auto cancel = cancel_dataset_;
    post(writer_, [this, dataset_dir, context_guard, progress, done, cancel, known = counts_](StoreConnection& c) {
        DatasetResult result;
        LabelCounts counts = known;
        try {
            if (!c.store) throw Error("the workspace is not open");
            storage::ImportOptions options;
            qint64 last_report = -1;
            options.progress = [&](std::uint64_t d, std::uint64_t t) {
                if (d == t || qint64(d) - last_report >= qMax<qint64>(1, qint64(t) / 100)) {
                    last_report = qint64(d);
                    deliver(context_guard, [progress, d, t] { progress(qint64(d), qint64(t)); });
                }
                return !cancel->load();
            };
            const storage::ImportReport r = storage::import_dataset(*c.store, dataset_dir.toStdString(), options);
            counts = to_ui(c.store->counts());
            result.ok = true;
            result.count = r.imported;
            result.message = tr("Imported %1 of %2 rows (%3 liked, %4 disliked).")
                                 .arg(r.imported)
                                 .arg(r.rows)
                                 .arg(r.liked)
                                 .arg(r.disliked);
            if (r.skipped > 0) {
                QStringList why;
                for (const auto& [reason, n] : r.skipped_by_reason)
                    why << tr("%1: %2").arg(QString::fromStdString(reason)).arg(n);
                result.message += " " + tr("Skipped %1 rows (%2). The images must stay in %3.")
                                            .arg(r.skipped)
                                            .arg(why.join(", "))
                                            .arg(QString::fromStdString(r.dataset_dir.string()));
            } else {
                result.message += " " + tr("The images are used in place: keep %1 where it is.")
                                            .arg(QString::fromStdString(r.dataset_dir.string()));
            }
        } catch (const Cancelled&) {
            result.cancelled = true;
            result.message = tr("Import cancelled: nothing was imported.");
        } catch (const std::exception& e) {
            result.message = tr("Import failed, nothing was imported: %1").arg(QString::fromStdString(e.what()));
        }
        deliver([this, counts, result] {
            if (result.ok) updateCounts(counts);
        });
        deliver(context_guard, [result, done] { done(result); });
    });
}

void StoreService::cancelDatasetJob() { cancel_dataset_->store(true); }

// ---------------------------------------------------------------- comparisons

namespace {

std::optional<std::string> opt_path(const QString& s) {
    if (s.isEmpty()) return std::nullopt;
    return s.toStdString();
}

std::int64_t side_model(storage::Store& store, const ComparisonSide& side) {
    return store.ensure_model(side.name.toStdString(), side.model_path.toStdString());
}

std::string session_settings_json(const ComparisonSession& s) {
    QJsonObject o;
    o["steps"] = s.steps;
    o["cfg"] = s.cfg;
    o["sampler"] = s.sampler;
    o["width"] = s.width;
    o["height"] = s.height;
    o["prompts"] = QJsonArray::fromStringList(s.prompts);
    QJsonArray seeds;
    for (qint64 seed : s.seeds) seeds.append(seed);
    o["seeds"] = seeds;
    return QJsonDocument(o).toJson(QJsonDocument::Compact).toStdString();
}

// Adds one rendered comparison image as a generation of its side (the PNG as rendered, with its
// parameters chunk), so labels made from votes carry the same provenance as generated images.
std::int64_t add_side_image(storage::Store& store, const ComparisonSession& s, const ComparisonSide& side,
                            const QString& prompt, qint64 seed, const QString& file) {
    QFile f(file);
    if (!f.open(QIODevice::ReadOnly)) throw Error(file.toStdString() + ": cannot read the comparison image");
    const QByteArray bytes = f.readAll();
    storage::GenerationInput g;
    g.prompt = prompt.toStdString();
    g.seed = seed;
    g.steps = s.steps;
    g.cfg = s.cfg;
    g.sampler = s.sampler.toStdString();
    g.width = s.width;
    g.height = s.height;
    g.model_id = side_model(store, side);
    g.checkpoint = opt_path(side.unet_path);
    storage::ImageInput in;
    in.encoded = std::string(bytes.constData(), static_cast<size_t>(bytes.size()));
    return store.add_generation(g, {in}).image_ids.at(0);
}

}  // namespace

void StoreService::startComparison(const ComparisonSession& session) {
    if (!writer_) return;
    post(writer_, [this, session](StoreConnection& c) {
        QString error;
        try {
            if (!c.store) return;
            storage::ComparisonInput in;
            in.id = session.id.toStdString();
            in.a_model_id = side_model(*c.store, session.a);
            in.b_model_id = side_model(*c.store, session.b);
            in.a_checkpoint = opt_path(session.a.unet_path);
            in.b_checkpoint = opt_path(session.b.unet_path);
            in.settings_json = session_settings_json(session);
            in.blind = session.blind;
            c.store->add_comparison(in);
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        if (!error.isEmpty()) deliver([this, error] { emit failed(tr("The comparison was not recorded: %1").arg(error)); });
    });
}

void StoreService::recordVote(const ComparisonSession& session, const ComparisonVoteRecord& vote, QObject* context,
                              std::function<void(const QString&)> done) {
    if (!writer_) return;
    QPointer<QObject> guard(context);
    post(writer_, [this, session, vote, guard, done, known = counts_](StoreConnection& c) {
        QString error;
        ImageRecords added;
        LabelCounts counts = known;
        try {
            if (!c.store) return;
            const std::int64_t image_a = add_side_image(*c.store, session, session.a, vote.prompt, vote.seed, vote.image_a);
            const std::int64_t image_b = add_side_image(*c.store, session, session.b, vote.prompt, vote.seed, vote.image_b);
            storage::ComparisonVoteInput v;
            v.compare_id = session.id.toStdString();
            v.prompt = vote.prompt.toStdString();
            v.seed = vote.seed;
            const std::int64_t model_a = side_model(*c.store, session.a);
            const std::int64_t model_b = side_model(*c.store, session.b);
            v.left_model_id = vote.a_on_left ? model_a : model_b;
            v.right_model_id = vote.a_on_left ? model_b : model_a;
            v.left_image_id = vote.a_on_left ? image_a : image_b;
            v.right_image_id = vote.a_on_left ? image_b : image_a;
            v.winner = vote.choice == VoteChoice::Left    ? storage::Winner::Left
                       : vote.choice == VoteChoice::Right ? storage::Winner::Right
                                                          : storage::Winner::Tie;
            c.store->add_vote(v);
            for (std::int64_t id : {image_a, image_b})
                if (auto r = c.store->image(id)) added.push_back(to_ui(*r));
            counts = to_ui(c.store->counts());
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        deliver([this, added, counts, error, guard, done] {
            if (error.isEmpty()) {
                emit imagesAdded(added);
                updateCounts(counts);
            } else {
                emit failed(tr("The vote was not saved: %1").arg(error));
            }
            if (guard && done) done(error);
        });
    });
}

void StoreService::applyVoteLabels(const QString& compare_id, QObject* context,
                                   std::function<void(qint64, const QString&)> done) {
    if (!writer_) return;
    QPointer<QObject> guard(context);
    post(writer_, [this, compare_id, guard, done, known = counts_](StoreConnection& c) {
        QString error;
        qint64 applied = 0;
        QVector<qint64> liked, disliked;
        LabelCounts counts = known;
        try {
            if (!c.store) return;
            const std::string id = compare_id.toStdString();
            // The images each pending vote will label, for the labelsChanged signals.
            for (const auto& v : c.store->votes(id)) {
                if (v.labels_applied_at || v.winner == storage::Winner::Tie || !v.left_image_id || !v.right_image_id)
                    continue;
                const bool left = v.winner == storage::Winner::Left;
                liked.push_back(left ? *v.left_image_id : *v.right_image_id);
                disliked.push_back(left ? *v.right_image_id : *v.left_image_id);
            }
            applied = c.store->apply_vote_labels(id).votes;
            counts = to_ui(c.store->counts());
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
            liked.clear();
            disliked.clear();
        }
        deliver([this, applied, liked, disliked, counts, error, guard, done] {
            if (error.isEmpty()) {
                if (!liked.isEmpty()) emit labelsChanged(liked, Label::Liked);
                if (!disliked.isEmpty()) emit labelsChanged(disliked, Label::Disliked);
                updateCounts(counts);
            } else {
                emit failed(tr("The votes were not turned into labels: %1").arg(error));
            }
            if (guard && done) done(applied, error);
        });
    });
}

}  // namespace kto::ui
