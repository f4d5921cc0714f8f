#pragma once
// The models a user can generate with: the built-in demo model, model folders the user added, and
// checkpoints found under the workspace's runs/ folder (finished or still training).
#include <QAbstractListModel>
#include <QStringList>
#include <QVector>

namespace kto::ui {

struct ModelEntry {
    enum class Kind { Demo, Folder, Checkpoint };
    Kind kind = Kind::Folder;
    QString name;       // what the picker shows and the store records as the model name
    QString path;       // a diffusers folder (model_index.json) holding the whole model
    // For a checkpoint on a base model (`path`): its unet/ folder, or its LoRA file
    // (pytorch_lora_weights.safetensors; see isLoraFile).
    QString unet_path;
};

// A checkpoint path naming a LoRA file rather than a unet/ folder.
bool isLoraFile(const QString& checkpoint_path);

class ModelCatalog : public QAbstractListModel {
    Q_OBJECT
public:
    enum Role { PathRole = Qt::UserRole + 1, UnetPathRole, KindRole, NameRole };
    explicit ModelCatalog(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;

    // Rescans: `base_folders` are the demo model and user folders (missing ones are skipped),
    // `runs_dir` is the workspace's runs/ folder.
    void rescan(const QString& demo_folder, const QStringList& base_folders, const QString& runs_dir);
    const ModelEntry* entry(int row) const;
    int rowOfPath(const QString& path, const QString& unet_path = {}) const;
    int rowOfName(const QString& name) const;

    static bool isModelFolder(const QString& dir);  // has model_index.json

private:
    QVector<ModelEntry> entries_;
};

}  // namespace kto::ui
