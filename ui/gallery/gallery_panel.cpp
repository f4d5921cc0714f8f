#include "ui/gallery/gallery_panel.h"

#include <QAction>
#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QTimer>
#include <QToolBar>
#include <QVBoxLayout>

#include "ui/common/dialogs.h"
#include "ui/gallery/gallery_delegate.h"
#include "ui/gallery/gallery_model.h"
#include "ui/gallery/image_details_dialog.h"
#include "ui/gallery/thumbnail_cache.h"
#include "ui/store/store_service.h"

namespace kto::ui {

GalleryPanel::GalleryPanel(StoreService* store, QWidget* parent) : QWidget(parent), store_(store) {
    setObjectName("galleryPanel");
    thumbnails_ = new ThumbnailCache(QSize(128, 128), this);
    model_ = new GalleryModel(thumbnails_, this);
    connect(model_, &GalleryModel::pageRequested, this,
            [this](const GalleryFilter& f, int offset, int limit, quint64 token) {
                store_->queryImages(f, offset, limit, this, [this, token](const ImageRecords& rows, bool exhausted) {
                    model_->receivePage(token, rows, exhausted);
                });
            });
    connect(model_, &GalleryModel::pageLoaded, this, &GalleryPanel::updateSummary);
    connect(model_, &QAbstractItemModel::rowsRemoved, this, &GalleryPanel::updateSummary);
    connect(model_, &QAbstractItemModel::rowsInserted, this, &GalleryPanel::updateSummary);
    connect(model_, &QAbstractItemModel::modelReset, this, &GalleryPanel::updateSummary);

    // Filters.
    label_filter_ = new QComboBox(this);
    label_filter_->setObjectName("labelFilter");
    label_filter_->addItem(tr("All labels"), int(GalleryFilter::LabelFilter::Any));
    label_filter_->addItem(tr("Liked"), int(GalleryFilter::LabelFilter::Liked));
    label_filter_->addItem(tr("Disliked"), int(GalleryFilter::LabelFilter::Disliked));
    label_filter_->addItem(tr("Unlabelled"), int(GalleryFilter::LabelFilter::Unlabelled));
    label_filter_->addItem(tr("Labelled"), int(GalleryFilter::LabelFilter::Labelled));
    prompt_filter_ = new QLineEdit(this);
    prompt_filter_->setObjectName("promptFilter");
    prompt_filter_->setPlaceholderText(tr("Filter by prompt text (Ctrl+F)"));
    prompt_filter_->setClearButtonEnabled(true);
    model_filter_ = new QComboBox(this);
    model_filter_->setObjectName("modelFilter");
    model_filter_->addItem(tr("All models"), QString());
    model_filter_->setSizeAdjustPolicy(QComboBox::AdjustToContents);
    date_filter_ = new QComboBox(this);
    date_filter_->setObjectName("dateFilter");
    date_filter_->addItem(tr("Any date"), -1);
    date_filter_->addItem(tr("Today"), 0);
    date_filter_->addItem(tr("Last 7 days"), 6);
    date_filter_->addItem(tr("Last 30 days"), 29);
    summary_ = new QLabel(this);
    summary_->setObjectName("gallerySummary");

    debounce_ = new QTimer(this);
    debounce_->setSingleShot(true);
    debounce_->setInterval(250);
    connect(debounce_, &QTimer::timeout, this, &GalleryPanel::applyFilterNow);
    connect(prompt_filter_, &QLineEdit::textChanged, debounce_, qOverload<>(&QTimer::start));
    for (QComboBox* c : {label_filter_, model_filter_, date_filter_})
        connect(c, qOverload<int>(&QComboBox::activated), this, &GalleryPanel::applyFilterNow);

    auto* filters = new QHBoxLayout;
    filters->addWidget(label_filter_);
    filters->addWidget(prompt_filter_, 1);
    filters->addWidget(model_filter_);
    filters->addWidget(date_filter_);
    filters->addWidget(summary_);

    // The grid: uniform cells and batched layout keep scrolling through thousands smooth.
    view_ = new QListView(this);
    view_->setObjectName("galleryView");
    view_->setViewMode(QListView::IconMode);
    view_->setResizeMode(QListView::Adjust);
    view_->setMovement(QListView::Static);
    view_->setUniformItemSizes(true);
    view_->setLayoutMode(QListView::Batched);
    view_->setBatchSize(200);
    view_->setSelectionMode(QAbstractItemView::ExtendedSelection);
    view_->setItemDelegate(new GalleryDelegate(thumbnails_->size(), view_));
    view_->setModel(model_);
    view_->setModelColumn(GalleryModel::ImageColumn);
    view_->setSpacing(2);
    view_->setMouseTracking(true);
    connect(view_, &QListView::activated, this, [this](const QModelIndex&) { openCurrent(); });

    // Actions (shortcuts active while the gallery has focus; listed in the help overlay).
    auto make = [this](const QString& text, const QKeySequence& key, const QString& name) {
        auto* a = new QAction(text, this);
        a->setObjectName(name);
        a->setShortcut(key);
        a->setShortcutContext(Qt::WidgetWithChildrenShortcut);
        addAction(a);
        return a;
    };
    open_ = make(tr("Open details"), Qt::Key_Return, "galleryOpen");
    like_ = make(tr("Mark selected liked"), Qt::Key_L, "galleryLike");
    dislike_ = make(tr("Mark selected disliked"), Qt::Key_D, "galleryDislike");
    clear_ = make(tr("Clear label of selected"), Qt::Key_U, "galleryClear");
    delete_ = make(tr("Delete selected…"), QKeySequence::Delete, "galleryDelete");
    find_ = make(tr("Filter by prompt"), QKeySequence::Find, "galleryFind");
    connect(open_, &QAction::triggered, this, &GalleryPanel::openCurrent);
    connect(like_, &QAction::triggered, this, [this] { relabelSelected(Label::Liked); });
    connect(dislike_, &QAction::triggered, this, [this] { relabelSelected(Label::Disliked); });
    connect(clear_, &QAction::triggered, this, [this] { relabelSelected(Label::None); });
    connect(delete_, &QAction::triggered, this, &GalleryPanel::deleteSelected);
    connect(find_, &QAction::triggered, this, [this] {
        prompt_filter_->setFocus();
        prompt_filter_->selectAll();
    });

    auto* bar = new QToolBar(this);
    bar->setToolButtonStyle(Qt::ToolButtonTextOnly);
    for (QAction* a : {open_, like_, dislike_, clear_, delete_}) bar->addAction(a);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(filters);
    layout->addWidget(bar);
    layout->addWidget(view_, 1);

    // Store events keep the grid current without reloading it.
    connect(store_, &StoreService::imagesAdded, this, [this](const ImageRecords& rows) {
        ImageRecords newest_first(rows.rbegin(), rows.rend());
        model_->prependImages(newest_first);
        for (const ImageRecord& r : rows)
            if (!r.model.isEmpty() && model_filter_->findData(r.model) < 0) model_filter_->addItem(r.model, r.model);
    });
    connect(store_, &StoreService::labelsChanged, model_, &GalleryModel::applyLabels);
    connect(store_, &StoreService::imagesRemoved, model_, &GalleryModel::removeImages);
}

GalleryFilter GalleryPanel::currentFilter() const {
    GalleryFilter f;
    f.label = static_cast<GalleryFilter::LabelFilter>(label_filter_->currentData().toInt());
    f.prompt_text = prompt_filter_->text().trimmed();
    f.model = model_filter_->currentData().toString();
    const int days = date_filter_->currentData().toInt();
    if (days >= 0) f.from = QDate::currentDate().addDays(-days);
    return f;
}

void GalleryPanel::applyFilterNow() {
    debounce_->stop();
    GalleryFilter f = currentFilter();
    if (!(f == model_->filter()) || model_->rowCount() == 0) model_->setFilter(f);
}

void GalleryPanel::reload() {
    refreshModels();
    model_->setFilter(currentFilter());
}

void GalleryPanel::refreshModels() {
    store_->modelsUsed(this, [this](const QStringList& models) {
        const QString current = model_filter_->currentData().toString();
        model_filter_->clear();
        model_filter_->addItem(tr("All models"), QString());
        for (const QString& m : models) model_filter_->addItem(m, m);
        model_filter_->setCurrentIndex(qMax(0, model_filter_->findData(current)));
    });
}

void GalleryPanel::updateSummary() {
    const int n = model_->rowCount();
    summary_->setText(model_->canFetchMore({}) ? tr("%1+ images").arg(n) : (n == 1 ? tr("1 image") : tr("%1 images").arg(n)));
}

QVector<qint64> GalleryPanel::selectedImageIds() const {
    QVector<qint64> ids;
    for (const QModelIndex& i : view_->selectionModel()->selectedIndexes())
        ids << i.data(GalleryModel::ImageIdRole).toLongLong();
    std::sort(ids.begin(), ids.end());
    return ids;
}

void GalleryPanel::relabelSelected(Label label) {
    const QVector<qint64> ids = selectedImageIds();
    if (ids.isEmpty()) return;
    store_->setLabel(ids, label);
}

void GalleryPanel::deleteSelected() {
    const QVector<qint64> ids = selectedImageIds();
    if (ids.isEmpty()) return;
    const auto answer = MessageBox::question(
        this, tr("Delete images"),
        (ids.size() == 1 ? tr("Delete 1 image?") : tr("Delete %1 images?").arg(ids.size())) + " " +
            tr("Their files and labels are removed from the workspace; this cannot be undone."));
    if (answer != QMessageBox::Yes) return;
    store_->deleteImages(ids);
}

void GalleryPanel::openCurrent() {
    const QModelIndex idx = view_->currentIndex();
    if (!idx.isValid()) return;
    const ImageRecord* r = model_->record(idx.row());
    if (!r) return;
    auto* dialog = new ImageDetailsDialog(*r, this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    connect(dialog, &ImageDetailsDialog::regenerateRequested, this, &GalleryPanel::regenerateRequested);
    emit openedDetails(dialog);
    dialog->open();
}

}  // namespace kto::ui
