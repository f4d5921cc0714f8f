// Generation through the real main window on a real model (the built-in demo model when it is
// installed, else the tiny reference model): images land in the store and the gallery with their
// provenance, previews and progress arrive, cancel stops between steps, and the GUI thread never
// stalls: a 10 ms timer on it must never see a gap over 100 ms while the worker generates.
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QtTest>

#include "core/common/runtime.h"
#include "tests/gui/gui_support.h"
#include "tests/gui/stall_probe.h"
#include "tests/gui/worker_spy.h"
#include "tests/support/test_paths.h"
#include "tests/support/timing.h"
#include "ui/app/main_window.h"
#include "ui/common/dialogs.h"
#include "ui/gallery/gallery_model.h"
#include "ui/gallery/gallery_panel.h"
#include "ui/generate/generate_panel.h"
#include "ui/generate/model_catalog.h"
#include "ui/rate/rate_panel.h"
#include "ui/store/store_service.h"
#include "ui/workers/generation_worker.h"

using namespace kto::ui;

class TestGeneration : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    QString model_;

    std::unique_ptr<MainWindow> openWindow(const QString& ws) {
        StartupOptions o;
        o.workspace = ws;
        o.model = model_;
        o.restore_state = false;
        auto w = std::make_unique<MainWindow>(o);
        QSignalSpy opened(w.get(), &MainWindow::workspaceOpened);
        w->show();
        if (opened.isEmpty() && !opened.wait(10000)) return nullptr;
        return w;
    }

    static void fillForm(GeneratePanel* g, int count, int steps) {
        g->promptEdit()->setPlainText("a large red circle on a blue background");
        g->randomSeedBox()->setChecked(false);
        g->seedBox()->setValue(42);
        g->stepsBox()->setValue(steps);
        g->countBox()->setValue(count);
        g->widthBox()->setValue(64);
        g->heightBox()->setValue(64);
        g->samplerBox()->setCurrentText("euler");
    }

private slots:
    void initTestCase() {
        kto::test::isolate_settings(tmp_.filePath("settings"));
        const QString demo = QString::fromStdString(kto::test::demo_model_dir());
        model_ = QFileInfo::exists(demo + "/model_index.json")
                     ? demo
                     : QString::fromStdString(kto::test::reference_dir()) + "/tiny-sd";
        QVERIFY2(QFileInfo::exists(model_ + "/model_index.json"), qPrintable(model_));
        qInfo("generating with %s", qPrintable(model_));
    }

    void generatesIntoStoreAndGalleryWithoutStallingTheGui() {
        auto w = openWindow(tmp_.filePath("ws-gen"));
        QVERIFY(w);
        GeneratePanel* g = w->generatePanel();
        QVERIFY(g->modelBox()->currentIndex() >= 0);
        fillForm(g, 3, 6);
        w->showArea(MainWindow::GalleryArea);  // the gallery is on screen while images arrive
        QTRY_VERIFY(!w->galleryPanel()->model()->loading());

        kto::test::WorkerSpy progress(w->worker(), &GenerationWorker::progress);
        kto::test::WorkerSpy previews(w->worker(), &GenerationWorker::preview);
        kto::test::WorkerSpy ready(w->worker(), &GenerationWorker::imageReady);
        kto::test::WorkerSpy finished(w->worker(), &GenerationWorker::finished);

        kto::test::StallProbe probe;  // the longest event-loop gap the app causes
        g->generateAction()->trigger();
        QVERIFY(g->busy());
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
        QTRY_COMPARE(w->store()->counts().total, 3);
        probe.stop();
        const qint64 worst = probe.worst();
        qInfo("longest GUI-thread gap while generating: %lld ms", static_cast<long long>(worst));
        QVERIFY2(worst <= kto::test::scaled_ms(100), qPrintable(QString("event loop stalled %1 ms").arg(worst)));

        QCOMPARE(finished.first().at(1).toBool(), false);            // not cancelled
        QCOMPARE(finished.first().at(2).toString(), QString());       // no error
        QCOMPARE(ready.count(), 3);
        QVERIFY(progress.count() >= 3 * 6);
        QVERIFY(previews.count() >= 1);
        const QImage first = ready.first().at(3).value<QImage>();
        QCOMPARE(first.size(), QSize(64, 64));
        QCOMPARE(ready.at(2).at(2).toLongLong(), 44);                 // seeds 42, 43, 44
        QTRY_VERIFY_WITH_TIMEOUT(!g->busy(), 5000);  // queued end-of-run signal
        QCOMPARE(g->progressBar()->value(), g->progressBar()->maximum());

        // In the gallery at once, newest first, with provenance.
        GalleryModel* m = w->galleryPanel()->model();
        QTRY_COMPARE(m->rowCount(), 3);
        const ImageRecord* r = m->record(0);
        QCOMPARE(r->seed, 44);
        QCOMPARE(r->steps, 6);
        QCOMPARE(r->sampler, QString("euler"));
        QCOMPARE(r->prompt, QString("a large red circle on a blue background"));
        QCOMPARE(r->model, QFileInfo(model_).fileName());
        QImage stored(r->path);
        QCOMPARE(stored.size(), QSize(64, 64));
        QVERIFY(stored.text("parameters").contains("Seed: 44"));
        // Same seed and settings give the same image (determinism).
        QCOMPARE(stored.convertToFormat(QImage::Format_RGB888),
                 ready.at(2).at(3).value<QImage>().convertToFormat(QImage::Format_RGB888));

        // And they wait in Rate.
        w->showArea(MainWindow::RateArea);
        QTRY_VERIFY(w->ratePanel()->current().has_value());
    }

    void cancelStopsBetweenSteps() {
        auto w = openWindow(tmp_.filePath("ws-cancel"));
        QVERIFY(w);
        GeneratePanel* g = w->generatePanel();
        fillForm(g, 4, 200);
        kto::test::WorkerSpy progress(w->worker(), &GenerationWorker::progress);
        kto::test::WorkerSpy finished(w->worker(), &GenerationWorker::finished);
        g->generateAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(progress.count() >= 2, 60000);
        QElapsedTimer t;
        t.start();
        g->cancelAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 30000);
        QVERIFY(finished.first().at(1).toBool());  // cancelled
        QVERIFY2(t.elapsed() < kto::test::scaled_ms(5000), "cancel must take effect between two steps");
        QTRY_VERIFY_WITH_TIMEOUT(!g->busy(), 5000);  // the panel hears of the end through a queued signal
        QTest::qWait(100);
        QCOMPARE(w->store()->counts().total, 0);  // the first image had 200 steps: none finished
    }

    void badModelFolderIsReportedInWords() {
        // A folder with model_index.json but no components: the worker reports, the app survives.
        const QString bad = tmp_.filePath("broken-model");
        QDir().mkpath(bad);
        QFile f(bad + "/model_index.json");
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("{\"_class_name\": \"StableDiffusionPipeline\"}");
        f.close();
        auto w = openWindow(tmp_.filePath("ws-bad"));
        QVERIFY(w);
        GeneratePanel* g = w->generatePanel();
        w->catalog()->rescan({}, {bad}, {});
        g->modelBox()->setCurrentIndex(0);
        fillForm(g, 1, 2);
        kto::test::WorkerSpy finished(w->worker(), &GenerationWorker::finished);
        MessageBox::setNextAnswer(QMessageBox::Ok);
        g->generateAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 30000);
        const QString error = finished.first().at(2).toString();
        QVERIFY2(!error.isEmpty(), "a broken model must fail with a message");
        QVERIFY2(error.contains("broken-model"), qPrintable(error));
        QTRY_VERIFY_WITH_TIMEOUT(!g->busy(), 5000);  // the panel hears of the end through a queued signal
    }

    // Running out of memory (forced at the 2nd step) ends the run with advice in words; the app
    // stays usable: the next run with the same model generates.
    void outOfMemoryIsReportedAndTheNextRunWorks() {
        auto w = openWindow(tmp_.filePath("ws-oom"));
        QVERIFY(w);
        GeneratePanel* g = w->generatePanel();
        fillForm(g, 1, 3);
        kto::test::WorkerSpy finished(w->worker(), &GenerationWorker::finished);
        qputenv("KTO_FAULT_OOM", "generate-step:2");
        kto::reset_fault_points();
        MessageBox::setNextAnswer(QMessageBox::Ok);
        g->generateAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
        qunsetenv("KTO_FAULT_OOM");
        const QString error = finished.first().at(2).toString();
        QVERIFY2(error.contains("out of memory while generating 1 image of 64x64"), qPrintable(error));
        QVERIFY2(error.contains("Try fewer images per batch"), qPrintable(error));
        QTRY_VERIFY_WITH_TIMEOUT(!g->busy(), 5000);
        QCOMPARE(w->store()->counts().total, 0);

        g->generateAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 2, 60000);
        QCOMPARE(finished.at(1).at(2).toString(), QString());
        QTRY_COMPARE(w->store()->counts().total, 1);
        QTRY_VERIFY_WITH_TIMEOUT(!g->busy(), 5000);
    }
};

QTEST_MAIN(TestGeneration)
#include "test_generation.moc"
