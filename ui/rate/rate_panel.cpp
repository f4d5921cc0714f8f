#include "ui/rate/rate_panel.h"

#include <QAction>
#include <QApplication>
#include <QPointer>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "ui/common/image_view.h"
#include "ui/store/store_service.h"

namespace kto::ui {

namespace {
constexpr int kRefillBatch = 64;
constexpr int kRefillBelow = 8;
constexpr int kPrefetch = 4;
}  // namespace

RatePanel::RatePanel(StoreService* store, QWidget* parent) : QWidget(parent), store_(store) {
    setObjectName("ratePanel");
    setFocusPolicy(Qt::StrongFocus);
    view_ = new ImageView(this);
    view_->setObjectName("rateImage");
    prompt_ = new QLabel(this);
    prompt_->setObjectName("ratePrompt");
    prompt_->setWordWrap(true);
    prompt_->setAlignment(Qt::AlignCenter);
    QFont big = prompt_->font();
    big.setPointSizeF(big.pointSizeF() * 1.4);
    prompt_->setFont(big);
    prompt_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    info_ = new QLabel(this);
    info_->setObjectName("rateInfo");
    info_->setAlignment(Qt::AlignCenter);
    counters_ = new QLabel(this);
    counters_->setObjectName("rateCounters");
    balance_ = new QLabel(this);
    balance_->setObjectName("rateBalance");

    auto make = [this](const QString& text, const QKeySequence& key, const QString& name) {
        auto* a = new QAction(text, this);
        a->setObjectName(name);
        a->setShortcut(key);
        // Single-letter keys only while the Rate area has focus, so typing elsewhere is safe.
        a->setShortcutContext(Qt::WidgetWithChildrenShortcut);
        addAction(a);
        return a;
    };
    like_ = make(tr("Like"), Qt::Key_L, "rateLike");
    dislike_ = make(tr("Dislike"), Qt::Key_D, "rateDislike");
    skip_ = make(tr("Skip"), Qt::Key_S, "rateSkip");
    undo_ = make(tr("Undo rating"), QKeySequence::Undo, "rateUndo");
    next_ = make(tr("Next unlabelled"), Qt::Key_N, "rateNext");
    connect(like_, &QAction::triggered, this, &RatePanel::like);
    connect(dislike_, &QAction::triggered, this, &RatePanel::dislike);
    connect(skip_, &QAction::triggered, this, &RatePanel::skip);
    connect(undo_, &QAction::triggered, this, &RatePanel::undo);
    connect(next_, &QAction::triggered, this, &RatePanel::nextUnlabelled);

    auto button = [this](QAction* a, const QString& key, const QString& name) {
        auto* b = new QPushButton(QStringLiteral("%1  [%2]").arg(a->text(), key), this);
        b->setObjectName(name);
        b->setFocusPolicy(Qt::NoFocus);  // keys keep going to the panel
        b->setMinimumHeight(40);
        connect(b, &QPushButton::clicked, a, &QAction::trigger);
        return b;
    };
    dislike_button_ = button(dislike_, "D", "dislikeButton");
    auto* skip_button = button(skip_, "S", "skipButton");
    like_button_ = button(like_, "L", "likeButton");
    auto* undo_button = button(undo_, undo_->shortcut().toString(QKeySequence::NativeText), "undoButton");
    auto* next_button = button(next_, "N", "nextButton");

    auto* buttons = new QHBoxLayout;
    buttons->addStretch();
    buttons->addWidget(undo_button);
    buttons->addSpacing(24);
    buttons->addWidget(dislike_button_);
    buttons->addWidget(skip_button);
    buttons->addWidget(like_button_);
    buttons->addSpacing(24);
    buttons->addWidget(next_button);
    buttons->addStretch();

    auto* stats = new QHBoxLayout;
    stats->addWidget(counters_);
    stats->addStretch();
    stats->addWidget(balance_);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(stats);
    layout->addWidget(view_, 1);
    layout->addWidget(prompt_);
    layout->addWidget(info_);
    layout->addLayout(buttons);

    connect(store_, &StoreService::countsChanged, this, &RatePanel::updateCounters);
    connect(store_, &StoreService::imagesAdded, this, [this](const ImageRecords& rows) {
        for (const ImageRecord& r : rows)
            if (r.label == Label::None && !seen_.contains(r.image_id)) queue_.push_back(r);
        if (!current_ && isVisible()) showNext();
        prefetchImages();
        updateButtons();
    });
    connect(store_, &StoreService::imagesRemoved, this, [this](const QVector<qint64>& ids) {
        for (qint64 id : ids) {
            queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                        [id](const ImageRecord& r) { return r.image_id == id; }),
                         queue_.end());
            undo_stack_.erase(std::remove_if(undo_stack_.begin(), undo_stack_.end(),
                                             [id](const UndoStep& s) { return s.record.image_id == id; }),
                              undo_stack_.end());
            images_.remove(id);
        }
        if (current_ && ids.contains(current_->image_id)) {
            current_.reset();
            showNext();
        }
        updateButtons();
    });
    connect(store_, &StoreService::labelsChanged, this, [this](const QVector<qint64>& ids, Label label) {
        // Labelled elsewhere (the gallery): no longer waiting in the queue.
        if (label == Label::None) return;
        queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                    [&](const ImageRecord& r) { return ids.contains(r.image_id); }),
                     queue_.end());
        if (current_ && ids.contains(current_->image_id)) current_->label = label;
        refreshPromptCounts();
    });
    reset();
}

void RatePanel::reset() {
    queue_.clear();
    current_.reset();
    undo_stack_.clear();
    seen_.clear();
    images_.clear();
    exhausted_ = false;
    fetching_ = false;
    ++refill_token_;
    view_->setImage({});
    view_->setPlaceholder(tr("Nothing to rate yet.\nGenerate images in the Generate area or import a dataset."));
    prompt_->clear();
    info_->clear();
    updateCounters();
    updateButtons();
}

void RatePanel::activate() {
    setFocus();
    if (!current_) showNext();
}

void RatePanel::rate(Label label) {
    if (!current_) return;
    ImageRecord before = *current_;
    store_->setLabel({before.image_id}, label);
    undo_stack_.push_back({before, label});
    seen_.insert(before.image_id);
    emit rated(before.image_id, label);
    showNext();
}

void RatePanel::skip() {
    if (!current_) return;
    seen_.insert(current_->image_id);
    showNext();
}

void RatePanel::undo() {
    if (undo_stack_.isEmpty()) return;
    UndoStep step = undo_stack_.takeLast();
    store_->undoLabel(step.record.image_id);
    // The image on screen goes back to the queue's front; the undone one is shown again.
    if (current_ && current_->label == Label::None) queue_.prepend(*current_);
    show(step.record);
}

void RatePanel::nextUnlabelled() {
    // Moves on like Skip; when nothing is left, starts the scan again so skipped images come back.
    if (current_) seen_.insert(current_->image_id);
    if (queue_.isEmpty()) {
        QSet<qint64> rated;
        for (const UndoStep& s : undo_stack_) rated.insert(s.record.image_id);
        seen_ = rated;
        if (current_ && current_->label != Label::None) seen_.insert(current_->image_id);
        exhausted_ = false;
    }
    showNext();
}

void RatePanel::showNext() {
    if (queue_.isEmpty()) {
        current_.reset();
        view_->setImage({});
        view_->setPlaceholder(exhausted_ ? tr("All images are rated. Generate more in the Generate area (Ctrl+1).")
                                         : tr("Loading…"));
        prompt_->clear();
        info_->clear();
        balance_->clear();
        refill();
        updateButtons();
        return;
    }
    show(queue_.takeFirst());
    if (queue_.size() < kRefillBelow) refill();
}

void RatePanel::show(const ImageRecord& r) {
    current_ = r;
    QImage img = images_.take(r.image_id);
    if (img.isNull()) img.load(r.path);  // not prefetched yet: a single small PNG
    view_->setImage(img);
    if (img.isNull()) view_->setPlaceholder(tr("The image file is missing:\n%1").arg(r.path));
    prompt_->setText(r.prompt);
    QString state = r.label == Label::None ? tr("unlabelled")
                    : r.label == Label::Liked ? tr("liked (undone: rate it again)")
                                              : tr("disliked (undone: rate it again)");
    info_->setText(tr("seed %1 · %2 steps · %3 · %4").arg(r.seed).arg(r.steps).arg(r.model, state));
    refreshPromptCounts();
    prefetchImages();
    updateButtons();
}

void RatePanel::refill() {
    if (fetching_ || exhausted_ || !store_->isOpen()) return;
    fetching_ = true;
    GalleryFilter f;
    f.label = GalleryFilter::LabelFilter::Unlabelled;
    const quint64 token = refill_token_;
    // Newest first from the top each time, asking past the images this session already holds
    // (rated or skipped, whose writes may still be queued), so skipping never starves the queue.
    const int limit = kRefillBatch + seen_.size() + queue_.size() + 1;
    store_->queryImages(f, 0, limit, this, [this, token, limit](const ImageRecords& rows, bool exhausted) {
        if (token != refill_token_) return;
        fetching_ = false;
        const int before = queue_.size();
        QSet<qint64> queued;
        for (const ImageRecord& q : queue_) queued.insert(q.image_id);
        for (const ImageRecord& r : rows) {
            if (seen_.contains(r.image_id) || queued.contains(r.image_id)) continue;
            if (current_ && current_->image_id == r.image_id) continue;
            queue_.push_back(r);
        }
        // Exhausted: everything unlabelled is here, or nothing new came (all left are held).
        exhausted_ = exhausted || rows.size() < limit || queue_.size() == before;
        if (!current_ && !queue_.isEmpty()) {
            show(queue_.takeFirst());
        } else if (!current_) {
            if (!exhausted_) {
                refill();
            } else {
                view_->setPlaceholder(tr("All images are rated. Generate more in the Generate area (Ctrl+1)."));
            }
        }
        if (queue_.size() < kRefillBelow && !exhausted_) refill();
        prefetchImages();
        updateButtons();
    });
}

void RatePanel::prefetchImages() {
    for (int i = 0; i < qMin(kPrefetch, int(queue_.size())); ++i) {
        const ImageRecord& r = queue_[i];
        if (images_.contains(r.image_id)) continue;
        images_.insert(r.image_id, QImage());  // marks "in flight"
        const qint64 id = r.image_id;
        const QString path = r.path;
        QPointer<RatePanel> self(this);  // read only on the GUI thread, inside the posted call
        (void)QtConcurrent::run([self, id, path, token = refill_token_] {
            QImage img(path);
            QMetaObject::invokeMethod(qApp, [self, id, img, token] {
                if (self && token == self->refill_token_ && self->images_.contains(id)) self->images_.insert(id, img);
            }, Qt::QueuedConnection);
        });
    }
}

void RatePanel::refreshPromptCounts() {
    if (!current_) return;
    const QString prompt = current_->prompt;
    store_->promptCounts(prompt, this, [this, prompt](const LabelCounts& c) {
        if (!current_ || current_->prompt != prompt) return;
        prompt_counts_ = c;
        prompt_counts_for_ = prompt;
        balance_->setText(promptBalanceText());
    });
}

QString RatePanel::countersText() const {
    const LabelCounts c = store_->counts();
    return tr("Liked %1 · Disliked %2 · Unlabelled %3").arg(c.liked).arg(c.disliked).arg(c.unlabelled());
}

QString RatePanel::promptBalanceText() const {
    if (prompt_counts_for_.isEmpty()) return {};
    const LabelCounts& c = prompt_counts_;
    return tr("This prompt: %1 liked · %2 disliked · %3 unlabelled")
        .arg(c.liked)
        .arg(c.disliked)
        .arg(c.unlabelled());
}

void RatePanel::updateCounters() {
    counters_->setText(countersText());
    refreshPromptCounts();
}

void RatePanel::updateButtons() {
    const bool has = current_.has_value();
    like_->setEnabled(has);
    dislike_->setEnabled(has);
    skip_->setEnabled(has);
    undo_->setEnabled(!undo_stack_.isEmpty());
    like_button_->setEnabled(has);
    dislike_button_->setEnabled(has);
}

}  // namespace kto::ui
