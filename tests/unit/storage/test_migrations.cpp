// Schema migrations: from empty, from every older version (frozen schemas as they shipped, with
// data), a failing step rolled back, and newer or foreign databases refused without being touched.
#include <QTemporaryDir>
#include <QtTest>

#include <SQLiteCpp/Database.h>

#include "storage/store/schema.h"
#include "storage/store/store.h"
#include "storage_fixtures.h"

using namespace kto::storage;
namespace fs = std::filesystem;

namespace {

// Schema version 1 exactly as it shipped. Frozen: never edit (the migration code may not either).
const char* kShippedV1 = R"sql(
CREATE TABLE models (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    folder        TEXT NOT NULL DEFAULT '',
    content_hash  TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    UNIQUE (name, folder)
);
CREATE TABLE generations (
    id               INTEGER PRIMARY KEY,
    prompt           TEXT NOT NULL,
    negative_prompt  TEXT NOT NULL DEFAULT '',
    seed             INTEGER NOT NULL,
    steps            INTEGER NOT NULL,
    cfg              REAL NOT NULL,
    sampler          TEXT NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    model_id         INTEGER NOT NULL REFERENCES models(id),
    created_at       TEXT NOT NULL
);
CREATE INDEX generations_model ON generations(model_id);
CREATE TABLE images (
    id             INTEGER PRIMARY KEY,
    generation_id  INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
    file           TEXT NOT NULL,
    sha256         TEXT,
    byte_size      INTEGER NOT NULL,
    width          INTEGER NOT NULL DEFAULT 0,
    height         INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL
);
CREATE INDEX images_generation ON images(generation_id);
CREATE INDEX images_sha256 ON images(sha256) WHERE sha256 IS NOT NULL;
CREATE TABLE labels (
    id          INTEGER PRIMARY KEY,
    image_id    INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    value       INTEGER NOT NULL CHECK (value IN (-1, 0, 1)),
    created_at  TEXT NOT NULL,
    undone_at   TEXT
);
CREATE INDEX labels_image ON labels(image_id, id);
PRAGMA user_version = 1;
)sql";

// Version 1 data: image 1 liked then disliked, image 2 liked then the like undone, image 3 none.
const char* kV1Data = R"sql(
INSERT INTO models VALUES (1, 'demo', '/m/demo', '', '2026-01-01T00:00:00.000Z');
INSERT INTO generations VALUES (1, 'a red circle', '', 7, 20, 7.5, 'euler', 64, 64, 1,
                                '2026-01-01T00:00:01.000Z');
INSERT INTO images VALUES (1, 1, 'images/aa/aa.png', 'aa', 10, 64, 64, '2026-01-01T00:00:02.000Z');
INSERT INTO images VALUES (2, 1, 'images/bb/bb.png', 'bb', 10, 64, 64, '2026-01-01T00:00:02.000Z');
INSERT INTO images VALUES (3, 1, 'images/cc/cc.png', 'cc', 10, 64, 64, '2026-01-01T00:00:02.000Z');
INSERT INTO labels VALUES (1, 1, 1, '2026-01-01T00:00:03.000Z', NULL);
INSERT INTO labels VALUES (2, 1, -1, '2026-01-01T00:00:04.000Z', NULL);
INSERT INTO labels VALUES (3, 2, 1, '2026-01-01T00:00:05.000Z', '2026-01-01T00:00:06.000Z');
)sql";

// The step from version 1 to 2 as it shipped (frozen).
const char* kShippedV1toV2 = R"sql(
ALTER TABLE images ADD COLUMN label INTEGER NOT NULL DEFAULT 0 CHECK (label IN (-1, 0, 1));
UPDATE images SET label = COALESCE(
    (SELECT l.value FROM labels l WHERE l.image_id = images.id AND l.undone_at IS NULL
     ORDER BY l.id DESC LIMIT 1), 0);
CREATE TABLE training_runs (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    config_json  TEXT NOT NULL DEFAULT '{}',
    status       TEXT NOT NULL DEFAULT 'created',
    folder       TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT
);
ALTER TABLE generations ADD COLUMN checkpoint TEXT;
ALTER TABLE generations ADD COLUMN run_id INTEGER REFERENCES training_runs(id) ON DELETE SET NULL;
PRAGMA user_version = 2;
)sql";

const char* kV2Data = R"sql(
INSERT INTO training_runs (id, name, created_at) VALUES (1, 'run one', '2026-02-01T00:00:00.000Z');
INSERT INTO generations (id, prompt, seed, steps, cfg, sampler, width, height, model_id, created_at,
                         checkpoint, run_id)
    VALUES (2, 'tuned', 1, 20, 7.5, 'ddim', 64, 64, 1, '2026-02-01T00:00:01.000Z', 'ckpt-10', 1);
INSERT INTO images (id, generation_id, file, sha256, byte_size, created_at, label)
    VALUES (4, 2, 'images/dd/dd.png', 'dd', 10, '2026-02-01T00:00:02.000Z', 1);
INSERT INTO labels VALUES (4, 4, 1, '2026-02-01T00:00:03.000Z', NULL);
)sql";

// The step from version 2 to 3 as it shipped (frozen).
const char* kShippedV2toV3 = R"sql(
CREATE TABLE comparison_votes (
    id              INTEGER PRIMARY KEY,
    compare_id      TEXT NOT NULL,
    run_id          INTEGER REFERENCES training_runs(id) ON DELETE SET NULL,
    prompt          TEXT NOT NULL,
    seed            INTEGER NOT NULL,
    left_model_id   INTEGER NOT NULL REFERENCES models(id),
    right_model_id  INTEGER NOT NULL REFERENCES models(id),
    left_image_id   INTEGER REFERENCES images(id) ON DELETE SET NULL,
    right_image_id  INTEGER REFERENCES images(id) ON DELETE SET NULL,
    winner          TEXT NOT NULL CHECK (winner IN ('left', 'right', 'tie')),
    created_at      TEXT NOT NULL
);
CREATE INDEX comparison_votes_compare ON comparison_votes(compare_id);
PRAGMA user_version = 3;
)sql";

// Version 3 data: two votes of one session, image 1 (left) beat image 3 (right), then a tie.
const char* kV3Data = R"sql(
INSERT INTO comparison_votes (id, compare_id, prompt, seed, left_model_id, right_model_id, left_image_id,
                              right_image_id, winner, created_at)
    VALUES (1, 'old', 'a red circle', 7, 1, 1, 1, 3, 'left', '2026-03-01T00:00:00.000Z');
INSERT INTO comparison_votes (id, compare_id, prompt, seed, left_model_id, right_model_id, left_image_id,
                              right_image_id, winner, created_at)
    VALUES (2, 'old', 'a red circle', 7, 1, 1, 1, 3, 'tie', '2026-03-01T00:00:01.000Z');
)sql";

// The step from version 3 to 4 as it shipped (frozen).
const char* kShippedV3toV4 = R"sql(
CREATE TABLE comparisons (
    id             TEXT PRIMARY KEY,
    a_model_id     INTEGER NOT NULL REFERENCES models(id),
    b_model_id     INTEGER NOT NULL REFERENCES models(id),
    a_checkpoint   TEXT,
    b_checkpoint   TEXT,
    run_id         INTEGER REFERENCES training_runs(id) ON DELETE SET NULL,
    settings_json  TEXT NOT NULL DEFAULT '{}',
    blind          INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL
);
ALTER TABLE comparison_votes ADD COLUMN labels_applied_at TEXT;
PRAGMA user_version = 4;
)sql";

// Version 4 data: an image imported from a dataset as version 4 did (its label a history row).
const char* kV4Data = R"sql(
INSERT INTO models (id, name, folder, created_at)
    VALUES (2, 'imported:set', '/data/set', '2026-04-01T00:00:00.000Z');
INSERT INTO generations (id, prompt, seed, steps, cfg, sampler, width, height, model_id, created_at)
    VALUES (3, 'imported caption', 0, 0, 0, '', 0, 0, 2, '2026-04-01T00:00:00.000Z');
INSERT INTO images (id, generation_id, file, sha256, byte_size, created_at, label)
    VALUES (5, 3, '/data/set/train/a.png', NULL, 10, '2026-04-01T00:00:00.000Z', -1);
INSERT INTO labels VALUES (5, 5, -1, '2026-04-01T00:00:00.000Z', NULL);
)sql";

void make_db(const fs::path& file, const std::string& sql) {
    fs::create_directories(file.parent_path());
    SQLite::Database db(file.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(sql);
}

// Every schema object with its SQL, to compare an upgraded database with a fresh one.
std::vector<std::string> schema_of(SQLite::Database& db) {
    SQLite::Statement s(db, "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master "
                            "ORDER BY type, name");
    std::vector<std::string> out;
    while (s.executeStep()) out.push_back(s.getColumn(0).getString());
    return out;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const kto::Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

class TestMigrations : public QObject {
    Q_OBJECT
    QTemporaryDir dir_;
    int n_ = 0;
    fs::path fresh_dir() { return kto::test::temp_path(dir_, "ws" + std::to_string(n_++)); }

    std::vector<std::string> fresh_schema() {
        Store store{Workspace(fresh_dir())};
        return schema_of(store.connection());
    }

private slots:
    void migrationsAreNumberedInOrder() {
        const auto& all = migrations();
        QVERIFY(!all.empty());
        for (std::size_t i = 0; i < all.size(); ++i) QCOMPARE(all[i].version, int(i) + 1);
        QCOMPARE(latest_schema_version(), all.back().version);
    }

    void fromEmpty() {
        Store store{Workspace(fresh_dir())};
        QCOMPARE(store.schema_version(), latest_schema_version());
        const auto schema = schema_of(store.connection());
        for (const char* table : {"table models", "table generations", "table images", "table labels",
                                  "table training_runs", "table comparison_votes", "table comparisons"}) {
            bool found = false;
            for (const auto& s : schema) found = found || s.rfind(table, 0) == 0;
            QVERIFY2(found, table);
        }
        // Opening again changes nothing.
        const auto path = store.workspace().database_path();
        Store again{Workspace(path.parent_path())};
        QCOMPARE(schema_of(again.connection()), schema);
    }

    void fromVersion1KeepsDataAndBackfillsLabels() {
        const fs::path ws = fresh_dir();
        make_db(ws / "studio.sqlite3", std::string(kShippedV1) + kV1Data);
        Store store{Workspace(ws)};
        QCOMPARE(store.schema_version(), latest_schema_version());
        QCOMPARE(schema_of(store.connection()), fresh_schema());
        QCOMPARE(store.current_label(1), Label::Dislike);
        QCOMPARE(store.current_label(2), Label::None);  // its like was undone
        QCOMPARE(store.current_label(3), Label::None);
        QCOMPARE(store.label_history(1).size(), std::size_t(2));
        const LabelCounts c = store.counts();
        QCOMPARE(c.images, std::int64_t(3));
        QCOMPARE(c.disliked, std::int64_t(1));
        QCOMPARE(c.unlabeled, std::int64_t(2));
        // Undo still walks the old history.
        QCOMPARE(store.undo_label(1), Label::Like);
        const auto img = store.image(1);
        QCOMPARE(img->prompt, std::string("a red circle"));
        QVERIFY(!img->checkpoint && !img->run_id);
        // New features work on the upgraded database.
        store.add_run("after upgrade", "{}");
        ComparisonVoteInput v;
        v.compare_id = "c";
        v.left_model_id = v.right_model_id = 1;
        store.add_vote(v);
        QCOMPARE(store.tally_votes("c").tie, std::int64_t(1));
    }

    void fromVersion2() {
        const fs::path ws = fresh_dir();
        make_db(ws / "studio.sqlite3",
                std::string(kShippedV1) + kV1Data + kShippedV1toV2 + kV2Data);
        Store store{Workspace(ws)};
        QCOMPARE(store.schema_version(), latest_schema_version());
        QCOMPARE(schema_of(store.connection()), fresh_schema());
        const auto img = store.image(4);
        QCOMPARE(img->checkpoint.value(), std::string("ckpt-10"));
        QCOMPARE(img->run_id.value(), std::int64_t(1));
        QCOMPARE(img->label, Label::Like);
        QCOMPARE(store.runs().size(), std::size_t(1));
        QCOMPARE(store.counts().images, std::int64_t(4));
    }

    void fromVersion3KeepsVotesAndAppliesThemOnce() {
        const fs::path ws = fresh_dir();
        make_db(ws / "studio.sqlite3", std::string(kShippedV1) + kV1Data + kShippedV1toV2 + kV2Data +
                                           kShippedV2toV3 + kV3Data);
        Store store{Workspace(ws)};
        QCOMPARE(store.schema_version(), latest_schema_version());
        QCOMPARE(schema_of(store.connection()), fresh_schema());
        const auto votes = store.votes("old");
        QCOMPARE(votes.size(), std::size_t(2));
        QVERIFY(!votes[0].labels_applied_at);
        QCOMPARE(store.tally_votes("old").left, std::int64_t(1));
        QVERIFY(!store.comparison("old"));  // version 3 had no session rows
        // Old votes can be turned into labels: image 1 won (liked), image 3 lost; the tie is skipped.
        const VoteLabelsApplied a = store.apply_vote_labels("old");
        QCOMPARE(a.votes, std::int64_t(1));
        QCOMPARE(a.skipped, std::int64_t(1));
        QCOMPARE(store.current_label(1), Label::Like);
        QCOMPARE(store.current_label(3), Label::Dislike);
        QVERIFY(store.votes("old")[0].labels_applied_at.has_value());
        QCOMPARE(store.apply_vote_labels("old").votes, std::int64_t(0));
        QCOMPARE(store.label_history(1).size(), std::size_t(3));  // like, dislike (v1) + the vote's like
    }

    void fromVersion4KeepsImportedLabelsInTheirHistory() {
        const fs::path ws = fresh_dir();
        make_db(ws / "studio.sqlite3", std::string(kShippedV1) + kV1Data + kShippedV1toV2 + kV2Data +
                                           kShippedV2toV3 + kV3Data + kShippedV3toV4 + kV4Data);
        Store store{Workspace(ws)};
        QCOMPARE(store.schema_version(), latest_schema_version());
        QCOMPARE(schema_of(store.connection()), fresh_schema());
        QCOMPARE(store.current_label(5), Label::Dislike);
        const auto h = store.label_history(5);
        QCOMPARE(h.size(), std::size_t(1));  // the version-4 history row, not an imported base label
        QVERIFY(!h[0].imported);
        QCOMPARE(h[0].id, std::int64_t(5));
        QCOMPARE(store.connection().execAndGet("SELECT base_label FROM images WHERE id = 5").getInt(), 0);
        QCOMPARE(store.undo_label(5), Label::None);  // as before the upgrade
    }

    // A step that fails is rolled back: the database stays at the last good version, untouched.
    void failedStepRollsBack() {
        const fs::path ws = fresh_dir();
        // A v1 database that already has a table the v2 step wants to create.
        make_db(ws / "studio.sqlite3",
                std::string(kShippedV1) + kV1Data + "CREATE TABLE training_runs (x);");
        const std::string e = error_of([&] { Store s{Workspace(ws)}; });
        QVERIFY2(QString::fromStdString(e).contains("version 2") &&
                     QString::fromStdString(e).contains("stays at version 1"),
                 e.c_str());
        SQLite::Database db((ws / "studio.sqlite3").string(), SQLite::OPEN_READONLY);
        QCOMPARE(schema_version(db), 1);
        // The column the failed step added first is gone again.
        QCOMPARE(db.execAndGet("SELECT COUNT(*) FROM pragma_table_info('images') WHERE name = 'label'")
                     .getInt(),
                 0);
        QCOMPARE(db.execAndGet("SELECT COUNT(*) FROM labels").getInt(), 3);
    }

    void newerDatabaseRefusedUntouched() {
        const fs::path ws = fresh_dir();
        const fs::path file = ws / "studio.sqlite3";
        make_db(file, std::string(kShippedV1) + kV1Data + "PRAGMA user_version = 99;");
        const std::string before = kto::test::read_file(file);
        const auto mtime = fs::last_write_time(file);
        const std::string e = error_of([&] { Store s{Workspace(ws)}; });
        QVERIFY2(QString::fromStdString(e).contains("newer") &&
                     QString::fromStdString(e).contains("99") &&
                     QString::fromStdString(e).contains("not modified"),
                 e.c_str());
        QCOMPARE(kto::test::read_file(file), before);
        QCOMPARE(fs::last_write_time(file), mtime);
        QVERIFY(!fs::exists(ws / "studio.sqlite3-wal"));
        // migrate() itself refuses too.
        SQLite::Database db(file.string(), SQLite::OPEN_READWRITE);
        QVERIFY_THROWS_EXCEPTION(kto::Error, migrate(db, "x"));
        QCOMPARE(schema_version(db), 99);
    }

    void foreignDatabasesRefused() {
        const fs::path ws = fresh_dir();
        make_db(ws / "studio.sqlite3", "CREATE TABLE something_else (x);");
        QString e = QString::fromStdString(error_of([&] { Store s{Workspace(ws)}; }));
        QVERIFY2(e.contains("not a KTO Studio database"), qPrintable(e));

        const fs::path ws2 = fresh_dir();
        kto::test::write_file(ws2 / "studio.sqlite3", "this is not sqlite at all, just some text....");
        e = QString::fromStdString(error_of([&] { Store s{Workspace(ws2)}; }));
        QVERIFY2(e.contains("studio.sqlite3") && !e.isEmpty(), qPrintable(e));
    }
};

QTEST_GUILESS_MAIN(TestMigrations)
#include "test_migrations.moc"
