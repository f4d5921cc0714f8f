#pragma once
// The Gallery area: filters over a lazily paged thumbnail grid, multi-select relabel/delete,
// and a details view with provenance and "Regenerate".
#include <QWidget>

#include "ui/store/records.h"

class QAction;
class QComboBox;
class QLabel;
class QLineEdit;
class QListView;
class QTimer;

namespace kto::ui {

class GalleryModel;
class StoreService;
class ThumbnailCache;

class GalleryPanel : public QWidget {
    Q_OBJECT
public:
    GalleryPanel(StoreService* store, QWidget* parent = nullptr);

    GalleryModel* model() const { return model_; }
    QListView* view() const { return view_; }
    QLineEdit* promptFilter() const { return prompt_filter_; }
    QComboBox* labelFilter() const { return label_filter_; }
    QComboBox* modelFilter() const { return model_filter_; }
    QComboBox* dateFilter() const { return date_filter_; }
    QVector<qint64> selectedImageIds() const;

    QAction* likeAction() const { return like_; }
    QAction* dislikeAction() const { return dislike_; }
    QAction* clearAction() const { return clear_; }
    QAction* deleteAction() const { return delete_; }
    QAction* openAction() const { return open_; }
    QAction* findAction() const { return find_; }

    void reload();               // after the workspace changed
    void applyFilterNow();       // skips the typing debounce
    GalleryFilter currentFilter() const;

signals:
    void regenerateRequested(const kto::ui::ImageRecord& record);
    void openedDetails(QWidget* dialog);  // tests reach the dialog through this

private:
    void relabelSelected(Label label);
    void deleteSelected();
    void openCurrent();
    void refreshModels();
    void updateSummary();

    StoreService* store_;
    ThumbnailCache* thumbnails_;
    GalleryModel* model_;
    QListView* view_;
    QComboBox* label_filter_;
    QLineEdit* prompt_filter_;
    QComboBox* model_filter_;
    QComboBox* date_filter_;
    QLabel* summary_;
    QTimer* debounce_;
    QAction* like_;
    QAction* dislike_;
    QAction* clear_;
    QAction* delete_;
    QAction* open_;
    QAction* find_;
};

}  // namespace kto::ui
