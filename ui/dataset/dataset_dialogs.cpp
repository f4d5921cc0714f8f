#include "ui/dataset/dataset_dialogs.h"

#include <QDialogButtonBox>
#include <QDir>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QVBoxLayout>

#include "ui/common/dialogs.h"

namespace kto::ui {

DatasetJobDialog::DatasetJobDialog(StoreService* store, QWidget* parent) : QDialog(parent), store_(store) {
    path_ = new QLineEdit(this);
    path_->setObjectName("datasetPath");
    auto* browse_button = new QPushButton(tr("Browse…"), this);
    browse_button->setObjectName("browseButton");
    connect(browse_button, &QPushButton::clicked, this, [this] { browse(); });
    connect(path_, &QLineEdit::editingFinished, this, [this] { plan(); });
    auto* row = new QHBoxLayout;
    row->addWidget(path_, 1);
    row->addWidget(browse_button);
    path_label_ = new QLabel(this);

    plan_ = new QLabel(this);
    plan_->setObjectName("datasetPlan");
    plan_->setWordWrap(true);
    progress_ = new QProgressBar(this);
    progress_->setObjectName("datasetProgress");
    progress_->setRange(0, 1);
    progress_->setValue(0);
    result_ = new QLabel(this);
    result_->setObjectName("datasetResult");
    result_->setWordWrap(true);
    result_->setTextInteractionFlags(Qt::TextSelectableByMouse);

    buttons_ = new QDialogButtonBox(QDialogButtonBox::Close, this);
    start_ = buttons_->addButton(QString(), QDialogButtonBox::AcceptRole);
    start_->setObjectName("startButton");
    start_->setEnabled(false);
    disconnect(buttons_, nullptr, this, nullptr);
    connect(start_, &QPushButton::clicked, this, [this] { start(); });
    connect(buttons_, &QDialogButtonBox::rejected, this, &DatasetJobDialog::reject);

    auto* layout = new QVBoxLayout(this);
    layout->addWidget(path_label_);
    layout->addLayout(row);
    layout->addWidget(plan_);
    layout->addWidget(progress_);
    layout->addWidget(result_);
    layout->addWidget(buttons_);
    setMinimumWidth(520);
}

void DatasetJobDialog::setPath(const QString& path) {
    path_->setText(path);
    plan();
}

void DatasetJobDialog::setRunning(bool running) {
    running_ = running;
    start_->setEnabled(!running && plan_ok_);
    path_->setEnabled(!running);
    buttons_->button(QDialogButtonBox::Close)->setText(running ? tr("Cancel") : tr("Close"));
}

void DatasetJobDialog::onProgress(qint64 done, qint64 total) {
    progress_->setRange(0, 1000);  // per mille: totals may be CSV bytes beyond int range
    progress_->setValue(total > 0 ? int(done * 1000 / total) : 0);
}

void DatasetJobDialog::onDone(const DatasetResult& r) {
    succeeded_ = r.ok;
    plan_ok_ = false;  // plan again before another run
    setRunning(false);
    result_->setText(r.message);
    if (r.ok) progress_->setValue(progress_->maximum());
    emit jobFinished(r.ok);
}

void DatasetJobDialog::reject() {
    if (running_) {  // Cancel: the job stops between rows and reports back
        store_->cancelDatasetJob();
        result_->setText(tr("Cancelling…"));
        return;
    }
    if (succeeded_) {
        accept();
        return;
    }
    QDialog::reject();
}

// --- export

ExportDialog::ExportDialog(StoreService* store, QWidget* parent) : DatasetJobDialog(store, parent) {
    setObjectName("exportDialog");
    setWindowTitle(tr("Export dataset"));
    path_label_->setText(tr("Folder to write train_processed_v3.csv and train/ into:"));
    start_->setText(tr("Export"));
    plan();
}

void ExportDialog::browse() {
    const QString dir = FileDialog::getExistingDirectory(this, tr("Export the dataset into"), path_->text());
    if (!dir.isEmpty()) setPath(dir);
}

void ExportDialog::plan() {
    plan_ok_ = false;
    start_->setEnabled(false);
    store_->planExport(this, [this](const ExportPlan& p, const QString& error) {
        plan_counts_ = p;
        if (!error.isEmpty()) {
            plan_->setText(tr("Cannot read the labels: %1").arg(error));
            return;
        }
        if (p.liked + p.disliked == 0) {
            plan_->setText(tr("Nothing to export yet: no image is liked or disliked. Rate images in the Rate "
                              "area first (L like, D dislike)."));
        } else {
            plan_->setText(tr("Will export %1 images: %2 liked, %3 disliked.")
                               .arg(p.liked + p.disliked)
                               .arg(p.liked)
                               .arg(p.disliked));
            plan_ok_ = !path_->text().trimmed().isEmpty();
            if (!plan_ok_) plan_->setText(plan_->text() + " " + tr("Choose a folder to write them to."));
        }
        start_->setEnabled(plan_ok_ && !running_);
        emit planned();
    });
}

void ExportDialog::start() {
    const QString dir = QDir(path_->text().trimmed()).absolutePath();
    if (!plan_ok_ || running_) return;
    bool overwrite = false;
    if (QFileInfo(dir).isDir() && !QDir(dir).isEmpty()) {
        if (MessageBox::question(this, tr("Replace folder"),
                                 tr("%1 is not empty. Replace its contents with the exported dataset?").arg(dir)) !=
            QMessageBox::Yes)
            return;
        overwrite = true;
    }
    setRunning(true);
    result_->setText(tr("Exporting…"));
    store_->exportDataset(dir, overwrite, this, [this](qint64 d, qint64 t) { onProgress(d, t); },
                          [this](const DatasetResult& r) { onDone(r); });
}

}  // namespace kto::ui

namespace kto::ui {

// --- import

ImportDialog::ImportDialog(StoreService* store, QWidget* parent) : DatasetJobDialog(store, parent) {
    setObjectName("importDialog");
    setWindowTitle(tr("Import dataset"));
    path_label_->setText(tr("Dataset folder (holding train_processed_v3.csv and its images):"));
    start_->setText(tr("Import"));
    plan_->setText(tr("Choose a dataset folder."));
}

void ImportDialog::browse() {
    const QString dir = FileDialog::getExistingDirectory(this, tr("Import a dataset folder"), path_->text());
    if (!dir.isEmpty()) setPath(dir);
}

void ImportDialog::plan() {
    plan_ok_ = false;
    start_->setEnabled(false);
    const QString dir = path_->text().trimmed();
    if (dir.isEmpty()) return;
    store_->planImport(dir, this, [this, dir](const ImportPlan& p, const QString& error) {
        if (path_->text().trimmed() != dir) return;  // the user picked another folder meanwhile
        if (!error.isEmpty()) {
            plan_->setText(tr("Cannot import this folder: %1").arg(error));
            emit planned();
            return;
        }
        QStringList values;
        for (auto it = p.label_values.begin(); it != p.label_values.end(); ++it)
            values << tr("%1 %2").arg(it.value()).arg(it.key());
        QString text = tr("Will import %1 rows (%2).").arg(p.rows).arg(values.join(", "));
        if (p.missing_files > 0)
            text += " " + tr("Rows naming an image that is not in the folder (skipped): %1.").arg(p.missing_files);
        plan_->setText(text);
        plan_ok_ = p.rows > p.missing_files;
        start_->setEnabled(plan_ok_ && !running_);
        emit planned();
    });
}

void ImportDialog::start() {
    if (!plan_ok_ || running_) return;
    setRunning(true);
    result_->setText(tr("Importing…"));
    store_->importDataset(path_->text().trimmed(), this, [this](qint64 d, qint64 t) { onProgress(d, t); },
                          [this](const DatasetResult& r) { onDone(r); });
}

}  // namespace kto::ui
