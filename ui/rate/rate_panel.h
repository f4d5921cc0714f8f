#pragma once
// The Rate area: one large image with its prompt; Like (L), Dislike (D), Skip (S), Undo (Ctrl+Z),
// Next unlabelled (N). Rating shows the next image at once: the label goes to the store's writer
// thread and the counters follow when it has been written.
#include <QHash>
#include <QSet>
#include <QWidget>
#include <optional>

#include "ui/store/records.h"

class QAction;
class QLabel;
class QPushButton;

namespace kto::ui {

class ImageView;
class StoreService;

class RatePanel : public QWidget {
    Q_OBJECT
public:
    RatePanel(StoreService* store, QWidget* parent = nullptr);

    QAction* likeAction() const { return like_; }
    QAction* dislikeAction() const { return dislike_; }
    QAction* skipAction() const { return skip_; }
    QAction* undoAction() const { return undo_; }
    QAction* nextAction() const { return next_; }

    // The image on screen (empty when there is nothing to rate).
    std::optional<ImageRecord> current() const { return current_; }
    int queued() const { return queue_.size(); }
    QString countersText() const;
    QString promptBalanceText() const;

    // Called when the area becomes visible and when the workspace changes.
    void activate();
    void reset();

public slots:
    void like() { rate(Label::Liked); }
    void dislike() { rate(Label::Disliked); }
    void skip();
    void undo();
    void nextUnlabelled();

signals:
    void rated(qint64 image_id, kto::ui::Label label);

private:
    struct UndoStep {
        ImageRecord record;  // as it was before the rating
        Label applied;
    };
    void rate(Label label);
    void showNext();
    void show(const ImageRecord& r);
    void refill();
    void prefetchImages();
    void refreshPromptCounts();
    void updateCounters();
    void updateButtons();

    StoreService* store_;
    ImageView* view_;
    QLabel* prompt_;
    QLabel* info_;
    QLabel* counters_;
    QLabel* balance_;
    QPushButton* like_button_;
    QPushButton* dislike_button_;
    QAction* like_;
    QAction* dislike_;
    QAction* skip_;
    QAction* undo_;
    QAction* next_;

    ImageRecords queue_;
    std::optional<ImageRecord> current_;
    QVector<UndoStep> undo_stack_;
    QSet<qint64> seen_;           // rated or skipped this session: not offered again by refills
    QHash<qint64, QImage> images_;  // decoded ahead of time off the GUI thread
    bool fetching_ = false;
    bool exhausted_ = false;
    LabelCounts prompt_counts_;
    QString prompt_counts_for_;
    quint64 refill_token_ = 0;
};

}  // namespace kto::ui
