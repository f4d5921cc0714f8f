#pragma once
// The Compare area: two models or checkpoints (default: the base model against the newest
// checkpoint), a prompt list and seeds, rendered on the comparison worker's thread (cached on disk
// under the workspace, so reopening is instant) and shown three ways: side by side per prompt and
// seed, a swipe/toggle view of one pair, and a blind A/B round (sides shuffled per pair, Left /
// Right / Down keys, identities revealed at the end, B's running win rate with a 95% Wilson
// interval, ties counting half). Votes go to the workspace store; at the end they can be turned
// into labels (winner liked, loser disliked) for the next training round.
#include <QImage>
#include <QVector>
#include <QWidget>
#include <optional>

#include "ui/compare/blind_session.h"
#include "ui/store/comparison_records.h"
#include "ui/workers/comparison_worker.h"

class QAction;
class QComboBox;
class QDoubleSpinBox;
class QGridLayout;
class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;
class QTabWidget;
class QThread;

namespace kto::ui {

class ImageView;
class ModelCatalog;
class StoreService;
class SwipeView;

class ComparePanel : public QWidget {
    Q_OBJECT
public:
    enum View { SideBySideView, SwipeViewTab, BlindView };

    ComparePanel(ModelCatalog* catalog, StoreService* store, QWidget* parent = nullptr);
    ~ComparePanel() override;

    void setDevice(const QString& device) { device_ = device; }
    // Test hook: the seed that shuffles the next blind round (default: random).
    void setShuffleSeed(quint64 seed) { shuffle_seed_ = seed; }

    QComboBox* modelBoxA() const { return model_a_; }
    QComboBox* modelBoxB() const { return model_b_; }
    QPlainTextEdit* promptsEdit() const { return prompts_; }
    QSpinBox* seedsSpin() const { return seeds_; }
    QSpinBox* stepsSpin() const { return steps_; }
    QPushButton* renderButton() const { return render_button_; }
    QPushButton* applyLabelsButton() const { return apply_labels_; }
    QTabWidget* views() const { return views_; }
    QWidget* blindPage() const { return blind_page_; }
    QLabel* winRateLabel() const { return win_rate_; }
    QLabel* statusLabel() const { return status_; }
    QLabel* revealLabel() const { return reveal_; }
    QAction* voteLeftAction() const { return vote_left_; }
    QAction* voteRightAction() const { return vote_right_; }
    QAction* voteTieAction() const { return vote_tie_; }
    QAction* toggleAction() const { return toggle_; }
    SwipeView* swipeView() const { return swipe_; }
    ImageView* blindLeftView() const { return blind_left_; }
    ImageView* blindRightView() const { return blind_right_; }

    bool isRendering() const { return rendering_; }
    const ComparisonSession& session() const { return session_; }
    const ComparisonCells& cells() const { return cells_; }
    const BlindSession& blind() const { return blind_; }
    int votesSaved() const { return votes_saved_; }
    QImage image(int cell, int side) const;

public slots:
    void render();
    void cancel();
    void vote(kto::ui::VoteChoice choice);
    void applyLabels();

signals:
    void renderRequested(const kto::ui::ComparisonRequest& request);
    void comparisonReady(bool ok);    // a render finished (false: error or cancelled)
    void voteSaved(int saved);        // after each vote reached the store
    void blindFinished();             // every pair of the round voted
    void labelsApplied(qint64 votes); // votes turned into labels

private:
    void onCatalogReset();
    void pickDefaults();
    ComparisonSide side(QComboBox* box) const;
    void onProgress(quint64 id, int done, int total, const QString& text);
    void onImage(quint64 id, int side, int cell, const QImage& image);
    void onFinished(quint64 id, const ComparisonSession& session, const ComparisonCells& cells, bool cancelled,
                    const QString& error);
    void buildGrid(int count);
    void showSwipeCell(int index);
    void showBlindPair();
    void updateWinRate();
    void setRendering(bool on);

    ModelCatalog* catalog_;
    StoreService* store_;
    QThread* thread_ = nullptr;
    ComparisonWorker* worker_ = nullptr;
    QString device_ = "cpu";
    std::optional<quint64> shuffle_seed_;
    bool user_picked_ = false;

    QComboBox* model_a_ = nullptr;
    QComboBox* model_b_ = nullptr;
    QPlainTextEdit* prompts_ = nullptr;
    QSpinBox* seeds_ = nullptr;
    QSpinBox* first_seed_ = nullptr;
    QSpinBox* steps_ = nullptr;
    QDoubleSpinBox* cfg_ = nullptr;
    QPushButton* render_button_ = nullptr;
    QPushButton* cancel_button_ = nullptr;
    QProgressBar* progress_ = nullptr;
    QLabel* status_ = nullptr;
    QTabWidget* views_ = nullptr;

    QWidget* grid_widget_ = nullptr;
    QGridLayout* grid_ = nullptr;
    QLabel* header_a_ = nullptr;
    QLabel* header_b_ = nullptr;
    QVector<ImageView*> grid_views_;  // 2 per cell: A, B

    QComboBox* swipe_cell_ = nullptr;
    SwipeView* swipe_ = nullptr;
    QSlider* swipe_slider_ = nullptr;
    QAction* toggle_ = nullptr;

    QWidget* blind_page_ = nullptr;
    QLabel* blind_progress_ = nullptr;
    QLabel* blind_prompt_ = nullptr;
    ImageView* blind_left_ = nullptr;
    ImageView* blind_right_ = nullptr;
    QLabel* win_rate_ = nullptr;
    QLabel* reveal_ = nullptr;
    QPushButton* apply_labels_ = nullptr;
    QAction* vote_left_ = nullptr;
    QAction* vote_right_ = nullptr;
    QAction* vote_tie_ = nullptr;

    quint64 request_id_ = 0;
    bool rendering_ = false;
    ComparisonSession pending_;   // the session being rendered
    ComparisonSession session_;   // the session shown (after its render finished)
    ComparisonCells cells_;
    QVector<QImage> images_[2];
    BlindSession blind_;
    int votes_saved_ = 0;
};

}  // namespace kto::ui
