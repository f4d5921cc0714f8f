// GalleryModel under QAbstractItemModelTester: asynchronous paging, filters, in-place store events,
// lazy thumbnails decoded off the GUI thread.
#include <QAbstractItemModelTester>
#include <QElapsedTimer>
#include <QImage>
#include <QListView>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest>

#include "tests/support/timing.h"
#include "ui/gallery/gallery_delegate.h"
#include "ui/gallery/gallery_model.h"
#include "ui/gallery/thumbnail_cache.h"

using namespace kto::ui;

namespace {

// The test's own image table, answering page requests the way the store's reader does (queued).
struct FakeTable {
    ImageRecords rows;  // newest first
    int requests = 0;
    void attach(GalleryModel* model) {
        QObject::connect(model, &GalleryModel::pageRequested, model,
                         [this, model](const GalleryFilter& f, int offset, int limit, quint64 token) {
                             ++requests;
                             ImageRecords matching;
                             for (const ImageRecord& r : rows)
                                 if (f.prompt_text.isEmpty() || r.prompt.contains(f.prompt_text, Qt::CaseInsensitive))
                                     if (f.label == GalleryFilter::LabelFilter::Any ||
                                         (f.label == GalleryFilter::LabelFilter::Liked && r.label == Label::Liked))
                                         matching.push_back(r);
                             ImageRecords page = matching.mid(offset, limit);
                             const bool exhausted = offset + limit >= matching.size();
                             QTimer::singleShot(0, model, [model, token, page, exhausted] {
                                 model->receivePage(token, page, exhausted);
                             });
                         });
    }
};

ImageRecord record(qint64 id, const QString& prompt, Label label = Label::None, const QString& path = {}) {
    ImageRecord r;
    r.image_id = id;
    r.generation_id = id;
    r.prompt = prompt;
    r.label = label;
    r.path = path;
    r.seed = id * 10;
    r.model = "kto-demo";
    r.created = QDateTime::currentDateTimeUtc();
    return r;
}

}  // namespace

class TestGalleryModel : public QObject {
    Q_OBJECT
private slots:
    void pagesArriveUntilExhausted() {
        GalleryModel model(nullptr);
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        FakeTable table;
        for (int i = 450; i >= 1; --i) table.rows.push_back(record(i, i % 3 ? "a red circle" : "a blue square"));
        table.attach(&model);
        table.requests = 0;  // the tester's own fetchMore before reload() asked under an old token
        model.reload();
        QTRY_COMPARE(model.rowCount(), GalleryModel::kPageSize);
        QVERIFY(model.canFetchMore({}));
        while (model.canFetchMore({})) {
            const int before = model.rowCount();
            model.fetchMore({});
            model.fetchMore({});  // a second call while a page is in flight must not double-request
            QTRY_VERIFY_WITH_TIMEOUT(model.rowCount() > before || !model.canFetchMore({}), 30000);
        }
        QCOMPARE(model.rowCount(), 450);
        QCOMPARE(table.requests, 3);
        QCOMPARE(model.index(0, GalleryModel::SeedColumn).data().toLongLong(), 4500);
        QCOMPARE(model.index(449, GalleryModel::ImageColumn).data(GalleryModel::ImageIdRole).toLongLong(), 1);
        QCOMPARE(model.rowOfImage(1), 449);
    }

    void filterReplacesRowsAndDropsStalePages() {
        GalleryModel model(nullptr);
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        FakeTable table;
        for (int i = 30; i >= 1; --i) table.rows.push_back(record(i, i % 2 ? "a red circle" : "a blue square"));
        table.attach(&model);
        model.reload();
        GalleryFilter f;
        f.prompt_text = "BLUE";
        model.setFilter(f);  // the first page (unfiltered) is still queued and must be ignored
        QTRY_COMPARE(model.rowCount(), 15);
        QTest::qWait(20);
        QCOMPARE(model.rowCount(), 15);
        for (int r = 0; r < model.rowCount(); ++r)
            QVERIFY(model.index(r, GalleryModel::PromptColumn).data().toString().contains("blue"));
        QVERIFY(!model.canFetchMore({}));
    }

    void storeEventsApplyInPlace() {
        GalleryModel model(nullptr);
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        FakeTable table;
        for (int i = 10; i >= 1; --i) table.rows.push_back(record(i, "a red circle"));
        table.attach(&model);
        model.reload();
        QTRY_COMPARE(model.rowCount(), 10);

        QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
        model.applyLabels({3, 4}, Label::Liked);
        for (ImageRecord& r : table.rows)
            if (r.image_id == 3 || r.image_id == 4) r.label = Label::Liked;  // as the store would
        QCOMPARE(changed.count(), 2);
        QCOMPARE(model.index(model.rowOfImage(3), GalleryModel::LabelColumn).data().toString(), QString("liked"));
        QCOMPARE(model.index(model.rowOfImage(4), 0).data(GalleryModel::LabelRole).toInt(), int(Label::Liked));

        model.removeImages({10, 5, 999});
        QCOMPARE(model.rowCount(), 8);
        QCOMPARE(model.rowOfImage(10), -1);
        QCOMPARE(model.rowOfImage(9), 0);
        QCOMPARE(model.rowOfImage(1), 7);

        model.prependImages({record(12, "a red circle"), record(11, "a red circle")});
        QCOMPARE(model.rowCount(), 10);
        QCOMPARE(model.rowOfImage(12), 0);
        QCOMPARE(model.rowOfImage(1), 9);

        // A new image that does not match the filter stays out.
        GalleryFilter liked;
        liked.label = GalleryFilter::LabelFilter::Liked;
        model.setFilter(liked);
        QTRY_COMPARE(model.rowCount(), 2);
        model.prependImages({record(13, "a red circle")});
        QCOMPARE(model.rowCount(), 2);
    }

    void thumbnailsLoadLazilyOffTheGuiThread() {
        QTemporaryDir dir;
        QImage img(64, 48, QImage::Format_RGB32);
        img.fill(Qt::red);
        QVERIFY(img.save(dir.filePath("a.png")));
        ThumbnailCache cache(QSize(32, 32));
        GalleryModel model(&cache);
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        FakeTable table;
        table.rows = {record(2, "red", Label::None, dir.filePath("a.png")),
                      record(1, "missing", Label::None, dir.filePath("missing.png"))};
        table.attach(&model);
        model.reload();
        QTRY_COMPARE(model.rowCount(), 2);
        QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
        QVERIFY(model.index(0, 0).data(Qt::DecorationRole).value<QImage>().isNull());  // queued, not decoded here
        QTRY_VERIFY(changed.count() >= 1);
        const QImage thumb = model.index(0, 0).data(Qt::DecorationRole).value<QImage>();
        QCOMPARE(thumb.size(), QSize(32, 24));
        QCOMPARE(QColor(thumb.pixel(5, 5)), QColor(Qt::red));
        // A missing file is tried once, then reported as "no thumbnail" without retrying.
        QVERIFY(model.index(1, 0).data(Qt::DecorationRole).value<QImage>().isNull());
        QTRY_COMPARE(cache.pending(), 0);
        QVERIFY(model.index(1, 0).data(Qt::DecorationRole).value<QImage>().isNull());
        QCOMPARE(cache.pending(), 0);
    }

    void tenThousandImagesScrollSmoothly() {
        // The real grid (view + delegate + thumbnail cache) over 10,000 rows paged in by scrolling.
        QTemporaryDir dir;
        QImage img(64, 64, QImage::Format_RGB32);
        img.fill(Qt::darkCyan);
        QVERIFY(img.save(dir.filePath("x.png")));
        ThumbnailCache cache(QSize(128, 128));
        GalleryModel model(&cache);
        FakeTable table;
        table.rows.reserve(10000);
        for (int i = 10000; i >= 1; --i)
            table.rows.push_back(record(i, "a shape", i % 3 ? Label::None : Label::Liked, dir.filePath("x.png")));
        table.attach(&model);
        QListView view;
        view.setViewMode(QListView::IconMode);
        view.setResizeMode(QListView::Adjust);
        view.setUniformItemSizes(true);
        view.setLayoutMode(QListView::Batched);
        view.setItemDelegate(new GalleryDelegate(cache.size(), &view));
        view.setModel(&model);
        view.resize(1000, 700);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        model.reload();
        QTRY_VERIFY(model.rowCount() > 0);
        // GUI-thread CPU time, not wall time: the machine running the tests may be busy.
        const auto cpu_ms = [] { return qint64(kto::test::thread_cpu_ms()); };
        qint64 worst = 0, t0 = 0;
        int steps = 0;
        while (model.canFetchMore({}) || model.loading()) {
            t0 = cpu_ms();
            view.scrollToBottom();  // the view asks for the next page when it reaches the end
            view.viewport()->repaint();
            worst = std::max(worst, cpu_ms() - t0);
            QTest::qWait(1);
            QVERIFY(++steps < 5000);
        }
        QCOMPARE(model.rowCount(), 10000);
        // Jumping around the full grid repaints quickly (thumbnails come from the cache or later).
        for (int row : {0, 5000, 9999, 2500, 7500}) {
            t0 = cpu_ms();
            view.scrollTo(model.index(row, 0));
            view.viewport()->repaint();
            worst = std::max(worst, cpu_ms() - t0);
        }
        qInfo("10,000 images: worst scroll+repaint %lld ms of GUI-thread CPU", static_cast<long long>(worst));
        QVERIFY2(worst < kto::test::scaled_ms(100), qPrintable(QString("a repaint took %1 ms").arg(worst)));
    }
};

QTEST_MAIN(TestGalleryModel)
#include "test_gallery_model.moc"
