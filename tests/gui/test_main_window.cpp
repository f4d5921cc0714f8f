// Drives the real main window offscreen over a workspace filled through the storage API: rating
// with keys and undo, gallery filters / relabel / delete / details / regenerate, export, the help
// overlay, remembered settings and window state.
#include <QAbstractItemModelTester>
#include <QAction>
#include <QApplication>
#include <QComboBox>
#include <QCheckBox>
#include <QDir>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QMenu>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QtTest>

#include "core/common/runtime.h"
#include "tests/gui/gui_support.h"
#include "ui/app/app_settings.h"
#include "ui/app/help_overlay.h"
#include "ui/app/main_window.h"
#include "ui/app/settings_dialog.h"
#include "ui/common/dialogs.h"
#include "ui/dataset/dataset_dialogs.h"
#include "ui/gallery/gallery_model.h"
#include "ui/gallery/gallery_panel.h"
#include "ui/gallery/image_details_dialog.h"
#include "ui/generate/generate_panel.h"
#include "ui/rate/rate_panel.h"
#include "ui/store/store_service.h"

using namespace kto::ui;

class TestMainWindow : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;

    std::unique_ptr<MainWindow> openWindow(const QString& workspace, bool restore = false) {
        StartupOptions o;
        o.workspace = workspace;
        o.restore_state = restore;
        auto w = std::make_unique<MainWindow>(o);
        QSignalSpy opened(w.get(), &MainWindow::workspaceOpened);
        w->show();
        QApplication::setActiveWindow(w.get());
        if (opened.isEmpty()) opened.wait(10000);
        if (opened.isEmpty() || !opened.first().first().toBool()) return nullptr;
        return w;
    }

    static void press(QWidget* target, Qt::Key key, Qt::KeyboardModifiers mods = Qt::NoModifier) {
        QWidget* focus = QApplication::focusWidget();
        QTest::keyClick(focus ? focus : target, key, mods);
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        kto::test::isolate_settings(tmp_.filePath("settings"));
    }

    void rateTwentyImagesWithKeysAndUndo() {
        const QString ws = tmp_.filePath("ws-rate");
        kto::test::fill_workspace(ws, 30, 3);
        auto w = openWindow(ws);
        QVERIFY(w);
        QCOMPARE(w->store()->counts().total, 30);
        w->showArea(MainWindow::RateArea);
        RatePanel* rate = w->ratePanel();
        QTRY_VERIFY(rate->current().has_value());
        QVERIFY(rate->isAncestorOf(QApplication::focusWidget()) || QApplication::focusWidget() == rate);

        // The buttons show their keys.
        QVERIFY(w->findChild<QPushButton*>("likeButton")->text().contains("[L]"));
        QVERIFY(w->findChild<QPushButton*>("dislikeButton")->text().contains("[D]"));

        QSet<qint64> rated;
        qint64 last = 0;
        for (int i = 0; i < 20; ++i) {
            QTRY_VERIFY(rate->current().has_value());
            last = rate->current()->image_id;
            QVERIFY(!rated.contains(last));
            rated.insert(last);
            press(rate, i % 3 == 0 ? Qt::Key_D : Qt::Key_L);
            // Advances at once, before the store has written anything.
            QVERIFY(!rate->current() || rate->current()->image_id != last);
        }
        QTRY_COMPARE(w->store()->counts().liked, 13);
        QTRY_COMPARE(w->store()->counts().disliked, 7);
        QCOMPARE(w->store()->counts().unlabelled(), 10);
        QTRY_VERIFY(rate->countersText().contains("Liked 13"));
        QTRY_VERIFY(!rate->promptBalanceText().isEmpty());
        QVERIFY(w->statusCountsText().contains("13 liked"));

        // Skip leaves the image unlabelled.
        const qint64 skipped = rate->current()->image_id;
        press(rate, Qt::Key_S);
        QVERIFY(rate->current()->image_id != skipped);

        // Ctrl+Z brings back the last rated image (liked: i = 19) and takes its label back.
        press(rate, Qt::Key_Z, Qt::ControlModifier);
        QCOMPARE(rate->current()->image_id, last);
        QTRY_COMPARE(w->store()->counts().liked, 12);
        press(rate, Qt::Key_D);
        QTRY_COMPARE(w->store()->counts().disliked, 8);
        QCOMPARE(w->store()->counts().liked, 12);

        // Rate the rest without the mouse; the skipped image is not offered again until N.
        for (int guard = 0; w->store()->counts().unlabelled() > 1 && guard < 400; ++guard) {
            if (rate->current()) press(rate, Qt::Key_L);
            else QTest::qWait(10);
        }
        QTRY_COMPARE(w->store()->counts().unlabelled(), 1);  // the skipped one
        QTRY_VERIFY(!rate->current().has_value());           // "all rated"
        press(rate, Qt::Key_N);                              // offers the skipped image again
        QTRY_VERIFY(rate->current().has_value());
        QCOMPARE(rate->current()->image_id, skipped);
        press(rate, Qt::Key_L);
        QTRY_COMPARE(w->store()->counts().unlabelled(), 0);
    }

    void galleryFiltersRelabelsDeletesAndRegenerates() {
        const QString ws = tmp_.filePath("ws-gallery");
        kto::test::fill_workspace(ws, 40, 4);
        auto w = openWindow(ws);
        QVERIFY(w);
        w->showArea(MainWindow::GalleryArea);
        GalleryPanel* g = w->galleryPanel();
        GalleryModel* model = g->model();
        QAbstractItemModelTester tester(model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        QTRY_COMPARE(model->rowCount(), 40);

        g->promptFilter()->setText("triangle");
        QTRY_COMPARE(model->rowCount(), 10);  // after the typing debounce
        for (int r = 0; r < 10; ++r) QVERIFY(model->record(r)->prompt.contains("triangle"));

        // Select three, like them with the key.
        g->view()->setFocus();
        auto* sel = g->view()->selectionModel();
        for (int r = 0; r < 3; ++r) sel->select(model->index(r, 0), QItemSelectionModel::Select);
        g->view()->setCurrentIndex(model->index(0, 0));
        for (int r = 0; r < 3; ++r) sel->select(model->index(r, 0), QItemSelectionModel::Select);
        QCOMPARE(g->selectedImageIds().size(), 3);
        press(g, Qt::Key_L);
        QTRY_COMPARE(w->store()->counts().liked, 3);
        QCOMPARE(model->record(0)->label, Label::Liked);

        g->labelFilter()->setCurrentIndex(g->labelFilter()->findData(int(GalleryFilter::LabelFilter::Liked)));
        g->applyFilterNow();
        QTRY_COMPARE(model->rowCount(), 3);
        g->promptFilter()->clear();
        g->applyFilterNow();
        QTRY_COMPARE(model->rowCount(), 3);
        g->labelFilter()->setCurrentIndex(0);
        g->modelFilter()->setCurrentIndex(g->modelFilter()->findData("kto-demo"));
        g->applyFilterNow();
        QTRY_COMPARE(model->rowCount(), 40);
        g->dateFilter()->setCurrentIndex(1);  // today: all were made now
        g->applyFilterNow();
        QTRY_COMPARE(model->rowCount(), 40);

        // Delete asks first; "No" keeps everything.
        sel->clearSelection();
        sel->select(model->index(0, 0), QItemSelectionModel::Select);
        sel->select(model->index(1, 0), QItemSelectionModel::Select);
        const qint64 doomed = model->record(0)->image_id;
        const QString doomed_path = model->record(0)->path;
        MessageBox::setNextAnswer(QMessageBox::No);
        press(g, Qt::Key_Delete);
        QVERIFY(MessageBox::lastText().contains("Delete 2 images"));
        QTest::qWait(50);
        QCOMPARE(w->store()->counts().total, 40);
        MessageBox::setNextAnswer(QMessageBox::Yes);
        press(g, Qt::Key_Delete);
        QTRY_COMPARE(w->store()->counts().total, 38);
        QTRY_COMPARE(model->rowCount(), 38);
        QCOMPARE(model->rowOfImage(doomed), -1);
        QVERIFY(!QFile::exists(doomed_path));

        // Details show provenance; Regenerate fills the Generate form.
        g->view()->setCurrentIndex(model->index(0, 0));
        const ImageRecord shown = *model->record(0);
        QSignalSpy opened(g, &GalleryPanel::openedDetails);
        press(g, Qt::Key_Return);
        QCOMPARE(opened.count(), 1);
        auto* details = qobject_cast<ImageDetailsDialog*>(opened.first().first().value<QWidget*>());
        QVERIFY(details);
        QVERIFY(details->provenanceText().contains(QString("Seed: %1").arg(shown.seed)));
        QVERIFY(details->provenanceText().contains("Sampler: euler"));
        details->findChild<QPushButton*>("regenerateButton")->click();
        QCOMPARE(w->areas()->currentIndex(), int(MainWindow::GenerateArea));
        GeneratePanel* gen = w->generatePanel();
        QCOMPARE(gen->promptEdit()->toPlainText(), shown.prompt);
        QCOMPARE(gen->seedBox()->value(), int(shown.seed));
        QVERIFY(!gen->randomSeedBox()->isChecked());
        QCOMPARE(gen->countBox()->value(), 1);
    }

    void exportShowsCountsThenWritesTheDataset() {
        const QString ws = tmp_.filePath("ws-export");
        kto::test::fill_workspace(ws, 12, 3);
        {
            kto::storage::Store s{kto::storage::Workspace(ws.toStdString())};
            for (int id = 1; id <= 5; ++id) s.set_label(id, id <= 3 ? kto::storage::Label::Like : kto::storage::Label::Dislike);
        }
        auto w = openWindow(ws);
        QVERIFY(w);
        w->exportAction()->trigger();
        auto* d = w->findChild<ExportDialog*>();
        QVERIFY(d);
        QTRY_VERIFY(d->planLabel()->text().contains("Will export 5 images: 3 liked, 2 disliked"));
        QVERIFY(!d->startButton()->isEnabled());  // no folder yet
        const QString out = tmp_.filePath("export-out");
        QSignalSpy planned(d, &DatasetJobDialog::planned);
        FileDialog::setNextFileName(out);
        d->findChild<QPushButton*>("browseButton")->click();
        QTRY_VERIFY(d->startButton()->isEnabled());
        QSignalSpy finished(d, &DatasetJobDialog::jobFinished);
        d->startButton()->click();
        QTRY_COMPARE(finished.count(), 1);
        QVERIFY(finished.first().first().toBool());
        QVERIFY(d->resultLabel()->text().contains("Exported 5 images"));
        QFile csv(out + "/train_processed_v3.csv");
        QVERIFY(csv.open(QIODevice::ReadOnly));
        QCOMPARE(csv.readAll().count('\n'), 6);  // header + 5 rows
        d->close();

        // Import it into a fresh workspace: counts first, then the rows.
        auto w2 = openWindow(tmp_.filePath("ws-import"));
        QVERIFY(w2);
        QCOMPARE(w2->store()->counts().total, 0);
        w2->importAction()->trigger();
        auto* imp = w2->findChild<ImportDialog*>();
        QVERIFY(imp);
        imp->setPath(tmp_.filePath("nowhere"));
        QTRY_VERIFY(imp->planLabel()->text().contains("train_processed_v3.csv"));  // says what to pick
        QVERIFY(!imp->startButton()->isEnabled());
        imp->setPath(out);
        QTRY_VERIFY2(imp->planLabel()->text().startsWith("Will import 5 rows"), qPrintable(imp->planLabel()->text()));
        QVERIFY(imp->planLabel()->text().contains("3 exclusive_win"));
        QSignalSpy imported(imp, &DatasetJobDialog::jobFinished);
        imp->startButton()->click();
        QTRY_COMPARE(imported.count(), 1);
        QVERIFY2(imported.first().first().toBool(), qPrintable(imp->resultLabel()->text()));
        QVERIFY(imp->resultLabel()->text().contains("Imported 5 of 5 rows (3 liked, 2 disliked)"));
        QTRY_COMPARE(w2->store()->counts().liked, 3);
        QCOMPARE(w2->store()->counts().disliked, 2);
        w2->showArea(MainWindow::GalleryArea);
        QTRY_COMPARE(w2->galleryPanel()->model()->rowCount(), 5);
        w2.reset();

        // A file where the folder should be: the error says what to do.
        QFile blocker(tmp_.filePath("a-file"));
        QVERIFY(blocker.open(QIODevice::WriteOnly));
        blocker.close();
        w->exportAction()->trigger();
        QTRY_VERIFY(w->findChild<ExportDialog*>());
        auto* d2 = w->findChild<ExportDialog*>();
        d2->setPath(blocker.fileName() + "/sub");
        QTRY_VERIFY(d2->startButton()->isEnabled());
        QSignalSpy finished2(d2, &DatasetJobDialog::jobFinished);
        d2->startButton()->click();
        QTRY_COMPARE(finished2.count(), 1);
        QVERIFY(!finished2.first().first().toBool());
        QVERIFY2(d2->resultLabel()->text().startsWith("Export failed: "), qPrintable(d2->resultLabel()->text()));
        QVERIFY(d2->resultLabel()->text().contains("a-file"));
    }

    void helpOverlayListsEveryShortcut() {
        auto w = openWindow(tmp_.filePath("ws-help"));
        QVERIFY(w);
        w->showArea(MainWindow::GalleryArea);
        press(w.get(), Qt::Key_F1);
        QTRY_VERIFY(w->helpOverlay()->isVisible());
        const QString text = w->helpOverlay()->text();
        for (const char* s : {"Like", "Dislike", "Skip", "Undo rating", "Next unlabelled", "Generate", "Cancel generation",
                              "Export dataset", "Import dataset", "Go to Gallery", "Ctrl+Z", "Ctrl+3", "F1"})
            QVERIFY2(text.contains(s), s);
        press(w->helpOverlay(), Qt::Key_Escape);
        QVERIFY(!w->helpOverlay()->isVisible());
        // Every menu action with a shortcut is listed.
        for (QAction* a : w->findChildren<QAction*>()) {
            if (a->shortcut().isEmpty() || a->text().isEmpty() || a->menu()) continue;
            QVERIFY2(text.contains(a->text().remove('&')), qPrintable(a->text()));
        }
    }

    void settingsAndWindowStateAreRemembered() {
        const QString ws = tmp_.filePath("ws-settings");
        {
            auto w = openWindow(ws, true);
            QVERIFY(w);
            SettingsDialog dialog(w->settings(), false, w.get());
            QCOMPARE(dialog.deviceBox()->count(), 1);  // CPU only when libtorch sees no GPU
            dialog.threadsBox()->setValue(3);
            // Precision on the CPU: automatic, fp32 or bf16; the choice sets what the app computes in.
            QCOMPARE(dialog.cpuPrecisionBox()->count(), 3);
            QCOMPARE(dialog.cpuPrecisionBox()->currentData().toString(), QString("auto"));
            // Where bf16 products sum in bf16 (no AVX-512 with libtorch 1.13), the bf16 choice says what it costs.
            const QString bf16_text =
                dialog.cpuPrecisionBox()->itemText(dialog.cpuPrecisionBox()->findData("bf16"));
            QCOMPARE(bf16_text.contains("less exact"),
                     !kto::cpu_has_bf16_matrix_units() && !kto::cpu_bf16_matmul_sums_in_fp32());
            QCOMPARE(dialog.cpuPrecisionBox()->toolTip().contains("sums bf16 products in bf16"), bf16_text.contains("less exact"));
            dialog.cpuPrecisionBox()->setCurrentIndex(dialog.cpuPrecisionBox()->findData("fp32"));
            AppSettings s = dialog.settings();
            s.defaults.steps = 7;
            w->applySettings(s);
            s.save();
            QCOMPARE(w->generatePanel()->stepsBox()->value(), 7);
            QCOMPARE(kto::default_cpu_dtype(), c10::ScalarType::Float);
            kto::set_cpu_dtype_choice("bf16");
            QCOMPARE(kto::default_cpu_dtype(), c10::ScalarType::BFloat16);
            w->resize(1011, 707);
            w->showArea(MainWindow::GalleryArea);
            w->close();
        }
        const AppSettings loaded = AppSettings::load();
        QCOMPARE(loaded.threads, 3);
        QCOMPARE(loaded.defaults.steps, 7);
        QCOMPARE(loaded.cpu_precision, QString("fp32"));
        auto w = openWindow(ws, true);
        QVERIFY(w);
        QCOMPARE(kto::default_cpu_dtype(), c10::ScalarType::Float);  // the remembered choice, applied at start
        AppSettings back = w->settings();
        back.cpu_precision = "auto";
        w->applySettings(back);
        back.save();
        QCOMPARE(w->size(), QSize(1011, 707));
        QCOMPARE(w->areas()->currentIndex(), int(MainWindow::GalleryArea));
        QCOMPARE(w->generatePanel()->stepsBox()->value(), 7);
    }

    void unusableWorkspaceIsReportedInWords() {
        QFile file(tmp_.filePath("not-a-folder"));
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.close();
        StartupOptions o;
        o.workspace = file.fileName();
        o.restore_state = false;
        MessageBox::setNextAnswer(QMessageBox::Ok);
        MainWindow w(o);
        QSignalSpy opened(&w, &MainWindow::workspaceOpened);
        QVERIFY(opened.wait(10000));
        QCOMPARE(opened.first().first().toBool(), false);
        QVERIFY2(MessageBox::lastText().contains("not-a-folder"), qPrintable(MessageBox::lastText()));
        QVERIFY(MessageBox::lastText().contains("Settings"));
    }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
