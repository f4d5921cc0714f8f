#include "ui/generate/model_catalog.h"

#include <QDir>
#include <QDirIterator>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>

namespace kto::ui {

ModelCatalog::ModelCatalog(QObject* parent) : QAbstractListModel(parent) {}

int ModelCatalog::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : entries_.size(); }

QVariant ModelCatalog::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
    const ModelEntry& e = entries_[index.row()];
    switch (role) {
        case Qt::DisplayRole:
            switch (e.kind) {
                case ModelEntry::Kind::Demo: return tr("%1 (built-in demo)").arg(e.name);
                case ModelEntry::Kind::Checkpoint: return tr("%1 (checkpoint)").arg(e.name);
                case ModelEntry::Kind::Folder: return e.name;
            }
            return e.name;
        case Qt::ToolTipRole: return e.unet_path.isEmpty() ? e.path : e.unet_path + "\n" + tr("on %1").arg(e.path);
        case PathRole: return e.path;
        case UnetPathRole: return e.unet_path;
        case KindRole: return static_cast<int>(e.kind);
        case NameRole: return e.name;
        default: return {};
    }
}

bool isLoraFile(const QString& checkpoint_path) {
    return checkpoint_path.endsWith(".safetensors", Qt::CaseInsensitive);
}

bool ModelCatalog::isModelFolder(const QString& dir) { return QFileInfo::exists(dir + "/model_index.json"); }

void ModelCatalog::rescan(const QString& demo_folder, const QStringList& base_folders, const QString& runs_dir) {
    QVector<ModelEntry> found;
    QStringList seen;
    auto add_base = [&](const QString& folder, ModelEntry::Kind kind) {
        const QString path = QDir(folder).absolutePath();
        if (folder.isEmpty() || seen.contains(path) || !isModelFolder(path)) return;
        seen << path;
        found.push_back({kind, QDir(path).dirName(), path, {}});
    };
    add_base(demo_folder, ModelEntry::Kind::Demo);
    for (const QString& f : base_folders) add_base(f, ModelEntry::Kind::Folder);

    // Checkpoints: runs/<run>/**/ holding a full model (model_index.json) or a UNet (unet/config.json).
    // A UNet-only checkpoint runs on its run's base model, named in <run>/base_model.txt (the app's
    // runs) or config.json's "model" (every TrainingJob run, the CLI's too); without either the base
    // is unknown and the checkpoint is not offered. LoRA checkpoints (pytorch_lora_weights.safetensors)
    // run on the same base with their adapters attached.
    if (!runs_dir.isEmpty() && QFileInfo(runs_dir).isDir()) {
        const QStringList runs = QDir(runs_dir).entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name);
        for (const QString& run : runs) {
            const QString run_dir = runs_dir + "/" + run;
            QString base;
            QFile base_file(run_dir + "/base_model.txt");
            if (base_file.open(QIODevice::ReadOnly)) base = QString::fromUtf8(base_file.readAll()).trimmed();
            if (base.isEmpty()) {
                QFile config(run_dir + "/config.json");
                if (config.open(QIODevice::ReadOnly))
                    base = QJsonDocument::fromJson(config.readAll()).object().value("model").toString();
            }
            QDirIterator it(run_dir, QDir::Dirs | QDir::NoDotAndDotDot, QDirIterator::Subdirectories);
            QStringList dirs;
            while (it.hasNext()) dirs << it.next();
            dirs.sort();
            for (const QString& d : dirs) {
                const QString rel = QDir(runs_dir).relativeFilePath(d);
                if (rel.count('/') > 3) continue;
                if (isModelFolder(d)) {
                    found.push_back({ModelEntry::Kind::Checkpoint, rel, d, {}});
                } else if (QFileInfo::exists(d + "/unet/config.json") && !base.isEmpty()) {
                    found.push_back({ModelEntry::Kind::Checkpoint, rel, base, d + "/unet"});
                } else if (QFileInfo::exists(d + "/pytorch_lora_weights.safetensors") && !base.isEmpty()) {
                    found.push_back({ModelEntry::Kind::Checkpoint, rel + " (LoRA)", base,
                                     d + "/pytorch_lora_weights.safetensors"});
                }
            }
        }
    }
    beginResetModel();
    entries_ = found;
    endResetModel();
}

const ModelEntry* ModelCatalog::entry(int row) const {
    return row >= 0 && row < entries_.size() ? &entries_[row] : nullptr;
}

int ModelCatalog::rowOfPath(const QString& path, const QString& unet_path) const {
    for (int i = 0; i < entries_.size(); ++i)
        if (entries_[i].path == path && entries_[i].unet_path == unet_path) return i;
    return -1;
}

int ModelCatalog::rowOfName(const QString& name) const {
    for (int i = 0; i < entries_.size(); ++i)
        if (entries_[i].name == name) return i;
    return -1;
}

}  // namespace kto::ui
