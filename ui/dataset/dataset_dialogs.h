#pragma once
// Export and import of training sets (train_processed_v3.csv + images) over the storage API:
// each dialog shows what it will do (counts) before acting, a progress bar and Cancel while acting,
// and errors in words the user can act on. Non-blocking: open() them, or exec() from a menu.
#include <QDialog>

#include "ui/store/store_service.h"

class QCheckBox;
class QDialogButtonBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;

namespace kto::ui {

class DatasetJobDialog : public QDialog {
    Q_OBJECT
public:
    QLineEdit* pathEdit() const { return path_; }
    QPushButton* startButton() const { return start_; }
    QLabel* planLabel() const { return plan_; }
    QLabel* resultLabel() const { return result_; }
    QProgressBar* progressBar() const { return progress_; }
    bool running() const { return running_; }
    bool succeeded() const { return succeeded_; }

    void setPath(const QString& path);
    virtual void start() = 0;

signals:
    void planned();                  // the counts are shown
    void jobFinished(bool ok);       // the job ended (result label says how)

protected:
    DatasetJobDialog(StoreService* store, QWidget* parent);
    virtual void browse() = 0;
    virtual void plan() = 0;
    void setRunning(bool running);
    void onProgress(qint64 done, qint64 total);
    void onDone(const DatasetResult& result);
    void reject() override;

    StoreService* store_;
    QLineEdit* path_;
    QLabel* plan_;
    QProgressBar* progress_;
    QLabel* result_;
    QPushButton* start_;
    QDialogButtonBox* buttons_;
    QLabel* path_label_;
    bool running_ = false;
    bool succeeded_ = false;
    bool plan_ok_ = false;
};

class ExportDialog : public DatasetJobDialog {
    Q_OBJECT
public:
    ExportDialog(StoreService* store, QWidget* parent = nullptr);
    void start() override;

private:
    void browse() override;
    void plan() override;
    ExportPlan plan_counts_;
};

class ImportDialog : public DatasetJobDialog {
    Q_OBJECT
public:
    ImportDialog(StoreService* store, QWidget* parent = nullptr);
    void start() override;

private:
    void browse() override;
    void plan() override;
};

}  // namespace kto::ui
