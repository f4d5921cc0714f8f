#pragma once
// One image with its full provenance; "Regenerate" hands the settings back to the Generate form.
#include <QDialog>

#include "ui/store/records.h"

namespace kto::ui {

class ImageDetailsDialog : public QDialog {
    Q_OBJECT
public:
    ImageDetailsDialog(const ImageRecord& record, QWidget* parent = nullptr);
    const ImageRecord& record() const { return record_; }
    QString provenanceText() const;  // what the form shows, as plain text (copyable, testable)

signals:
    void regenerateRequested(const kto::ui::ImageRecord& record);

private:
    ImageRecord record_;
};

}  // namespace kto::ui
