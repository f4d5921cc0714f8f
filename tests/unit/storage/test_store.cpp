// The label store: workspace layout, generations + images, queries and filters, counts, deletes,
// training runs, comparison votes, concurrent connections.
#include <QTemporaryDir>
#include <QtTest>

#include <SQLiteCpp/Database.h>

#include "storage/store/schema.h"
#include "storage/store/sha256.h"
#include "storage/store/store.h"
#include "storage/store/timestamps.h"
#include "storage_fixtures.h"

using namespace kto::storage;
namespace fs = std::filesystem;
using kto::test::add_images;
using kto::test::tiny_png;

class TestStore : public QObject {
    Q_OBJECT

private slots:
    void workspaceLayoutAndPragmas() {
        QTemporaryDir dir;
        const fs::path root = kto::test::temp_path(dir, "ws/nested");
        Store store{Workspace(root)};
        QVERIFY(fs::is_directory(root / "images"));
        QVERIFY(fs::is_directory(root / "runs"));
        QVERIFY(fs::is_regular_file(root / "studio.sqlite3"));
        QCOMPARE(store.schema_version(), latest_schema_version());
        QCOMPARE(store.connection().execAndGet("PRAGMA journal_mode").getString(), std::string("wal"));
        QCOMPARE(store.connection().execAndGet("PRAGMA foreign_keys").getInt(), 1);
        QVERIFY(store.connection().execAndGet("PRAGMA busy_timeout").getInt() > 0);
    }

    void defaultLocation() {
        const QByteArray old_xdg = qgetenv("XDG_DATA_HOME");
        qputenv("XDG_DATA_HOME", "/tmp/kto-xdg");
        QCOMPARE(Workspace::default_location(), fs::path("/tmp/kto-xdg/kto-studio/workspace"));
        qputenv("XDG_DATA_HOME", "relative/ignored");
        QCOMPARE(Workspace::default_location(),
                 fs::path(qgetenv("HOME").toStdString()) / ".local/share/kto-studio/workspace");
        if (old_xdg.isNull()) qunsetenv("XDG_DATA_HOME");
        else qputenv("XDG_DATA_HOME", old_xdg);
    }

    void addGenerationStoresContentAddressedFiles() {
        QTemporaryDir dir;
        Store store(Workspace(kto::test::temp_path(dir)));
        const auto ids = add_images(store, "a red circle", 2);
        QCOMPARE(ids.size(), std::size_t(2));
        const auto img = store.image(ids[0]);
        QVERIFY(img.has_value());
        const std::string sha = sha256_hex(tiny_png(0));
        QCOMPARE(img->sha256.value(), sha);
        QCOMPARE(img->file, "images/" + sha.substr(0, 2) + "/" + sha + ".png");
        QVERIFY(img->path.is_absolute());
        QCOMPARE(kto::test::read_file(img->path), tiny_png(0));
        QCOMPARE(img->byte_size, static_cast<std::int64_t>(tiny_png(0).size()));
        QCOMPARE(img->width, 64);
        QCOMPARE(img->prompt, std::string("a red circle"));
        QCOMPARE(img->model_name, std::string("demo"));
        QCOMPARE(img->seed, std::int64_t(42));
        QCOMPARE(img->cfg, 7.5);
        QCOMPARE(img->label, Label::None);
        QVERIFY(!img->created_at.empty());
        // No temporary files left beside the stored images.
        for (const auto& e : fs::recursive_directory_iterator(store.workspace().images_dir())) {
            QVERIFY2(e.path().filename().string().front() != '.', e.path().c_str());
        }
        // Same bytes again: same file, new row.
        const auto again = add_images(store, "again", 1);
        QCOMPARE(store.image(again[0])->file, img->file);
    }

    void addGenerationRejectsBadInput() {
        QTemporaryDir dir;
        Store store(Workspace(kto::test::temp_path(dir)));
        GenerationInput g;
        g.prompt = "x";
        g.model_id = 999;
        ImageInput im;
        im.encoded = tiny_png();
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.add_generation(g, {im}));
        g.model_id = store.ensure_model("demo");
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.add_generation(g, {ImageInput{}}));
        QCOMPARE(store.counts().images, std::int64_t(0));
        // From a file on disk.
        const fs::path src = kto::test::temp_path(dir, "src.PNG");
        kto::test::write_file(src, tiny_png(9));
        im = ImageInput{};
        im.source_file = src;
        const auto added = store.add_generation(g, {im});
        QVERIFY(store.image(added.image_ids[0])->file.size() > 4);
        QVERIFY(QString::fromStdString(store.image(added.image_ids[0])->file).endsWith(".png"));
    }

    void modelsAreUnique() {
        QTemporaryDir dir;
        Store store(Workspace(kto::test::temp_path(dir)));
        const auto a = store.ensure_model("demo", "/m/demo");
        QCOMPARE(store.ensure_model("demo", "/m/demo", "abc"), a);
        QCOMPARE(store.model(a)->content_hash, std::string("abc"));
        QVERIFY(store.ensure_model("demo", "/m/other") != a);
        QCOMPARE(store.models().size(), std::size_t(2));
        QCOMPARE(store.find_model("demo")->id, a);
        QVERIFY(!store.find_model("none"));
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.ensure_model(""));
    }

    void queriesAndFilters() {
        QTemporaryDir dir;
        StoreOptions opts;
        opts.clock = kto::test::stepping_clock(10);
        Store store(Workspace(kto::test::temp_path(dir)), opts);
        const auto cats = add_images(store, "a Cat on a mat", 3, 0);
        const auto dogs = add_images(store, "a dog 100% happy", 2, 10, "tuned");
        store.set_label(cats[0], Label::Like);
        store.set_label(cats[1], Label::Dislike);
        store.set_label(dogs[0], Label::Like);

        ImageQuery q;
        QCOMPARE(store.query_images(q).size(), std::size_t(5));
        q.label = LabelFilter::Liked;
        QCOMPARE(store.query_images(q).size(), std::size_t(2));
        q.label = LabelFilter::Disliked;
        QCOMPARE(store.query_images(q).front().id, cats[1]);
        q.label = LabelFilter::Unlabeled;
        QCOMPARE(store.query_images(q).size(), std::size_t(2));
        q.label = LabelFilter::Labeled;
        QCOMPARE(store.query_images(q).size(), std::size_t(3));

        q = {};
        q.prompt_contains = "cat";  // case-insensitive
        QCOMPARE(store.query_images(q).size(), std::size_t(3));
        q.prompt_contains = "100%";  // % is literal, not a wildcard
        QCOMPARE(store.query_images(q).size(), std::size_t(2));
        q.prompt_contains = "1%0";
        QCOMPARE(store.query_images(q).size(), std::size_t(0));

        q = {};
        q.model_name = "tuned";
        QCOMPARE(store.query_images(q).size(), std::size_t(2));
        q = {};
        q.model_id = store.find_model("demo")->id;
        QCOMPARE(store.query_images(q).size(), std::size_t(3));

        // Unlabeled first, then by id; newest first; paging.
        q = {};
        q.unlabeled_first = true;
        auto rows = store.query_images(q);
        QCOMPARE(rows[0].id, cats[2]);
        QCOMPARE(rows[1].id, dogs[1]);
        QCOMPARE(rows[2].id, cats[0]);
        q = {};
        q.newest_first = true;
        q.limit = 2;
        q.offset = 1;
        rows = store.query_images(q);
        QCOMPARE(rows.size(), std::size_t(2));
        QCOMPARE(rows[0].id, dogs[0]);

        // Date range over creation times (the clock steps one second a call).
        q = {};
        q.since = store.image(dogs[0])->created_at;
        QCOMPARE(store.query_images(q).size(), std::size_t(2));
        q.since = iso_bound("2026-11-10", false, "since");
        q.until = iso_bound("2026-11-10", true, "until");
        QCOMPARE(store.query_images(q).size(), std::size_t(5));
        q.until = iso_bound("2026-11-09", true, "until");
        QCOMPARE(store.query_images(q).size(), std::size_t(0));

        // Checkpoint / run filters.
        GenerationInput g;
        g.prompt = "tuned output";
        g.model_id = store.ensure_model("demo", "/models/demo");
        g.run_id = store.add_run("run a", "{}");
        g.checkpoint = "/runs/1/checkpoint-100";
        ImageInput im;
        im.encoded = tiny_png(50);
        store.add_generation(g, {im});
        q = {};
        q.checkpoint = "/runs/1/checkpoint-100";
        QCOMPARE(store.query_images(q).size(), std::size_t(1));
        q = {};
        q.run_id = *g.run_id;
        QCOMPARE(store.query_images(q).front().checkpoint.value(), *g.checkpoint);

        // Counts and per-prompt balance.
        const LabelCounts c = store.counts();
        QCOMPARE(c.images, std::int64_t(6));
        QCOMPARE(c.liked, std::int64_t(2));
        QCOMPARE(c.disliked, std::int64_t(1));
        QCOMPARE(c.unlabeled, std::int64_t(3));
        ImageQuery cq;
        cq.prompt_contains = "dog";
        QCOMPARE(store.counts(cq).images, std::int64_t(2));
        QCOMPARE(store.counts(cq).liked, std::int64_t(1));
        const auto balance = store.prompt_balance();
        QCOMPARE(balance.size(), std::size_t(3));
        QCOMPARE(balance[0].prompt, std::string("a Cat on a mat"));
        QCOMPARE(balance[0].counts.liked, std::int64_t(1));
        QCOMPARE(balance[0].counts.disliked, std::int64_t(1));
        QCOMPARE(balance[0].counts.unlabeled, std::int64_t(1));

        // Stopping a stream early.
        int seen = 0;
        store.for_each_image({}, [&](const ImageRecord&) { return ++seen < 2; });
        QCOMPARE(seen, 2);
    }

    void isoBounds() {
        QCOMPARE(iso_bound("2026-11-25", false, "x"), std::string("2026-11-25T00:00:00.000Z"));
        QCOMPARE(iso_bound("2026-11-25", true, "x"), std::string("2026-11-25T23:59:59.999Z"));
        QCOMPARE(iso_bound("2026-11-25T10:30", true, "x"), std::string("2026-11-25T10:30:59.999Z"));
        QCOMPARE(iso_bound("2026-11-25 10:30:05Z", false, "x"), std::string("2026-11-25T10:30:05.000Z"));
        QCOMPARE(iso_bound("2026-11-25T10:30:05.250Z", true, "x"), std::string("2026-11-25T10:30:05.250Z"));
        for (const char* bad : {"", "yesterday", "2026-13-01", "2026-11-25T25:00", "2026/11/25",
                                "2026-11-25T10:30+02:00"}) {
            QVERIFY_THROWS_EXCEPTION(kto::Error, iso_bound(bad, false, "--since"));
        }
        const std::string now = utc_now_iso();
        QCOMPARE(now.size(), std::size_t(24));
        QCOMPARE(iso_bound(now, false, "x"), now);
    }

    void deleteImagesRemovesRowsAndUnusedFiles() {
        QTemporaryDir dir;
        Store store(Workspace(kto::test::temp_path(dir)));
        const auto a = add_images(store, "p", 2, 0);
        const auto shared = add_images(store, "q", 1, 0);  // same bytes as a[0]
        store.set_label(a[0], Label::Like);
        const fs::path f0 = store.image(a[0])->path, f1 = store.image(a[1])->path;
        QCOMPARE(store.delete_images({a[0], a[1], 12345}), std::int64_t(2));
        QVERIFY(!store.image(a[0]));
        QVERIFY(fs::exists(f0));   // still used by `shared`
        QVERIFY(!fs::exists(f1));  // unused now
        QCOMPARE(store.connection().execAndGet("SELECT COUNT(*) FROM labels").getInt(), 0);
        // The emptied generation goes too; the other stays.
        QCOMPARE(store.connection().execAndGet("SELECT COUNT(*) FROM generations").getInt(), 1);
        store.delete_images(shared);
        QVERIFY(!fs::exists(f0));
        QCOMPARE(store.counts().images, std::int64_t(0));
    }

    void labelsOnUnknownImagesFail() {
        QTemporaryDir dir;
        Store store(Workspace(kto::test::temp_path(dir)));
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.set_label(7, Label::Like));
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.undo_label(7));
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.current_label(7));
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.label_history(7));
        QCOMPARE(store.connection().execAndGet("SELECT COUNT(*) FROM labels").getInt(), 0);
    }

    void trainingRuns() {
        QTemporaryDir dir;
        Store store(Workspace(kto::test::temp_path(dir)));
        const auto id = store.add_run("kto beta 5000", R"({"beta": 5000})", "runs/1");
        auto run = store.run(id);
        QCOMPARE(run->status, RunStatus::Created);
        QVERIFY(!run->started_at && !run->finished_at);
        store.set_run_status(id, RunStatus::Running);
        const auto started = store.run(id)->started_at;
        QVERIFY(started.has_value());
        store.set_run_status(id, RunStatus::Running);
        QCOMPARE(store.run(id)->started_at, started);  // recorded once
        store.set_run_status(id, RunStatus::Finished);
        run = store.run(id);
        QCOMPARE(run->status, RunStatus::Finished);
        QVERIFY(run->finished_at.has_value());
        QCOMPARE(run->config_json, std::string(R"({"beta": 5000})"));
        store.set_run_folder(id, "runs/9");
        QCOMPARE(store.runs().front().folder, std::string("runs/9"));
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.add_run("bad", "{not json"));
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.set_run_status(99, RunStatus::Failed));
        QVERIFY_THROWS_EXCEPTION(kto::Error, run_status_from_name("exploded"));
    }

    void comparisonVotes() {
        QTemporaryDir dir;
        Store store(Workspace(kto::test::temp_path(dir)));
        const auto base = store.ensure_model("base"), tuned = store.ensure_model("tuned");
        const auto imgs = add_images(store, "p", 2);
        ComparisonVoteInput v;
        v.compare_id = "blind-1";
        v.prompt = "a cat";
        v.seed = 3;
        v.left_model_id = base;
        v.right_model_id = tuned;
        v.left_image_id = imgs[0];
        v.right_image_id = imgs[1];
        v.winner = Winner::Right;
        store.add_vote(v);
        v.winner = Winner::Tie;
        store.add_vote(v);
        v.winner = Winner::Right;
        v.compare_id = "other";
        store.add_vote(v);
        const auto votes = store.votes("blind-1");
        QCOMPARE(votes.size(), std::size_t(2));
        QCOMPARE(votes[0].winner, Winner::Right);
        QCOMPARE(votes[0].left_image_id.value(), imgs[0]);
        QCOMPARE(votes[0].prompt, std::string("a cat"));
        const VoteTally t = store.tally_votes("blind-1");
        QCOMPARE(t.left, std::int64_t(0));
        QCOMPARE(t.right, std::int64_t(1));
        QCOMPARE(t.tie, std::int64_t(1));
        v.left_model_id = 999;
        QVERIFY_THROWS_EXCEPTION(kto::Error, store.add_vote(v));
        // Deleting a voted image keeps the vote, without the image.
        store.delete_images({imgs[0]});
        QVERIFY(!store.votes("blind-1")[0].left_image_id);
    }

    // A reader connection sees committed writes and is not blocked by an open write transaction.
    void readersRunDuringWrites() {
        QTemporaryDir dir;
        const fs::path root = kto::test::temp_path(dir);
        Store writer{Workspace(root)};
        Store reader{Workspace(root)};
        const auto ids = add_images(writer, "p", 3);
        QCOMPARE(reader.counts().images, std::int64_t(3));
        writer.connection().exec("BEGIN IMMEDIATE");
        writer.connection().exec("UPDATE images SET label = 1");
        QCOMPARE(reader.counts().liked, std::int64_t(0));  // not committed yet, and no wait
        writer.connection().exec("COMMIT");
        QCOMPARE(reader.counts().liked, std::int64_t(3));
        // A second writer waits for the lock instead of failing (busy timeout).
        StoreOptions quick;
        quick.busy_timeout_ms = 50;
        Store impatient{Workspace(root), quick};
        writer.connection().exec("BEGIN IMMEDIATE");
        QVERIFY_THROWS_EXCEPTION(kto::Error, impatient.set_label(ids[0], Label::Dislike));
        writer.connection().exec("COMMIT");
        impatient.set_label(ids[0], Label::Dislike);
        QCOMPARE(reader.current_label(ids[0]), Label::Dislike);
    }
};

QTEST_GUILESS_MAIN(TestStore)
#include "test_store.moc"
