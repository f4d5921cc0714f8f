// Takes a screenshot of each area of the real main window (QWidget::grab), in the system palette
// and in a dark one, and checks that each shows content (not a blank window). With
// KTO_SCREENSHOT_DIR set (see docs/USER_GUIDE.md) the PNGs are kept there for the user guide;
// run it under Xvfb with QT_QPA_PLATFORM=xcb to get the platform's real style and fonts.
#include <QAction>
#include <QApplication>
#include <QDir>
#include <QLabel>
#include <QLineEdit>
#include <QSpinBox>
#include <QListView>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QStyleFactory>
#include <QTabWidget>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest>

#include "tests/gui/compare_support.h"
#include "tests/gui/gui_support.h"
#include "ui/app/app_settings.h"
#include "ui/app/help_overlay.h"
#include "ui/app/main_window.h"
#include "ui/app/settings_dialog.h"
#include "ui/compare/compare_panel.h"
#include "ui/dataset/dataset_dialogs.h"
#include "ui/gallery/gallery_model.h"
#include "ui/gallery/gallery_panel.h"
#include "ui/gallery/image_details_dialog.h"
#include "ui/generate/generate_panel.h"
#include "ui/generate/model_catalog.h"
#include "ui/rate/rate_panel.h"
#include "ui/store/store_service.h"
#include "ui/train/metrics_charts.h"
#include "ui/train/preview_grid.h"
#include "ui/train/run_history.h"
#include "ui/train/train_panel.h"
#include "ui/train/training_form.h"

using namespace kto::ui;

class TestScreenshots : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    QString out_;
    std::unique_ptr<MainWindow> w_;

    void save(QWidget* widget, const QString& name) {
        QApplication::processEvents();
        const QImage img = widget->grab().toImage();
        QVERIFY(!img.isNull());
        // Content, not a blank window: many distinct colours.
        QSet<QRgb> colours;
        for (int y = 0; y < img.height(); y += 7)
            for (int x = 0; x < img.width(); x += 7) colours.insert(img.pixel(x, y));
        QVERIFY2(colours.size() > 8, qPrintable(name));
        QVERIFY(img.save(out_ + "/" + name + ".png"));
    }

private slots:
    void initTestCase() {
        kto::test::isolate_settings(tmp_.filePath("settings"));
        out_ = qEnvironmentVariable("KTO_SCREENSHOT_DIR", tmp_.filePath("shots"));
        QDir().mkpath(out_);
        const QString ws = tmp_.filePath("workspace");
        kto::test::fill_workspace(ws, 48, 6);
        {
            kto::storage::Store s{kto::storage::Workspace(ws.toStdString())};
            for (int id = 1; id <= 14; ++id)
                s.set_label(id, id % 3 ? kto::storage::Label::Like : kto::storage::Label::Dislike);
        }
        StartupOptions o;
        o.workspace = ws;
        o.restore_state = false;
        o.demo_model = qEnvironmentVariable("KTO_DEMO_MODEL_DIR");
        w_ = std::make_unique<MainWindow>(o);
        QSignalSpy opened(w_.get(), &MainWindow::workspaceOpened);
        w_->resize(1280, 800);
        w_->show();
        QVERIFY(QTest::qWaitForWindowExposed(w_.get()));
        QVERIFY(opened.count() || opened.wait(10000));
    }

    void generateArea() {
        w_->showArea(MainWindow::GenerateArea);
        w_->generatePanel()->promptEdit()->setPlainText("a large red circle on a blue background");
        save(w_.get(), "generate");
    }

    void rateArea() {
        w_->showArea(MainWindow::RateArea);
        QTRY_VERIFY(w_->ratePanel()->current().has_value());
        QTRY_VERIFY(!w_->ratePanel()->promptBalanceText().isEmpty());
        save(w_.get(), "rate");
    }

    void galleryArea() {
        w_->showArea(MainWindow::GalleryArea);
        GalleryModel* m = w_->galleryPanel()->model();
        QTRY_COMPARE(m->rowCount(), 48);
        auto* view = w_->galleryPanel()->view();
        view->setCurrentIndex(m->index(2, 0));
        view->selectionModel()->select(m->index(3, 0), QItemSelectionModel::Select);
        // Wait for the visible thumbnails.
        QTRY_VERIFY(!m->index(0, 0).data(Qt::DecorationRole).value<QImage>().isNull());
        QTRY_VERIFY(!m->index(20, 0).data(Qt::DecorationRole).value<QImage>().isNull());
        QTest::qWait(100);
        save(w_.get(), "gallery");

        QSignalSpy opened(w_->galleryPanel(), &GalleryPanel::openedDetails);
        w_->galleryPanel()->openAction()->trigger();
        QCOMPARE(opened.count(), 1);
        QWidget* details = opened.first().first().value<QWidget*>();
        QVERIFY(QTest::qWaitForWindowExposed(details));
        save(details, "details");
        details->close();
    }

    void datasetDialogs() {
        w_->exportAction()->trigger();
        auto* d = w_->findChild<ExportDialog*>();
        QVERIFY(d);
        d->setPath(tmp_.filePath("my-dataset"));
        QTRY_VERIFY(d->planLabel()->text().contains("Will export"));
        QVERIFY(QTest::qWaitForWindowExposed(d));
        save(d, "export");
        d->close();
    }

    void settingsDialog() {
        SettingsDialog dialog(w_->settings(), false, w_.get());
        dialog.show();
        QVERIFY(QTest::qWaitForWindowExposed(&dialog));
        save(&dialog, "settings");
    }

    void trainArea() {
        // A short real run on the demo model (the workspace's 14 labels): curves, previews, history.
        w_->showArea(MainWindow::TrainArea);
        TrainPanel* t = w_->trainPanel();
        TrainingForm* f = t->form();
        QVERIFY(f->applyPreset("demo-cpu"));
        QVERIFY(!f->modelPath().isEmpty());
        f->stepsBox()->setValue(8);
        f->batchBox()->setValue(2);
        f->previewEveryBox()->setValue(4);
        f->previewStepsBox()->setValue(10);
        f->checkpointEveryBox()->setValue(4);
        f->probeSeedsEdit()->setText("0, 1");
        QSignalSpy finished(t, &TrainPanel::runFinished);
        t->startAction()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 180000);
        QCOMPARE(finished.first().first().value<TrainingOutcome>().error, QString());
        QCOMPARE(t->charts()->pointCount(MetricsCharts::Loss), 8);
        QTRY_COMPARE(t->history()->rowCount(), 1);
        QTRY_COMPARE(t->history()->run(0)->status, QString("finished"));
        QCOMPARE(t->previews()->steps(), (QList<qint64>{0, 4, 8}));
        t->tabs()->setCurrentIndex(TrainPanel::CurvesTab);
        save(w_.get(), "train");
        t->tabs()->setCurrentIndex(TrainPanel::PreviewsTab);
        save(w_.get(), "train-previews");
        t->historyView()->selectRow(0);
        t->tabs()->setCurrentIndex(TrainPanel::HistoryTab);
        save(w_.get(), "train-history");
        t->tabs()->setCurrentIndex(TrainPanel::CurvesTab);
    }

    void compareArea() {
        // Base model against the newest checkpoint (the training run's, else a stand-in fine-tune).
        w_->rescanModels();
        bool has_checkpoint = false;
        for (int i = 0; i < w_->catalog()->rowCount(); ++i)
            has_checkpoint = has_checkpoint || w_->catalog()->entry(i)->kind == ModelEntry::Kind::Checkpoint;
        if (!has_checkpoint) {
            QVERIFY(!kto::test::make_tuned_checkpoint(w_->store()->workspace() + "/runs", "shots", "step-8",
                                                      qEnvironmentVariable("KTO_DEMO_MODEL_DIR"))
                         .isEmpty());
            w_->rescanModels();
        }
        w_->showArea(MainWindow::CompareArea);
        ComparePanel* p = w_->comparePanel();
        p->promptsEdit()->setPlainText("a large red circle on a blue background\na small yellow square on a green background\n");
        p->seedsSpin()->setValue(2);
        p->stepsSpin()->setValue(10);
        p->setShuffleSeed(5);
        QSignalSpy ready(p, &ComparePanel::comparisonReady);
        QTest::mouseClick(p->renderButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(ready.count() == 1, 240000);
        QVERIFY(ready.first().first().toBool());
        p->views()->setCurrentIndex(ComparePanel::SideBySideView);
        save(w_.get(), "compare");
        p->views()->setCurrentIndex(ComparePanel::BlindView);
        p->vote(VoteChoice::Right);
        p->vote(VoteChoice::Tie);
        save(w_.get(), "compare-blind");
        p->views()->setCurrentIndex(ComparePanel::SideBySideView);
    }

    void helpOverlay() {
        w_->showArea(MainWindow::RateArea);
        w_->helpAction()->trigger();
        QTRY_VERIFY(w_->helpOverlay()->isVisible());
        save(w_.get(), "help");
        w_->helpOverlay()->hide();
    }

    void darkPalette() {
        // What a dark desktop theme hands the app: every colour must come from the palette.
        QApplication::setStyle(QStyleFactory::create("Fusion"));
        QPalette dark;
        dark.setColor(QPalette::Window, QColor(45, 45, 48));
        dark.setColor(QPalette::WindowText, QColor(230, 230, 230));
        dark.setColor(QPalette::Base, QColor(30, 30, 32));
        dark.setColor(QPalette::AlternateBase, QColor(55, 55, 60));
        dark.setColor(QPalette::Text, QColor(230, 230, 230));
        dark.setColor(QPalette::Button, QColor(55, 55, 60));
        dark.setColor(QPalette::ButtonText, QColor(230, 230, 230));
        dark.setColor(QPalette::Highlight, QColor(60, 110, 190));
        dark.setColor(QPalette::HighlightedText, Qt::white);
        dark.setColor(QPalette::PlaceholderText, QColor(150, 150, 150));
        dark.setColor(QPalette::Midlight, QColor(70, 70, 75));
        QApplication::setPalette(dark);
        w_->showArea(MainWindow::RateArea);
        save(w_.get(), "rate-dark");
        w_->showArea(MainWindow::GalleryArea);
        save(w_.get(), "gallery-dark");
        // The window's own background follows the palette (nothing painted a fixed light colour):
        // the status bar's strip below its text, whatever the gallery above it holds.
        const QImage img = w_->grab().toImage();
        QVERIFY(qGray(img.pixel(img.width() / 2, img.height() - 3)) < 128);
    }

    void cleanupTestCase() { w_.reset(); }
};

QTEST_MAIN(TestScreenshots)
#include "test_screenshots.moc"
