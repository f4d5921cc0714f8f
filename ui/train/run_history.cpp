#include "ui/train/run_history.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QPointer>
#include <QRegularExpression>
#include <QtConcurrent/QtConcurrentRun>
#include <algorithm>
#include <cmath>
#include <limits>

namespace kto::ui {

namespace {

QJsonObject read_json(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    return QJsonDocument::fromJson(f.readAll()).object();
}

double number(const QJsonObject& o, const char* key) {
    const QJsonValue v = o.value(QLatin1String(key));
    return v.isDouble() ? v.toDouble() : std::numeric_limits<double>::quiet_NaN();
}

// "step-N" -> N, or -1.
qint64 step_of(const QString& name) {
    if (!name.startsWith("step-")) return -1;
    bool ok = false;
    const qint64 n = name.mid(5).toLongLong(&ok);
    return ok ? n : -1;
}

QVector<QPair<qint64, QString>> step_dirs(const QString& root) {
    QVector<QPair<qint64, QString>> out;
    for (const QFileInfo& fi : QDir(root).entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot)) {
        const qint64 n = step_of(fi.fileName());
        if (n >= 0) out.push_back({n, fi.absoluteFilePath()});
    }
    std::sort(out.begin(), out.end());
    return out;
}

// The last complete line of metrics.jsonl, read from the end of the file (runs can be long).
qint64 last_metrics_step(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return 0;
    const qint64 tail = std::min<qint64>(f.size(), 4096);
    f.seek(f.size() - tail);
    const QList<QByteArray> lines = f.read(tail).split('\n');
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
        const QJsonObject o = QJsonDocument::fromJson(*it).object();
        if (o.contains("step")) return o.value("step").toInteger();
    }
    return 0;
}

}  // namespace

QStringList runCheckpoints(const QString& run_dir) {
    QStringList out;
    for (const auto& [step, dir] : step_dirs(run_dir + "/checkpoints"))
        if (QFileInfo::exists(dir + "/trainer_state.json")) out << dir;
    return out;
}

RunSummary readRunSummary(const QString& run_dir) {
    RunSummary r;
    const QJsonObject run = read_json(run_dir + "/run.json");
    const QJsonObject config = read_json(run_dir + "/config.json");
    if (run.isEmpty() && config.isEmpty()) return r;
    r.id = QFileInfo(run_dir).fileName();
    r.dir = QFileInfo(run_dir).absoluteFilePath();
    r.status = run.value("status").toString();
    r.model_path = run.value("model").toString(config.value("model").toString());
    r.model_name = run.value("model_name").toString(QFileInfo(r.model_path).fileName());
    r.preset = run.value("preset").toString();
    r.started = run.value("started").toString();
    r.finished = run.value("finished").toString();
    r.error = run.value("error").toString();
    r.options = config.value("options").toObject();
    r.total_steps = r.options.value("steps").toInteger();
    const QJsonObject data = config.value("data").toObject();
    r.liked = data.value("liked").toInteger();
    r.disliked = data.value("disliked").toInteger();
    r.skipped = data.value("skipped").toInteger();
    r.steps_done = last_metrics_step(run_dir + "/metrics.jsonl");
    r.checkpoints = runCheckpoints(run_dir);
    if (r.status.isEmpty())  // a run made by the CLI: only the job's files
        r.status = r.total_steps > 0 && r.steps_done >= r.total_steps ? "finished" : "stopped";
    return r;
}

QVector<RunSummary> readRuns(const QString& runs_dir) {
    QVector<RunSummary> out;
    const QStringList names = QDir(runs_dir).entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name | QDir::Reversed);
    for (const QString& name : names) {
        RunSummary r = readRunSummary(runs_dir + "/" + name);
        if (!r.id.isEmpty()) out.push_back(std::move(r));
    }
    return out;
}

QVector<TrainingStep> readRunMetrics(const QString& run_dir) {
    QVector<TrainingStep> out;
    QFile f(run_dir + "/metrics.jsonl");
    if (!f.open(QIODevice::ReadOnly)) return out;
    while (!f.atEnd()) {
        const QJsonObject o = QJsonDocument::fromJson(f.readLine()).object();
        if (!o.contains("step")) continue;
        TrainingStep s;
        s.step = o.value("step").toInteger();
        s.total_steps = o.value("total_steps").toInteger();
        s.loss = number(o, "loss");
        s.reward_margin = number(o, "reward_margin");
        s.kl = number(o, "kl");
        s.grad_norm = number(o, "grad_norm");
        s.lr = number(o, "lr");
        s.samples_per_second = number(o, "samples_per_second");
        s.eta_seconds = number(o, "eta_seconds");
        s.elapsed_seconds = number(o, "elapsed_seconds");
        out.push_back(s);
    }
    return out;
}

QMap<qint64, PreviewTiles> readRunPreviews(const QString& run_dir, const QJsonObject& options) {
    QMap<qint64, PreviewTiles> out;
    const QJsonArray prompts = options.value("probe_prompts").toArray();
    const QJsonArray seeds = options.value("probe_seeds").toArray();
    static const QRegularExpression file_re("^p(\\d+)-s(-?\\d+)\\.png$");
    for (const auto& [step, dir] : step_dirs(run_dir + "/previews")) {
        PreviewTiles tiles;
        // In the job's order: prompt by prompt, seed by seed.
        for (int p = 0; p < prompts.size(); ++p)
            for (const QJsonValue& s : seeds) {
                const qint64 seed = s.toInteger();
                const QString path = QStringLiteral("%1/p%2-s%3.png").arg(dir).arg(p).arg(seed);
                QImage img(path);
                if (!img.isNull()) tiles.push_back({prompts[p].toString(), seed, path, img});
            }
        if (tiles.isEmpty()) {  // options unknown: whatever the folder holds
            for (const QString& name : QDir(dir).entryList({"p*-s*.png"}, QDir::Files, QDir::Name)) {
                const auto m = file_re.match(name);
                if (!m.hasMatch()) continue;
                QImage img(dir + "/" + name);
                if (!img.isNull())
                    tiles.push_back({QObject::tr("prompt %1").arg(m.captured(1).toInt() + 1), m.captured(2).toLongLong(),
                                     dir + "/" + name, img});
            }
        }
        if (!tiles.isEmpty()) out.insert(step, tiles);
    }
    return out;
}

RunHistoryModel::RunHistoryModel(QObject* parent) : QAbstractTableModel(parent) {}

int RunHistoryModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : runs_.size(); }

int RunHistoryModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant RunHistoryModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
    switch (section) {
        case RunColumn: return tr("Run");
        case StatusColumn: return tr("Status");
        case ModelColumn: return tr("Base model");
        case StepsColumn: return tr("Steps");
        case DataColumn: return tr("Training images");
        case CheckpointsColumn: return tr("Checkpoints");
        default: return {};
    }
}

QVariant RunHistoryModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
    const RunSummary& r = runs_[index.row()];
    if (role == DirRole) return r.dir;
    if (role == Qt::ToolTipRole) {
        QString tip = QDir::toNativeSeparators(r.dir);
        if (!r.error.isEmpty()) tip += "\n" + r.error;
        if (!r.checkpoints.isEmpty()) tip += "\n" + tr("latest checkpoint: %1").arg(r.checkpoints.last());
        return tip;
    }
    if (role != Qt::DisplayRole) return {};
    switch (index.column()) {
        case RunColumn: return r.id;
        case StatusColumn:
            if (r.status == "running" && r.dir != live_dir_) return tr("interrupted");
            return r.status;
        case ModelColumn: return r.model_name;
        case StepsColumn:
            return r.total_steps > 0 ? tr("%1 / %2").arg(r.steps_done).arg(r.total_steps) : QString::number(r.steps_done);
        case DataColumn:
            if (r.liked + r.disliked == 0) return QString();
            return r.skipped ? tr("%1 liked · %2 disliked · %3 skipped").arg(r.liked).arg(r.disliked).arg(r.skipped)
                             : tr("%1 liked · %2 disliked").arg(r.liked).arg(r.disliked);
        case CheckpointsColumn:
            if (r.checkpoints.isEmpty()) return tr("none");
            return tr("%1 (latest %2)").arg(r.checkpoints.size()).arg(QFileInfo(r.checkpoints.last()).fileName());
        default: return {};
    }
}

void RunHistoryModel::reload(const QString& runs_dir) {
    const quint64 generation = ++generation_;
    ++pending_;
    auto* watcher = new QFutureWatcher<QVector<RunSummary>>(this);
    connect(watcher, &QFutureWatcher<QVector<RunSummary>>::finished, this, [this, watcher, generation] {
        watcher->deleteLater();
        --pending_;
        if (generation != generation_) return;  // a newer scan is on its way
        beginResetModel();
        runs_ = watcher->result();
        endResetModel();
        emit reloaded();
    });
    watcher->setFuture(QtConcurrent::run([runs_dir] { return readRuns(runs_dir); }));
}

void RunHistoryModel::setLiveRun(const QString& run_dir) {
    live_dir_ = run_dir.isEmpty() ? QString() : QFileInfo(run_dir).absoluteFilePath();
    if (!runs_.isEmpty()) emit dataChanged(index(0, StatusColumn), index(runs_.size() - 1, StatusColumn));
}

const RunSummary* RunHistoryModel::run(int row) const { return row >= 0 && row < runs_.size() ? &runs_[row] : nullptr; }

int RunHistoryModel::rowOfDir(const QString& run_dir) const {
    const QString abs = QFileInfo(run_dir).absoluteFilePath();
    for (int i = 0; i < runs_.size(); ++i)
        if (runs_[i].dir == abs) return i;
    return -1;
}

}  // namespace kto::ui
