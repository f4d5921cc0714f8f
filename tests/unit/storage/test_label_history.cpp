// Label history: relabel, clear and undo all keep history; the latest live entry counts.
#include <QTemporaryDir>
#include <QtTest>

#include <SQLiteCpp/Database.h>

#include "storage/store/store.h"
#include "storage_fixtures.h"

using namespace kto::storage;

class TestLabelHistory : public QObject {
    Q_OBJECT
    QTemporaryDir dir_;
    std::unique_ptr<Store> store_;
    std::vector<std::int64_t> ids_;

private slots:
    void init() {
        static int n = 0;
        StoreOptions opts;
        opts.clock = kto::test::stepping_clock();
        store_ = std::make_unique<Store>(
            Workspace(kto::test::temp_path(dir_, "ws" + std::to_string(n++))), opts);
        ids_ = kto::test::add_images(*store_, "a blue square", 2);
    }
    void cleanup() { store_.reset(); }

    void relabelKeepsHistoryLatestCounts() {
        const auto id = ids_[0];
        store_->set_label(id, Label::Like);
        store_->set_label(id, Label::Dislike);
        QCOMPARE(store_->current_label(id), Label::Dislike);
        const auto h = store_->label_history(id);
        QCOMPARE(h.size(), std::size_t(2));
        QCOMPARE(h[0].value, Label::Like);
        QCOMPARE(h[1].value, Label::Dislike);
        QVERIFY(h[0].created_at < h[1].created_at);
        QCOMPARE(store_->counts().disliked, std::int64_t(1));
        QCOMPARE(store_->counts().liked, std::int64_t(0));
        QCOMPARE(store_->current_label(ids_[1]), Label::None);  // untouched neighbour
    }

    void clearIsAHistoryEntry() {
        const auto id = ids_[0];
        store_->set_label(id, Label::Like);
        store_->clear_label(id);
        QCOMPARE(store_->current_label(id), Label::None);
        const auto h = store_->label_history(id);
        QCOMPARE(h.size(), std::size_t(2));
        QCOMPARE(h[1].value, Label::None);
        QCOMPARE(store_->counts().unlabeled, std::int64_t(2));
        // Undoing the clear brings the like back.
        QCOMPARE(store_->undo_label(id), Label::Like);
        QCOMPARE(store_->current_label(id), Label::Like);
    }

    void undoWalksBackAndKeepsEntries() {
        const auto id = ids_[0];
        store_->set_label(id, Label::Like);
        store_->set_label(id, Label::Dislike);
        store_->set_label(id, Label::Like);
        QCOMPARE(store_->undo_label(id), Label::Dislike);
        QCOMPARE(store_->undo_label(id), Label::Like);
        QCOMPARE(store_->undo_label(id), Label::None);
        QCOMPARE(store_->current_label(id), Label::None);
        QVERIFY_THROWS_EXCEPTION(kto::Error, store_->undo_label(id));
        const auto h = store_->label_history(id);
        QCOMPARE(h.size(), std::size_t(3));  // nothing erased
        for (const auto& e : h) QVERIFY(e.undone_at.has_value());
        // A new label after undos is live again; undo returns to unlabeled.
        store_->set_label(id, Label::Dislike);
        QCOMPARE(store_->label_history(id).size(), std::size_t(4));
        QCOMPARE(store_->current_label(id), Label::Dislike);
        QCOMPARE(store_->undo_label(id), Label::None);
    }

    void queriesFollowTheCurrentLabel() {
        store_->set_label(ids_[0], Label::Like);
        store_->set_label(ids_[1], Label::Like);
        store_->undo_label(ids_[1]);
        ImageQuery q;
        q.label = LabelFilter::Liked;
        const auto liked = store_->query_images(q);
        QCOMPARE(liked.size(), std::size_t(1));
        QCOMPARE(liked[0].id, ids_[0]);
        QCOMPARE(liked[0].label, Label::Like);
        q.label = LabelFilter::Unlabeled;
        QCOMPARE(store_->query_images(q).front().id, ids_[1]);
    }

    // The cached label on the image row always equals the one derived from the history.
    void cachedLabelMatchesHistory() {
        const Label seq[] = {Label::Like, Label::Dislike, Label::None, Label::Like};
        for (Label l : seq) store_->set_label(ids_[0], l);
        store_->undo_label(ids_[0]);
        store_->undo_label(ids_[0]);
        const int derived = store_->connection()
                                .execAndGet("SELECT COALESCE((SELECT value FROM labels WHERE image_id = " +
                                            std::to_string(ids_[0]) +
                                            " AND undone_at IS NULL ORDER BY id DESC LIMIT 1), 0)")
                                .getInt();
        QCOMPARE(static_cast<int>(store_->current_label(ids_[0])), derived);
        QCOMPARE(store_->current_label(ids_[0]), Label::Dislike);
    }
};

QTEST_GUILESS_MAIN(TestLabelHistory)
#include "test_label_history.moc"
