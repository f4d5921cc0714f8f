// Comparison sessions and their votes: recording a session, refusing bad ones, and turning votes
// into labels (winner liked, loser disliked, once; ties and image-less votes skipped).
#include <QTemporaryDir>
#include <QtTest>

#include "storage/store/store.h"
#include "storage_fixtures.h"
#include "tests/support/error_check.h"

using namespace kto::storage;

class TestComparisons : public QObject {
    Q_OBJECT
    QTemporaryDir dir_;
    int n_ = 0;
    std::unique_ptr<Store> fresh() {
        StoreOptions o;
        o.clock = kto::test::stepping_clock();
        return std::make_unique<Store>(Workspace(kto::test::temp_path(dir_, "ws" + std::to_string(n_++))), o);
    }

private slots:
    void sessionRoundTrip() {
        auto store = fresh();
        const auto base = store->ensure_model("kto-demo", "/m/kto-demo");
        const auto tuned = store->ensure_model("run 1 / step-10", "/m/kto-demo");
        ComparisonInput c;
        c.id = "cmp-1";
        c.a_model_id = base;
        c.b_model_id = tuned;
        c.b_checkpoint = "/ws/runs/1/step-10/unet";
        c.settings_json = R"({"steps":4})";
        c.blind = true;
        store->add_comparison(c);
        const auto r = store->comparison("cmp-1");
        QVERIFY(r.has_value());
        QCOMPARE(r->a_model_id, base);
        QCOMPARE(r->b_model_id, tuned);
        QVERIFY(!r->a_checkpoint);
        QCOMPARE(r->b_checkpoint.value(), std::string("/ws/runs/1/step-10/unet"));
        QCOMPARE(r->settings_json, std::string(R"({"steps":4})"));
        QVERIFY(r->blind);
        QVERIFY(!r->created_at.empty());
        QCOMPARE(store->comparisons().size(), std::size_t(1));
        QVERIFY(!store->comparison("nope"));
    }

    void badSessionsRefused() {
        auto store = fresh();
        const auto base = store->ensure_model("kto-demo");
        ComparisonInput c;
        c.id = "x";
        c.a_model_id = base;
        c.b_model_id = base;
        store->add_comparison(c);
        kto::test::expect_error([&] { store->add_comparison(c); }, "already exists");
        c.id = "";
        kto::test::expect_error([&] { store->add_comparison(c); }, "empty id");
        c.id = "y";
        c.b_model_id = 999;
        kto::test::expect_error([&] { store->add_comparison(c); }, "999");
        QCOMPARE(store->comparisons().size(), std::size_t(1));
    }

    void votesBecomeLabelsOnce() {
        auto store = fresh();
        const auto ids = kto::test::add_images(*store, "a red circle", 6);
        const auto model = store->ensure_model("demo", "/models/demo");
        auto vote = [&](std::optional<std::int64_t> l, std::optional<std::int64_t> r, Winner w) {
            ComparisonVoteInput v;
            v.compare_id = "s";
            v.prompt = "a red circle";
            v.left_model_id = v.right_model_id = model;
            v.left_image_id = l;
            v.right_image_id = r;
            v.winner = w;
            return store->add_vote(v);
        };
        vote(ids[0], ids[1], Winner::Left);
        vote(ids[2], ids[3], Winner::Right);
        vote(ids[4], ids[5], Winner::Tie);
        vote(ids[4], std::nullopt, Winner::Left);  // no right image: nothing to dislike
        const VoteLabelsApplied a = store->apply_vote_labels("s");
        QCOMPARE(a.votes, std::int64_t(2));
        QCOMPARE(a.liked, std::int64_t(2));
        QCOMPARE(a.disliked, std::int64_t(2));
        QCOMPARE(a.skipped, std::int64_t(2));
        QCOMPARE(store->current_label(ids[0]), Label::Like);
        QCOMPARE(store->current_label(ids[1]), Label::Dislike);
        QCOMPARE(store->current_label(ids[2]), Label::Dislike);
        QCOMPARE(store->current_label(ids[3]), Label::Like);
        QCOMPARE(store->current_label(ids[4]), Label::None);
        QCOMPARE(store->current_label(ids[5]), Label::None);
        const LabelCounts c = store->counts();
        QCOMPARE(c.liked, std::int64_t(2));
        QCOMPARE(c.disliked, std::int64_t(2));
        // The labels are ordinary history rows: undo works on them.
        QCOMPARE(store->label_history(ids[0]).size(), std::size_t(1));
        QCOMPARE(store->undo_label(ids[0]), Label::None);

        // Applying again changes nothing; a new vote is applied on its own.
        const VoteLabelsApplied again = store->apply_vote_labels("s");
        QCOMPARE(again.votes, std::int64_t(0));
        QCOMPARE(store->current_label(ids[0]), Label::None);
        vote(ids[5], ids[4], Winner::Left);
        QCOMPARE(store->apply_vote_labels("s").votes, std::int64_t(1));
        QCOMPARE(store->current_label(ids[5]), Label::Like);
        QCOMPARE(store->current_label(ids[4]), Label::Dislike);
        const auto votes = store->votes("s");
        QVERIFY(votes[0].labels_applied_at.has_value());
        QVERIFY(!votes[2].labels_applied_at.has_value());  // the tie
        // Another session's votes are untouched.
        QCOMPARE(store->apply_vote_labels("other").votes, std::int64_t(0));
    }
};

QTEST_GUILESS_MAIN(TestComparisons)
#include "test_comparisons.moc"
