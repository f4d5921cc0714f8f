// The Compare area in the real main window, offscreen: the default pair (base model against the
// newest checkpoint), a comparison rendered on the worker thread on the demo model against a
// perturbed UNet checkpoint, side by side and swipe/toggle, a blind A/B round voted with keys
// (identities hidden until the end, win rate shown), votes and images in the store with their
// provenance, votes turned into labels, and a second render served from the cache.
#include <QAction>
#include <QApplication>
#include <QComboBox>
#include <QFileInfo>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QThread>
#include <QtTest>

#include "storage/store/store.h"
#include "tests/gui/compare_support.h"
#include "tests/gui/gui_support.h"
#include "ui/app/main_window.h"
#include "ui/common/image_view.h"
#include "ui/compare/compare_panel.h"
#include "ui/compare/swipe_view.h"
#include "ui/generate/model_catalog.h"
#include "ui/store/store_service.h"

using namespace kto::ui;

class TestCompare : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    QString ws_;
    QString demo_;
    QString newest_unet_;
    std::unique_ptr<MainWindow> w_;

    static void press(QWidget* target, Qt::Key key) {
        QWidget* focus = QApplication::focusWidget();
        QTest::keyClick(focus ? focus : target, key);
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        kto::test::isolate_settings(tmp_.filePath("settings"));
        demo_ = qEnvironmentVariable("KTO_DEMO_MODEL_DIR");
        QVERIFY2(QFileInfo::exists(demo_ + "/model_index.json"), qPrintable(demo_));
        ws_ = tmp_.filePath("ws");
        // Two checkpoints of one run, the second written later: the default B is the newest.
        QVERIFY(!kto::test::make_tuned_checkpoint(ws_ + "/runs", "1", "step-2", demo_, 0.1).isEmpty());
        QTest::qWait(50);
        newest_unet_ = kto::test::make_tuned_checkpoint(ws_ + "/runs", "1", "step-4", demo_, 0.3);
        QVERIFY(!newest_unet_.isEmpty());

        StartupOptions o;
        o.workspace = ws_;
        o.restore_state = false;
        o.demo_model = demo_;
        w_ = std::make_unique<MainWindow>(o);
        QSignalSpy opened(w_.get(), &MainWindow::workspaceOpened);
        w_->show();
        QApplication::setActiveWindow(w_.get());
        QVERIFY(QTest::qWaitForWindowExposed(w_.get()));
        QVERIFY(opened.count() || opened.wait(10000));
        QVERIFY(opened.first().first().toBool());
    }

    void defaultsToBaseAgainstNewestCheckpoint() {
        w_->showArea(MainWindow::CompareArea);
        ComparePanel* p = w_->comparePanel();
        QVERIFY2(p->modelBoxA()->currentText().startsWith("kto-demo"), qPrintable(p->modelBoxA()->currentText()));
        QVERIFY2(p->modelBoxB()->currentText().startsWith("1/step-4"), qPrintable(p->modelBoxB()->currentText()));
        QCOMPARE(p->modelBoxB()->currentData(ModelCatalog::UnetPathRole).toString(), newest_unet_);
    }

    void renderVoteBlindAndTurnVotesIntoLabels() {
        ComparePanel* p = w_->comparePanel();
        p->promptsEdit()->setPlainText("a large red circle on a blue background\n\na small yellow square on a green background\n");
        p->seedsSpin()->setValue(2);
        p->stepsSpin()->setValue(3);
        p->setShuffleSeed(2024);
        QSignalSpy ready(p, &ComparePanel::comparisonReady);
        QTest::mouseClick(p->renderButton(), Qt::LeftButton);
        QVERIFY(p->isRendering());
        QVERIFY(!p->renderButton()->isEnabled());
        QTRY_VERIFY_WITH_TIMEOUT(ready.count() == 1, 240000);
        QVERIFY2(ready.first().first().toBool(), qPrintable(p->statusLabel()->text()));
        QCOMPARE(p->cells().size(), 4);
        QCOMPARE(p->session().a.name, QString("kto-demo"));
        QCOMPARE(p->session().b.unet_path, newest_unet_);
        for (int c = 0; c < 4; ++c)
            for (int side = 0; side < 2; ++side) QVERIFY(!p->image(c, side).isNull());
        QVERIFY(p->image(0, 0) != p->image(0, 1));  // base and checkpoint differ for the same seed
        QVERIFY(p->image(0, 0) != p->image(1, 0));  // and seeds differ
        // Side by side: every cell's views show their images.
        auto* cell = p->findChild<ImageView*>("compareCell3B");
        QVERIFY(cell);
        QCOMPARE(cell->image(), p->image(3, 1));

        // Blind A/B with the keys: identities hidden while voting.
        p->views()->setCurrentIndex(ComparePanel::BlindView);
        QTRY_VERIFY(p->blindPage()->hasFocus() || p->blindPage()->isAncestorOf(QApplication::focusWidget()));
        QVERIFY(p->revealLabel()->text().isEmpty());
        const QList<QLabel*> labels = p->blindPage()->findChildren<QLabel*>();
        for (QLabel* l : labels) QVERIFY2(!l->text().contains("step-4") && !l->text().contains("kto-demo"), qPrintable(l->text()));
        const BlindSession::Pair first = p->blind().current();
        QCOMPARE(p->blindLeftView()->image(), p->image(first.cell, first.a_on_left ? 0 : 1));
        QCOMPARE(p->blindRightView()->image(), p->image(first.cell, first.a_on_left ? 1 : 0));

        QSignalSpy finished(p, &ComparePanel::blindFinished);
        const Qt::Key keys[] = {Qt::Key_Left, Qt::Key_Right, Qt::Key_Down, Qt::Key_Left};
        const VoteChoice choices[] = {VoteChoice::Left, VoteChoice::Right, VoteChoice::Tie, VoteChoice::Left};
        std::int64_t b_wins = 0, a_wins = 0, ties = 0;
        for (int i = 0; i < 4; ++i) {
            const bool a_left = p->blind().current().a_on_left;
            press(p->blindPage(), keys[i]);
            QCOMPARE(p->blind().position(), i + 1);
            if (choices[i] == VoteChoice::Tie) ++ties;
            else if ((choices[i] == VoteChoice::Left) == a_left) ++a_wins;
            else ++b_wins;
            if (i < 3) QVERIFY(p->revealLabel()->text().isEmpty());
        }
        QCOMPARE(finished.count(), 1);
        QCOMPARE(p->blind().b_wins(), b_wins);
        QCOMPARE(p->blind().a_wins(), a_wins);
        QCOMPARE(p->blind().ties(), std::int64_t(1));
        const kto::WinRate rate = kto::win_rate(b_wins, a_wins, ties);
        const QString text = p->winRateLabel()->text();
        QVERIFY2(text.contains(QString::number(100.0 * rate.rate, 'f', 0) + "%") && text.contains("95% CI") &&
                     text.contains("4 votes") && text.contains("ties count half"),
                 qPrintable(text));
        // Revealed at the end.
        QVERIFY(p->revealLabel()->text().contains("A = kto-demo"));
        QVERIFY(p->revealLabel()->text().contains("B = 1/step-4"));
        // A fifth key press does nothing.
        press(p->blindPage(), Qt::Key_Left);
        QCOMPARE(p->blind().position(), 4);

        // Votes and both sides' images reached the store, with provenance.
        QTRY_COMPARE_WITH_TIMEOUT(p->votesSaved(), 4, 20000);
        QTRY_COMPARE(w_->store()->counts().total, 8);
        {
            kto::storage::Store s{kto::storage::Workspace(ws_.toStdString())};
            const auto session = s.comparison(p->session().id.toStdString());
            QVERIFY(session.has_value());
            QVERIFY(session->blind);
            QCOMPARE(QString::fromStdString(session->b_checkpoint.value()), newest_unet_);
            const auto votes = s.votes(p->session().id.toStdString());
            QCOMPARE(votes.size(), std::size_t(4));
            kto::storage::ImageQuery q;
            q.checkpoint = newest_unet_.toStdString();
            const auto tuned = s.query_images(q);
            QCOMPARE(tuned.size(), std::size_t(4));
            QCOMPARE(tuned[0].model_name, std::string("1/step-4"));
            QCOMPARE(tuned[0].steps, 3);
            QVERIFY(tuned[0].sampler == p->session().sampler.toStdString());
        }

        // Votes into labels: winners liked, losers disliked, the tie skipped.
        QVERIFY(p->applyLabelsButton()->isEnabled());
        QSignalSpy applied(p, &ComparePanel::labelsApplied);
        QTest::mouseClick(p->applyLabelsButton(), Qt::LeftButton);
        QTRY_COMPARE(applied.count(), 1);
        QCOMPARE(applied.first().first().toLongLong(), 3);
        QTRY_COMPARE(w_->store()->counts().liked, 3);
        QCOMPARE(w_->store()->counts().disliked, 3);
        QVERIFY(!p->applyLabelsButton()->isEnabled());
        QVERIFY(w_->statusCountsText().contains("3 liked"));
    }

    void swipeAndToggle() {
        ComparePanel* p = w_->comparePanel();
        p->views()->setCurrentIndex(ComparePanel::SwipeViewTab);
        SwipeView* swipe = p->swipeView();
        QCOMPARE(swipe->split(), 0.5);
        swipe->setFocus();
        QTRY_VERIFY(swipe->hasFocus());
        press(swipe, Qt::Key_T);
        QCOMPARE(swipe->split(), 0.0);
        p->toggleAction()->trigger();
        QCOMPARE(swipe->split(), 1.0);
        // All A: the middle of the view shows side A's image.
        const QImage shot = swipe->grab().toImage();
        QVERIFY(!shot.isNull());
        QSet<QRgb> colours;
        for (int y = 0; y < shot.height(); y += 5)
            for (int x = 0; x < shot.width(); x += 5) colours.insert(shot.pixel(x, y));
        QVERIFY(colours.size() > 4);
    }

    void reopeningComesFromTheCache() {
        ComparePanel* p = w_->comparePanel();
        const QString file = p->cells().first().image_b;
        const QDateTime written = QFileInfo(file).lastModified();
        QSignalSpy ready(p, &ComparePanel::comparisonReady);
        QTest::mouseClick(p->renderButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(ready.count() == 1, 60000);
        QVERIFY(ready.first().first().toBool());
        QCOMPARE(p->cells().first().image_b, file);
        QCOMPARE(QFileInfo(file).lastModified(), written);  // not rendered again
        QVERIFY(!p->image(3, 1).isNull());
        // A new session: votes start over.
        QCOMPARE(p->blind().position(), 0);
        QVERIFY(p->revealLabel()->text().isEmpty());
    }

    void cleanupTestCase() { w_.reset(); }
};

QTEST_MAIN(TestCompare)
#include "test_compare.moc"
