#include "ui/compare/compare_panel.h"

#include <QAction>
#include <QComboBox>
#include <QDateTime>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QRandomGenerator>
#include <QScrollArea>
#include <QSlider>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTabWidget>
#include <QThread>
#include <QVBoxLayout>
#include <algorithm>

#include "ui/common/image_view.h"
#include "ui/compare/swipe_view.h"
#include "ui/generate/model_catalog.h"
#include "ui/store/store_service.h"

namespace kto::ui {

namespace {

constexpr int kThumb = 160;

const char* kDefaultPrompts =
    "a large red circle on a blue background\n"
    "a small yellow square on a green background\n";

QString percent(double v) { return QString::number(100.0 * v, 'f', 0) + "%"; }

// When a checkpoint was written: its UNet's (or whole model's) folder time.
QDateTime checkpoint_time(const ModelEntry& e) {
    return QFileInfo(e.unet_path.isEmpty() ? e.path : e.unet_path).lastModified();
}

}  // namespace

ComparePanel::ComparePanel(ModelCatalog* catalog, StoreService* store, QWidget* parent)
    : QWidget(parent), catalog_(catalog), store_(store) {
    setObjectName("comparePanel");
    qRegisterMetaType<kto::ui::ComparisonRequest>();
    qRegisterMetaType<kto::ui::ComparisonSession>();
    qRegisterMetaType<kto::ui::ComparisonCells>();

    // The comparison engine: its own thread for the life of the panel (never the GUI thread).
    thread_ = new QThread(this);
    thread_->setObjectName("kto-compare");
    worker_ = new ComparisonWorker;
    worker_->moveToThread(thread_);
    connect(thread_, &QThread::finished, worker_, &QObject::deleteLater);
    connect(this, &ComparePanel::renderRequested, worker_, &ComparisonWorker::render, Qt::QueuedConnection);
    connect(worker_, &ComparisonWorker::progress, this, &ComparePanel::onProgress);
    connect(worker_, &ComparisonWorker::imageReady, this, &ComparePanel::onImage);
    connect(worker_, &ComparisonWorker::finished, this, &ComparePanel::onFinished);
    thread_->start();

    // --- set-up column
    model_a_ = new QComboBox(this);
    model_a_->setObjectName("compareModelA");
    model_a_->setModel(catalog_);
    model_b_ = new QComboBox(this);
    model_b_->setObjectName("compareModelB");
    model_b_->setModel(catalog_);
    for (QComboBox* box : {model_a_, model_b_}) {
        box->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
        box->setMinimumContentsLength(18);
        connect(box, qOverload<int>(&QComboBox::activated), this, [this] { user_picked_ = true; });
    }
    prompts_ = new QPlainTextEdit(this);
    prompts_->setObjectName("comparePrompts");
    prompts_->setPlaceholderText(tr("One prompt a line"));
    prompts_->setPlainText(QString::fromUtf8(kDefaultPrompts));
    prompts_->setTabChangesFocus(true);
    seeds_ = new QSpinBox(this);
    seeds_->setObjectName("compareSeeds");
    seeds_->setRange(1, 64);
    seeds_->setValue(2);
    first_seed_ = new QSpinBox(this);
    first_seed_->setObjectName("compareFirstSeed");
    first_seed_->setRange(0, 2'000'000'000);
    steps_ = new QSpinBox(this);
    steps_->setObjectName("compareSteps");
    steps_->setRange(1, 200);
    steps_->setValue(20);
    cfg_ = new QDoubleSpinBox(this);
    cfg_->setObjectName("compareCfg");
    cfg_->setRange(0.0, 30.0);
    cfg_->setSingleStep(0.5);
    cfg_->setValue(7.5);
    render_button_ = new QPushButton(tr("Render comparison"), this);
    render_button_->setObjectName("compareRender");
    render_button_->setDefault(true);
    cancel_button_ = new QPushButton(tr("Cancel"), this);
    cancel_button_->setObjectName("compareCancel");
    cancel_button_->setEnabled(false);
    progress_ = new QProgressBar(this);
    progress_->setObjectName("compareProgress");
    progress_->setRange(0, 1);
    progress_->setValue(0);
    status_ = new QLabel(tr("Pick two models, prompts and seeds, then render."), this);
    status_->setObjectName("compareStatus");
    status_->setWordWrap(true);
    connect(render_button_, &QPushButton::clicked, this, &ComparePanel::render);
    connect(cancel_button_, &QPushButton::clicked, this, &ComparePanel::cancel);

    auto* setup = new QGroupBox(tr("Comparison"), this);
    auto* form = new QFormLayout;
    form->addRow(tr("A (reference):"), model_a_);
    form->addRow(tr("B (candidate):"), model_b_);
    form->addRow(tr("Prompts:"), prompts_);
    auto* seeds_row = new QHBoxLayout;
    seeds_row->addWidget(seeds_);
    seeds_row->addWidget(new QLabel(tr("from"), this));
    seeds_row->addWidget(first_seed_, 1);
    form->addRow(tr("Seeds:"), seeds_row);
    auto* sampling_row = new QHBoxLayout;
    sampling_row->addWidget(steps_);
    sampling_row->addWidget(new QLabel(tr("CFG"), this));
    sampling_row->addWidget(cfg_, 1);
    form->addRow(tr("Steps:"), sampling_row);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(render_button_);
    buttons->addWidget(cancel_button_);
    auto* setup_layout = new QVBoxLayout(setup);
    setup_layout->addLayout(form);
    setup_layout->addLayout(buttons);
    setup_layout->addWidget(progress_);
    setup_layout->addWidget(status_);
    setup_layout->addStretch();
    setup->setMaximumWidth(380);

    // --- side by side
    grid_widget_ = new QWidget(this);
    grid_widget_->setObjectName("compareGrid");
    grid_ = new QGridLayout(grid_widget_);
    header_a_ = new QLabel(tr("A"), grid_widget_);
    header_b_ = new QLabel(tr("B"), grid_widget_);
    for (QLabel* h : {header_a_, header_b_}) {
        h->setAlignment(Qt::AlignCenter);
        QFont f = h->font();
        f.setBold(true);
        h->setFont(f);
    }
    grid_->addWidget(header_a_, 0, 1);
    grid_->addWidget(header_b_, 0, 2);
    grid_->setColumnStretch(3, 1);
    auto* scroll = new QScrollArea(this);
    scroll->setObjectName("compareSideBySide");
    scroll->setWidget(grid_widget_);
    scroll->setWidgetResizable(true);

    // --- swipe / toggle
    auto* swipe_page = new QWidget(this);
    swipe_page->setObjectName("compareSwipePage");
    swipe_cell_ = new QComboBox(swipe_page);
    swipe_cell_->setObjectName("compareSwipeCell");
    swipe_ = new SwipeView(swipe_page);
    swipe_slider_ = new QSlider(Qt::Horizontal, swipe_page);
    swipe_slider_->setObjectName("compareSwipeSlider");
    swipe_slider_->setRange(0, 100);
    swipe_slider_->setValue(50);
    auto* toggle_button = new QPushButton(tr("Toggle A/B (T)"), swipe_page);
    toggle_button->setObjectName("compareToggle");
    toggle_ = new QAction(tr("Toggle A/B"), swipe_page);
    toggle_->setObjectName("compareToggleAction");
    toggle_->setShortcut(Qt::Key_T);
    toggle_->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    swipe_page->addAction(toggle_);
    connect(toggle_, &QAction::triggered, swipe_, &SwipeView::toggle);
    connect(toggle_button, &QPushButton::clicked, swipe_, &SwipeView::toggle);
    connect(swipe_slider_, &QSlider::valueChanged, this, [this](int v) { swipe_->setSplit(v / 100.0); });
    connect(swipe_, &SwipeView::splitChanged, this, [this](double f) {
        QSignalBlocker block(swipe_slider_);
        swipe_slider_->setValue(static_cast<int>(f * 100.0 + 0.5));
    });
    connect(swipe_cell_, qOverload<int>(&QComboBox::currentIndexChanged), this, &ComparePanel::showSwipeCell);
    auto* swipe_layout = new QVBoxLayout(swipe_page);
    swipe_layout->addWidget(swipe_cell_);
    swipe_layout->addWidget(swipe_, 1);
    auto* swipe_controls = new QHBoxLayout;
    swipe_controls->addWidget(new QLabel(tr("A"), swipe_page));
    swipe_controls->addWidget(swipe_slider_, 1);
    swipe_controls->addWidget(new QLabel(tr("B"), swipe_page));
    swipe_controls->addWidget(toggle_button);
    swipe_layout->addLayout(swipe_controls);

    // --- blind A/B
    blind_page_ = new QWidget(this);
    blind_page_->setObjectName("compareBlindPage");
    blind_page_->setFocusPolicy(Qt::StrongFocus);
    blind_progress_ = new QLabel(blind_page_);
    blind_progress_->setObjectName("compareBlindProgress");
    blind_prompt_ = new QLabel(blind_page_);
    blind_prompt_->setObjectName("compareBlindPrompt");
    blind_prompt_->setAlignment(Qt::AlignCenter);
    blind_prompt_->setWordWrap(true);
    QFont big = blind_prompt_->font();
    big.setPointSizeF(big.pointSizeF() * 1.3);
    blind_prompt_->setFont(big);
    blind_left_ = new ImageView(blind_page_);
    blind_left_->setObjectName("compareBlindLeft");
    blind_right_ = new ImageView(blind_page_);
    blind_right_->setObjectName("compareBlindRight");
    for (ImageView* v : {blind_left_, blind_right_}) v->setPlaceholder(tr("Render a comparison to vote"));
    win_rate_ = new QLabel(blind_page_);
    win_rate_->setObjectName("compareWinRate");
    win_rate_->setWordWrap(true);
    reveal_ = new QLabel(blind_page_);
    reveal_->setObjectName("compareReveal");
    reveal_->setWordWrap(true);
    apply_labels_ = new QPushButton(tr("Turn votes into labels"), blind_page_);
    apply_labels_->setObjectName("compareApplyLabels");
    apply_labels_->setToolTip(tr("Each vote's winner becomes liked and its loser disliked (ties are skipped), "
                                 "for the next training round."));
    apply_labels_->setEnabled(false);
    connect(apply_labels_, &QPushButton::clicked, this, &ComparePanel::applyLabels);
    auto make_vote = [this](const QString& text, const QList<QKeySequence>& keys, const QString& name,
                            VoteChoice choice) {
        auto* a = new QAction(text, blind_page_);
        a->setObjectName(name);
        a->setShortcuts(keys);
        // Arrow keys vote only while the blind view has focus (they move the cursor elsewhere).
        a->setShortcutContext(Qt::WidgetWithChildrenShortcut);
        blind_page_->addAction(a);
        connect(a, &QAction::triggered, this, [this, choice] { vote(choice); });
        return a;
    };
    vote_left_ = make_vote(tr("Left is better"), {QKeySequence(Qt::Key_Left)}, "compareVoteLeft", VoteChoice::Left);
    vote_right_ = make_vote(tr("Right is better"), {QKeySequence(Qt::Key_Right)}, "compareVoteRight", VoteChoice::Right);
    vote_tie_ = make_vote(tr("Tie"), {QKeySequence(Qt::Key_Down), QKeySequence(Qt::Key_Space)}, "compareVoteTie",
                          VoteChoice::Tie);
    auto vote_button = [this](QAction* a, const QString& text, const QString& name) {
        auto* b = new QPushButton(text, blind_page_);
        b->setObjectName(name);
        b->setFocusPolicy(Qt::NoFocus);  // keep the keys with the blind view
        connect(b, &QPushButton::clicked, a, &QAction::trigger);
        return b;
    };
    auto* images = new QHBoxLayout;
    images->addWidget(blind_left_, 1);
    images->addWidget(blind_right_, 1);
    auto* vote_row = new QHBoxLayout;
    vote_row->addWidget(vote_button(vote_left_, tr("← Left is better"), "compareVoteLeftButton"));
    vote_row->addWidget(vote_button(vote_tie_, tr("↓ Tie"), "compareVoteTieButton"));
    vote_row->addWidget(vote_button(vote_right_, tr("Right is better →"), "compareVoteRightButton"));
    auto* blind_layout = new QVBoxLayout(blind_page_);
    blind_layout->addWidget(blind_progress_);
    blind_layout->addWidget(blind_prompt_);
    blind_layout->addLayout(images, 1);
    blind_layout->addLayout(vote_row);
    blind_layout->addWidget(win_rate_);
    blind_layout->addWidget(reveal_);
    blind_layout->addWidget(apply_labels_, 0, Qt::AlignLeft);

    views_ = new QTabWidget(this);
    views_->setObjectName("compareViews");
    views_->addTab(scroll, tr("Side by side"));
    views_->addTab(swipe_page, tr("Swipe"));
    views_->addTab(blind_page_, tr("Blind A/B"));
    connect(views_, &QTabWidget::currentChanged, this, [this](int i) {
        if (i == BlindView) blind_page_->setFocus();
    });

    auto* title = new QLabel(tr("<h2>Compare</h2>"), this);
    auto* columns = new QHBoxLayout;
    columns->addWidget(setup);
    columns->addWidget(views_, 1);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(title);
    layout->addLayout(columns, 1);

    connect(catalog_, &QAbstractItemModel::modelReset, this, &ComparePanel::onCatalogReset);
    onCatalogReset();
    updateWinRate();
    showBlindPair();
}

ComparePanel::~ComparePanel() {
    worker_->cancel();
    thread_->quit();
    thread_->wait();
}

QImage ComparePanel::image(int cell, int side) const {
    const auto& v = images_[side == 0 ? 0 : 1];
    return cell >= 0 && cell < v.size() ? v[cell] : QImage();
}

void ComparePanel::onCatalogReset() {
    if (!user_picked_ || model_a_->currentIndex() < 0 || model_b_->currentIndex() < 0) pickDefaults();
}

// Default pair: the first base model (demo or a user's folder) against the most recently written
// checkpoint (the newest training run's latest); without checkpoints, the first two models.
void ComparePanel::pickDefaults() {
    int base = -1, newest = -1;
    QDateTime newest_time;
    for (int i = 0; i < catalog_->rowCount(); ++i) {
        const ModelEntry* e = catalog_->entry(i);
        if (e->kind != ModelEntry::Kind::Checkpoint) {
            if (base < 0) base = i;
            continue;
        }
        const QDateTime t = checkpoint_time(*e);
        if (newest < 0 || t > newest_time || (t == newest_time && e->name > catalog_->entry(newest)->name)) {
            newest = i;
            newest_time = t;
        }
    }
    if (base < 0) base = catalog_->rowCount() > 0 ? 0 : -1;
    if (newest < 0) newest = catalog_->rowCount() > 1 ? (base == 0 ? 1 : 0) : base;
    model_a_->setCurrentIndex(base);
    model_b_->setCurrentIndex(newest);
}

ComparisonSide ComparePanel::side(QComboBox* box) const {
    const ModelEntry* e = catalog_->entry(box->currentIndex());
    if (!e) return {};
    return {e->name, e->path, e->unet_path};
}

void ComparePanel::setRendering(bool on) {
    rendering_ = on;
    render_button_->setEnabled(!on);
    cancel_button_->setEnabled(on);
}

void ComparePanel::render() {
    if (rendering_) return;
    ComparisonSession s;
    s.a = side(model_a_);
    s.b = side(model_b_);
    if (s.a.model_path.isEmpty() || s.b.model_path.isEmpty()) {
        status_->setText(tr("Pick a model for both sides (A and B)."));
        return;
    }
    for (const QString& line : prompts_->toPlainText().split('\n')) {
        const QString p = line.trimmed();
        if (!p.isEmpty() && !p.startsWith('#')) s.prompts << p;
    }
    if (s.prompts.isEmpty()) {
        status_->setText(tr("Write at least one prompt (one a line)."));
        return;
    }
    for (int i = 0; i < seeds_->value(); ++i) s.seeds << first_seed_->value() + i;
    s.steps = steps_->value();
    s.cfg = cfg_->value();
    s.id = QStringLiteral("compare-%1-%2")
               .arg(QDateTime::currentDateTimeUtc().toString("yyyyMMdd-HHmmss-zzz"))
               .arg(QRandomGenerator::global()->bounded(1 << 30));
    pending_ = s;

    ComparisonRequest r;
    r.id = ++request_id_;
    r.session = s;
    r.device = device_;
    const QString ws = store_->workspace();
    r.cache_dir = ws.isEmpty() ? QStandardPaths::writableLocation(QStandardPaths::CacheLocation) + "/compare"
                               : ws + "/cache/compare";
    const int cells = static_cast<int>(s.prompts.size() * s.seeds.size());
    buildGrid(cells);
    header_a_->setText(tr("A: %1").arg(s.a.name));
    header_b_->setText(tr("B: %1").arg(s.b.name));
    for (auto& v : images_) v = QVector<QImage>(cells);
    cells_.clear();
    blind_ = BlindSession();
    votes_saved_ = 0;
    apply_labels_->setEnabled(false);
    reveal_->clear();
    showBlindPair();
    updateWinRate();
    swipe_->setImages({}, {});
    swipe_->setLabels(tr("A: %1").arg(s.a.name), tr("B: %1").arg(s.b.name));
    {
        QSignalBlocker block(swipe_cell_);
        swipe_cell_->clear();
        for (const QString& p : s.prompts)
            for (qint64 seed : s.seeds) swipe_cell_->addItem(tr("%1 · seed %2").arg(p).arg(seed));
    }
    progress_->setRange(0, 2 * cells);
    progress_->setValue(0);
    status_->setText(tr("Rendering %1 vs %2…").arg(s.a.name, s.b.name));
    setRendering(true);
    emit renderRequested(r);
}

void ComparePanel::cancel() {
    if (rendering_) worker_->cancel();
}

void ComparePanel::buildGrid(int count) {
    for (ImageView* v : grid_views_) {
        grid_->removeWidget(v);
        v->deleteLater();
    }
    grid_views_.clear();
    // Drop the old row labels (column 0, rows below the header).
    for (int i = grid_->count() - 1; i >= 0; --i) {
        int row = 0, col = 0, rs = 0, cs = 0;
        grid_->getItemPosition(i, &row, &col, &rs, &cs);
        if (row > 0 && col == 0) {
            QLayoutItem* item = grid_->takeAt(i);
            if (item->widget()) item->widget()->deleteLater();
            delete item;
        }
    }
    const int per_prompt = std::max<int>(1, static_cast<int>(pending_.seeds.size()));
    for (int i = 0; i < count; ++i) {
        const QString prompt = pending_.prompts.value(i / per_prompt);
        const qint64 seed = pending_.seeds.value(i % per_prompt);
        auto* label = new QLabel(tr("%1\nseed %2").arg(prompt).arg(seed), grid_widget_);
        label->setWordWrap(true);
        label->setMaximumWidth(220);
        grid_->addWidget(label, i + 1, 0);
        for (int side = 0; side < 2; ++side) {
            auto* v = new ImageView(grid_widget_);
            v->setObjectName(QStringLiteral("compareCell%1%2").arg(i).arg(side == 0 ? "A" : "B"));
            v->setFixedSize(kThumb, kThumb);
            v->setPlaceholder(tr("rendering…"));
            grid_->addWidget(v, i + 1, side + 1);
            grid_views_.push_back(v);
        }
    }
}

void ComparePanel::onProgress(quint64 id, int done, int total, const QString& text) {
    if (id != request_id_) return;
    progress_->setRange(0, total);
    progress_->setValue(done);
    status_->setText(text);
}

void ComparePanel::onImage(quint64 id, int side, int cell, const QImage& image) {
    if (id != request_id_ || side < 0 || side > 1 || cell < 0 || cell >= images_[side].size()) return;
    images_[side][cell] = image;
    const int k = 2 * cell + side;
    if (k < grid_views_.size()) grid_views_[k]->setImage(image);
    if (cell == swipe_cell_->currentIndex()) showSwipeCell(cell);
}

void ComparePanel::onFinished(quint64 id, const ComparisonSession& session, const ComparisonCells& cells,
                              bool cancelled, const QString& error) {
    if (id != request_id_) return;
    setRendering(false);
    if (cancelled || !error.isEmpty()) {
        status_->setText(cancelled ? tr("Cancelled. Images finished so far are cached and come back at once.")
                                   : tr("The comparison failed: %1").arg(error));
        emit comparisonReady(false);
        return;
    }
    session_ = session;
    cells_ = cells;
    status_->setText(tr("%1 prompts × %2 seeds · %3 steps, %4, %5×%6 · A: %7 · B: %8")
                         .arg(session.prompts.size())
                         .arg(session.seeds.size())
                         .arg(session.steps)
                         .arg(session.sampler)
                         .arg(session.width)
                         .arg(session.height)
                         .arg(session.a.name, session.b.name));
    showSwipeCell(swipe_cell_->currentIndex());
    // A new blind round over the rendered pairs, recorded as a session in the store.
    const quint64 seed = shuffle_seed_ ? *shuffle_seed_ : QRandomGenerator::global()->generate64();
    blind_ = BlindSession(static_cast<int>(cells_.size()), seed);
    store_->startComparison(session_);
    showBlindPair();
    updateWinRate();
    emit comparisonReady(true);
}

void ComparePanel::showSwipeCell(int index) {
    if (index < 0) return;
    swipe_->setImages(image(index, 0), image(index, 1));
}

void ComparePanel::showBlindPair() {
    if (cells_.isEmpty()) {
        blind_progress_->setText(tr("Render a comparison, then vote: ← left better, → right better, ↓ tie."));
        blind_prompt_->clear();
        blind_left_->setImage({});
        blind_right_->setImage({});
        return;
    }
    if (blind_.finished()) {
        blind_progress_->setText(tr("All %1 pairs voted.").arg(blind_.size()));
        blind_prompt_->clear();
        blind_left_->setImage({});
        blind_right_->setImage({});
        blind_left_->setPlaceholder(tr("done"));
        blind_right_->setPlaceholder(tr("done"));
        return;
    }
    const BlindSession::Pair& p = blind_.current();
    const ComparisonCellResult& c = cells_.at(p.cell);
    blind_progress_->setText(tr("Pair %1 of %2 — which is better? ← left · → right · ↓ tie")
                                 .arg(blind_.position() + 1)
                                 .arg(blind_.size()));
    blind_prompt_->setText(tr("%1 (seed %2)").arg(c.prompt).arg(c.seed));
    const QImage a = image(p.cell, 0), b = image(p.cell, 1);
    blind_left_->setImage(p.a_on_left ? a : b);
    blind_right_->setImage(p.a_on_left ? b : a);
}

void ComparePanel::updateWinRate() {
    const WinRate w = blind_.b_win_rate();
    if (w.votes() == 0) {
        win_rate_->setText(tr("Win rate of B: no votes yet (ties count half; 95% Wilson interval)."));
        return;
    }
    win_rate_->setText(tr("Win rate of B: %1 (95% CI %2–%3) · %4 votes: B %5, A %6, tie %7 · ties count half")
                           .arg(percent(w.rate), percent(w.low), percent(w.high))
                           .arg(w.votes())
                           .arg(w.wins)
                           .arg(w.losses)
                           .arg(w.ties));
}

void ComparePanel::vote(VoteChoice choice) {
    if (cells_.isEmpty() || blind_.finished()) return;
    const BlindSession::Pair p = blind_.vote(choice);
    const ComparisonCellResult& c = cells_.at(p.cell);
    ComparisonVoteRecord r;
    r.prompt = c.prompt;
    r.seed = c.seed;
    r.a_on_left = p.a_on_left;
    r.choice = choice;
    r.image_a = c.image_a;
    r.image_b = c.image_b;
    store_->recordVote(session_, r, this, [this, id = session_.id](const QString& error) {
        if (id != session_.id || !error.isEmpty()) return;
        ++votes_saved_;
        if (blind_.finished() && votes_saved_ == blind_.size()) apply_labels_->setEnabled(true);
        emit voteSaved(votes_saved_);
    });
    updateWinRate();
    showBlindPair();
    if (blind_.finished()) {
        // The end of the round: reveal which side was which, pair by pair.
        QStringList lines;
        lines << tr("A = %1, B = %2.").arg(session_.a.name, session_.b.name);
        QStringList order;
        for (int i = 0; i < blind_.size(); ++i) order << (blind_.pair(i).a_on_left ? "A|B" : "B|A");
        lines << tr("Left|right in voting order: %1").arg(order.join(", "));
        reveal_->setText(lines.join("\n"));
        emit blindFinished();
    }
}

void ComparePanel::applyLabels() {
    if (session_.id.isEmpty()) return;
    apply_labels_->setEnabled(false);
    store_->applyVoteLabels(session_.id, this, [this](qint64 votes, const QString& error) {
        if (!error.isEmpty()) {
            status_->setText(tr("The votes were not turned into labels: %1").arg(error));
            apply_labels_->setEnabled(true);
            return;
        }
        status_->setText(tr("%1 votes turned into labels (winner liked, loser disliked; ties skipped).").arg(votes));
        emit labelsApplied(votes);
    });
}

}  // namespace kto::ui
