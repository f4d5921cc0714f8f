// Training through the real main window on the built-in demo model: labels made in the app (Rate
// area keys) feed a short run started from the Train area; a preview and curve points arrive, pause
// holds the step count, resume goes on, generation runs beside the training, cancel stops it, and a
// 10 ms timer on the GUI thread never sees a gap over 100 ms meanwhile. A finished run lists its
// checkpoint in the Generate area's model picker and in the run history, whose files bring back its
// curves and previews. Presets save and load; a form that cannot start says why.
// Torch before Qt: Qt's "slots" macro breaks the torch headers.
#include "core/train/trainer.h"

#include <QAbstractItemModelTester>
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest>

#include "tests/gui/gui_support.h"
#include "tests/gui/stall_probe.h"
#include "tests/gui/worker_spy.h"
#include "tests/support/test_paths.h"
#include "tests/support/timing.h"
#include "ui/app/main_window.h"
#include "ui/generate/generate_panel.h"
#include "ui/generate/model_catalog.h"
#include "ui/rate/rate_panel.h"
#include "ui/store/store_service.h"
#include "ui/train/metrics_charts.h"
#include "ui/train/preview_grid.h"
#include "ui/train/run_history.h"
#include "ui/train/train_panel.h"
#include "ui/train/training_form.h"
#include "ui/workers/generation_worker.h"
#include "ui/workers/training_worker.h"

using namespace kto::ui;

using kto::test::StallProbe;

class TestTraining : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    QString demo_;

    std::unique_ptr<MainWindow> openWindow(const QString& ws) {
        StartupOptions o;
        o.workspace = ws;
        o.demo_model = demo_;
        o.restore_state = false;
        auto w = std::make_unique<MainWindow>(o);
        QSignalSpy opened(w.get(), &MainWindow::workspaceOpened);
        w->show();
        QApplication::setActiveWindow(w.get());
        if (opened.isEmpty() && !opened.wait(10000)) return nullptr;
        if (!opened.first().first().toBool()) return nullptr;
        return w;
    }

    // Rates every image of the workspace with the Rate area's keys: L, D, L, D, ...
    static bool rateAll(MainWindow* w, int images) {
        w->showArea(MainWindow::RateArea);
        RatePanel* rate = w->ratePanel();
        for (int i = 0; i < images; ++i) {
            if (!QTest::qWaitFor([&] { return rate->current().has_value(); }, 5000)) return false;
            QWidget* focus = QApplication::focusWidget();
            QTest::keyClick(focus ? focus : rate, i % 2 ? Qt::Key_D : Qt::Key_L);
        }
        return QTest::qWaitFor([&] { return w->store()->counts().unlabelled() == 0; }, 5000);
    }

    // Tiny settings: batch 2, a 3-step preview of one prompt and seed every `preview_every` steps.
    static void smallRun(TrainingForm* f, int steps, int preview_every, int checkpoint_every) {
        QVERIFY(f->applyPreset("demo-cpu"));
        f->stepsBox()->setValue(steps);
        f->batchBox()->setValue(2);
        f->previewEveryBox()->setValue(preview_every);
        f->previewStepsBox()->setValue(3);
        f->checkpointEveryBox()->setValue(checkpoint_every);
        f->probePromptsEdit()->setPlainText("a large red circle on a blue background");
        f->probeSeedsEdit()->setText("7");
        QCOMPARE(f->problem(), QString());
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        kto::test::isolate_settings(tmp_.filePath("settings"));
        demo_ = QDir(QString::fromStdString(kto::test::demo_model_dir())).absolutePath();
        QVERIFY2(QFileInfo::exists(demo_ + "/model_index.json"), qPrintable(demo_));
    }

    void trainPauseResumeCancelWithoutStallingTheGui() {
        const QString ws = tmp_.filePath("ws-live");
        kto::test::fill_workspace(ws, 12, 4);
        auto w = openWindow(ws);
        QVERIFY(w);
        QVERIFY(rateAll(w.get(), 12));
        QTRY_COMPARE(w->store()->counts().liked, qint64(6));
        QCOMPARE(w->store()->counts().disliked, qint64(6));

        w->showArea(MainWindow::TrainArea);
        TrainPanel* t = w->trainPanel();
        QVERIFY(t->readinessText().contains("6 liked, 6 disliked"));
        TrainingForm* f = t->form();
        smallRun(f, 400, 3, 2);
        QCOMPARE(f->modelPath(), demo_);  // the demo preset picks the demo model

        kto::test::WorkerSpy steps(w->trainingWorker(), &TrainingWorker::stepDone);
        kto::test::WorkerSpy previews(w->trainingWorker(), &TrainingWorker::previewReady);
        QSignalSpy finished(t, &TrainPanel::runFinished);
        StallProbe probe;
        t->startAction()->trigger();
        QVERIFY(t->running());
        QVERIFY(!t->startAction()->isEnabled());
        QVERIFY(t->cancelAction()->isEnabled());

        // The base preview (step 0), then curve points, then a later preview beside it.
        QTRY_VERIFY_WITH_TIMEOUT(previews.count() >= 1, 120000);
        QCOMPARE(previews.first().at(0).toLongLong(), 0LL);
        QTRY_VERIFY_WITH_TIMEOUT(t->charts()->pointCount(MetricsCharts::Loss) >= 1, 60000);
        QVERIFY(t->charts()->pointCount(MetricsCharts::Kl) >= 1);
        QCOMPARE(t->progressBar()->maximum(), 400);
        QVERIFY(t->progressBar()->value() >= 1);
        QVERIFY2(t->etaLabel()->text().startsWith("ETA"), qPrintable(t->etaLabel()->text()));
        QTRY_VERIFY_WITH_TIMEOUT(t->previews()->steps().size() >= 2, 60000);
        PreviewGrid* grid = t->previews();
        QCOMPARE(grid->rows(), 1);
        QCOMPARE(grid->baseImage(0).size(), QSize(64, 64));
        QCOMPARE(grid->currentImage(0).size(), QSize(64, 64));
        QVERIFY(grid->currentStep() > 0);           // follows the newest preview
        grid->slider()->setValue(0);                // back to the base step
        QCOMPARE(grid->currentStep(), qint64(0));
        QCOMPARE(grid->currentImage(0), grid->baseImage(0));
        grid->slider()->setValue(grid->slider()->maximum());

        // A checkpoint of the running run is offered by the Generate area's model picker.
        const QString run_id = QFileInfo(t->liveRunDir()).fileName();
        QTRY_VERIFY_WITH_TIMEOUT(w->catalog()->rowOfName(run_id + "/checkpoints/step-2") >= 0, 60000);
        const ModelEntry* e = w->catalog()->entry(w->catalog()->rowOfName(run_id + "/checkpoints/step-2"));
        QCOMPARE(e->path, demo_);  // the base model, with the checkpoint's UNet
        QVERIFY(QFileInfo::exists(e->unet_path + "/config.json"));

        // Pause: the step count holds; resume: it moves on.
        t->pauseAction()->trigger();
        QVERIFY(t->resumeAction()->isEnabled());
        QTRY_VERIFY_WITH_TIMEOUT(t->paused(), 30000);
        QTest::qWait(300);  // signals sent before the job stopped arrive
        const int at_pause = steps.count();
        QTest::qWait(1200);
        QCOMPARE(steps.count(), at_pause);
        QVERIFY(t->statusLabel()->text().startsWith("Paused at step"));
        t->resumeAction()->trigger();
        QVERIFY(!t->paused());
        QTRY_VERIFY_WITH_TIMEOUT(steps.count() > at_pause, 30000);

        // Generating while the run trains: the image arrives, the run goes on.
        GeneratePanel* g = w->generatePanel();
        QVERIFY(g->selectModel(demo_));
        g->promptEdit()->setPlainText("a small green square on a white background");
        g->randomSeedBox()->setChecked(false);
        g->stepsBox()->setValue(4);
        g->countBox()->setValue(1);
        kto::test::WorkerSpy generated(w->worker(), &GenerationWorker::finished);
        g->generateAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(generated.count() == 1, 60000);
        QCOMPARE(generated.first().at(2).toString(), QString());
        const int after_generation = steps.count();
        QTRY_VERIFY_WITH_TIMEOUT(steps.count() > after_generation, 30000);
        QVERIFY(t->running());

        t->cancelAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 30000);
        const auto outcome = finished.first().first().value<TrainingOutcome>();
        QVERIFY(outcome.cancelled);
        QCOMPARE(outcome.error, QString());
        QVERIFY(outcome.steps_done >= 3 && outcome.steps_done < 400);
        QVERIFY(!t->running());
        QVERIFY(t->startAction()->isEnabled());
        QVERIFY(t->statusLabel()->text().contains("cancelled"));
        qInfo("longest GUI-thread gap while training: %lld ms (%d steps)", static_cast<long long>(probe.worst()),
              static_cast<int>(outcome.steps_done));
        QVERIFY2(probe.worst() <= kto::test::scaled_ms(100), qPrintable(QString("event loop stalled %1 ms").arg(probe.worst())));

        // The run history has it, with its data counts and checkpoints.
        RunHistoryModel* h = t->history();
        QTRY_VERIFY(h->rowCount() == 1 && h->run(0)->status == "cancelled");
        const RunSummary* r = h->run(0);
        QCOMPARE(r->id, run_id);
        QCOMPARE(r->liked, qint64(6));
        QCOMPARE(r->disliked, qint64(6));
        QVERIFY(!r->checkpoints.isEmpty());
        QCOMPARE(r->steps_done, outcome.steps_done);
        QCOMPARE(h->index(0, RunHistoryModel::StepsColumn).data().toString(),
                 QString("%1 / 400").arg(outcome.steps_done));
        QCOMPARE(r->model_path, demo_);
        t->historyView()->selectRow(0);
        QVERIFY(t->continueAction()->isEnabled());  // cancelled with a checkpoint: it can go on
    }

    void finishedRunIsInHistoryAndPicker() {
        const QString ws = tmp_.filePath("ws-done");
        kto::test::fill_workspace(ws, 8, 4);
        auto w = openWindow(ws);
        QVERIFY(w);
        QVERIFY(rateAll(w.get(), 8));
        w->showArea(MainWindow::TrainArea);
        TrainPanel* t = w->trainPanel();
        QAbstractItemModelTester tester(t->history(), QAbstractItemModelTester::FailureReportingMode::QtTest);
        smallRun(t->form(), 3, 3, 0);
        QSignalSpy finished(t, &TrainPanel::runFinished);
        StallProbe probe;
        t->startAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 180000);
        const auto outcome = finished.first().first().value<TrainingOutcome>();
        QCOMPARE(outcome.error, QString());
        QVERIFY(!outcome.cancelled);
        QCOMPARE(outcome.steps_done, qint64(3));
        QCOMPARE(QFileInfo(outcome.final_checkpoint).fileName(), QString("step-3"));
        QVERIFY2(probe.worst() <= kto::test::scaled_ms(100), qPrintable(QString("event loop stalled %1 ms").arg(probe.worst())));
        QCOMPARE(t->progressBar()->value(), 3);

        // The final checkpoint in the picker: generating with it works.
        const QString run_id = QFileInfo(t->liveRunDir()).fileName();
        const int row = w->catalog()->rowOfName(run_id + "/checkpoints/step-3");
        QVERIFY(row >= 0);
        GeneratePanel* g = w->generatePanel();
        QVERIFY(g->selectModel(demo_, w->catalog()->entry(row)->unet_path));
        g->promptEdit()->setPlainText("a large red circle on a blue background");
        g->stepsBox()->setValue(3);
        g->countBox()->setValue(1);
        kto::test::WorkerSpy generated(w->worker(), &GenerationWorker::finished);
        g->generateAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(generated.count() == 1, 60000);
        QCOMPARE(generated.first().at(2).toString(), QString());

        // History: finished, 3 / 3; selecting it brings its curves and previews back from its files.
        RunHistoryModel* h = t->history();
        QTRY_VERIFY(h->rowCount() == 1 && h->run(0)->status == "finished");
        QCOMPARE(h->index(0, RunHistoryModel::StepsColumn).data().toString(), QString("3 / 3"));
        QCOMPARE(h->index(0, RunHistoryModel::DataColumn).data().toString(), QString("4 liked · 4 disliked"));
        t->historyView()->setCurrentIndex({});
        t->showRun({});
        QCOMPARE(t->charts()->pointCount(MetricsCharts::Loss), 0);
        QCOMPARE(t->previews()->rows(), 0);
        t->historyView()->selectRow(0);
        QCOMPARE(t->shownRunDir(), h->run(0)->dir);
        QTRY_COMPARE(t->charts()->pointCount(MetricsCharts::Loss), 3);
        QTRY_COMPARE(t->previews()->steps(), (QList<qint64>{0, 3}));
        QCOMPARE(t->previews()->rows(), 1);
        QVERIFY(!t->continueAction()->isEnabled());  // nothing left to train

        // Its settings come back into the form.
        t->form()->stepsBox()->setValue(99);
        t->useSelectedRunSettings();
        QCOMPARE(t->form()->stepsBox()->value(), 3);
        QCOMPARE(t->form()->probeSeedsEdit()->text(), QString("7"));

        // run.json records the end; base_model.txt names the base for the picker.
        QFile status(h->run(0)->dir + "/run.json");
        QVERIFY(status.open(QIODevice::ReadOnly));
        const QJsonObject run = QJsonDocument::fromJson(status.readAll()).object();
        QCOMPARE(run.value("status").toString(), QString("finished"));
        QCOMPARE(run.value("steps_done").toInt(), 3);
        QCOMPARE(run.value("preset").toString(), QString("demo-cpu"));
    }

    // A data-parallel run of 2 local processes started from the app (rank 0 in the app, rank 1 a
    // kto-studio-cli worker on Gloo over loopback): steps and a preview arrive as for one process,
    // pause is not offered, the run's config says 2 workers, and the other rank ends cleanly.
    void multiProcessRunFromTheApp() {
        const QString ws = tmp_.filePath("ws-multi");
        kto::test::fill_workspace(ws, 6, 3);
        auto w = openWindow(ws);
        QVERIFY(w);
        QVERIFY(rateAll(w.get(), 6));
        w->showArea(MainWindow::TrainArea);
        TrainPanel* t = w->trainPanel();
        smallRun(t->form(), 2, 2, 0);
        t->form()->workersBox()->setValue(2);
        QCOMPARE(t->form()->problem(), QString());
        QSignalSpy finished(t, &TrainPanel::runFinished);
        kto::test::WorkerSpy steps(w->trainingWorker(), &TrainingWorker::stepDone);
        kto::test::WorkerSpy previews(w->trainingWorker(), &TrainingWorker::previewReady);
        t->startAction()->trigger();
        // A run that fails (a worker that cannot start) ends at once: wait for either.
        QTRY_VERIFY_WITH_TIMEOUT(steps.count() >= 1 || finished.count() == 1, 240000);
        if (finished.count() == 1)
            QCOMPARE(finished.first().first().value<TrainingOutcome>().error, QString());
        QVERIFY(!t->pauseAction()->isEnabled());
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 240000);
        const auto outcome = finished.first().first().value<TrainingOutcome>();
        QCOMPARE(outcome.error, QString());
        QCOMPARE(outcome.steps_done, qint64(2));
        QCOMPARE(steps.count(), 2);
        QVERIFY(previews.count() >= 1);
        const QString run = t->liveRunDir();
        QFile config(run + "/config.json");
        QVERIFY(config.open(QIODevice::ReadOnly));
        const QJsonObject c = QJsonDocument::fromJson(config.readAll()).object();
        QCOMPARE(c.value("workers").toInt(), 2);
        QCOMPARE(c.value("global_batch").toInt(), 4);
        QFile log(run + "/worker-1.log");
        QVERIFY(log.open(QIODevice::ReadOnly));
        const QString text = QString::fromUtf8(log.readAll());
        QVERIFY2(text.contains("worker 1 done after 2 steps"), qPrintable(text));
        QVERIFY(QFileInfo::exists(run + "/records.json"));
    }

    void presetsSaveAndLoad() {
        auto w = openWindow(tmp_.filePath("ws-presets"));
        QVERIFY(w);
        TrainingForm* f = w->trainPanel()->form();
        QCOMPARE(f->presetBox()->count(), 3);  // the built-in ones

        QVERIFY(f->applyPreset("sd15-lora-12gb"));
        QVERIFY(f->loraBox()->isChecked());
        QCOMPARE(f->deviceBox()->currentText(), QString("cuda"));
        QCOMPARE(f->options().value("mixed_precision").toString(), QString("fp16"));
        QVERIFY(f->applyPreset("sd15-full-24gb"));
        QVERIFY(!f->loraBox()->isChecked());
        QCOMPARE(f->options().value("gradient_checkpointing").toBool(), true);

        QVERIFY(f->applyPreset("demo-cpu"));
        f->stepsBox()->setValue(123);
        f->learningRateEdit()->setText("2e-05");
        f->objectiveBox()->setCurrentText("dpo");
        f->probeSeedsEdit()->setText("3, 4");
        auto* flip = f->findChild<QDoubleSpinBox*>("trainFlipProbability");
        QVERIFY(flip);
        flip->setValue(0.25);
        f->presetNameEdit()->setText("my shapes");
        QVERIFY(f->savePresetButton()->isEnabled());
        QTest::mouseClick(f->savePresetButton(), Qt::LeftButton);
        QCOMPARE(TrainingForm::savedPresetNames(), QStringList{"my shapes"});
        QCOMPARE(f->presetBox()->count(), 4);
        QCOMPARE(f->presetId(), QString("saved:my shapes"));

        QVERIFY(f->applyPreset("demo-cpu"));
        QCOMPARE(f->stepsBox()->value(), kto::train_preset("demo").steps);
        QCOMPARE(f->options().value("lr_schedule").toString(), QString("cosine"));  // the demo preset's
        QCOMPARE(flip->value(), kto::train_preset("demo").flip_probability);
        QCOMPARE(f->options().value("flip_probability").toDouble(), kto::train_preset("demo").flip_probability);
        QVERIFY(f->applyPreset("saved:my shapes"));
        QCOMPARE(f->stepsBox()->value(), 123);
        QCOMPARE(f->objectiveBox()->currentText(), QString("dpo"));
        QCOMPARE(f->options().value("learning_rate").toDouble(), 2e-5);
        QCOMPARE(f->options().value("probe_seeds").toArray(), (QJsonArray{3, 4}));
        QCOMPARE(f->options().value("flip_probability").toDouble(), 0.25);
        QCOMPARE(f->modelPath(), demo_);
        // Options the form does not show survive the round trip.
        QCOMPARE(f->options().value("adam_beta2").toDouble(), 0.999);

        // A saved preset is there in a new window (QSettings).
        w.reset();
        w = openWindow(tmp_.filePath("ws-presets"));
        QVERIFY(w);
        QVERIFY(w->trainPanel()->form()->applyPreset("saved:my shapes"));
        QCOMPARE(w->trainPanel()->form()->stepsBox()->value(), 123);
    }

    // The probe the stall checks rely on sees work on the GUI thread, however busy the machine.
    void stallProbeSeesWorkOnTheGuiThread() {
        StallProbe probe;
        QTest::qWait(30);
        const long long t0 = kto::test::thread_cpu_ms();
        while (kto::test::thread_cpu_ms() - t0 < 250) {
        }
        QTest::qWait(30);
        QVERIFY2(probe.worst() >= 200, qPrintable(QString("saw %1 ms").arg(probe.worst())));
    }

    void refusesToStartWithReasons() {
        auto w = openWindow(tmp_.filePath("ws-empty"));
        QVERIFY(w);
        TrainPanel* t = w->trainPanel();
        t->startAction()->trigger();
        QVERIFY(!t->running());
        QVERIFY2(t->statusLabel()->text().contains("no liked or disliked images"), qPrintable(t->statusLabel()->text()));

        kto::test::fill_workspace(tmp_.filePath("ws-form"), 4, 2);
        {
            kto::storage::Store s{kto::storage::Workspace(tmp_.filePath("ws-form").toStdString())};
            for (int id = 1; id <= 4; ++id)
                s.set_label(id, id % 2 ? kto::storage::Label::Like : kto::storage::Label::Dislike);
        }
        w->openWorkspace(tmp_.filePath("ws-form"));
        QTRY_COMPARE(w->store()->counts().liked, qint64(2));
        TrainingForm* f = t->form();
        f->learningRateEdit()->setText("fast");
        t->startAction()->trigger();
        QVERIFY(!t->running());
        QVERIFY2(t->statusLabel()->text().contains("Learning rate"), qPrintable(t->statusLabel()->text()));
        f->learningRateEdit()->setText("5e-5");
        f->previewEveryBox()->setValue(5);
        f->probePromptsEdit()->clear();
        t->startAction()->trigger();
        QVERIFY(!t->running());
        QVERIFY2(t->statusLabel()->text().contains("probe prompt"), qPrintable(t->statusLabel()->text()));
        f->probePromptsEdit()->setPlainText("a large red circle on a blue background");
        f->deviceBox()->setCurrentText("cpu");
        f->findChild<QComboBox*>("trainPrecision")->setCurrentText("fp16");
        t->startAction()->trigger();
        QVERIFY(!t->running());
        QVERIFY2(t->statusLabel()->text().contains("mixed_precision"), qPrintable(t->statusLabel()->text()));
    }
};

QTEST_MAIN(TestTraining)
#include "test_training.moc"
