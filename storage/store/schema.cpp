#include "storage/store/schema.h"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include "core/common/error.h"

namespace kto::storage {
namespace {

// Times are ISO-8601 UTC text ("2026-11-25T18:54:15.123Z"): readable in the sqlite3 shell and
// ordered correctly as plain strings.
const char* kV1 = R"sql(
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
-- file: relative to the workspace (images/ab/<sha256>.png), or absolute for images referenced in
-- place (imported datasets). sha256 is NULL until the bytes are hashed (imports hash lazily).
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
-- Finds other rows sharing a content-addressed file; imported rows (no hash yet) stay out of it.
CREATE INDEX images_sha256 ON images(sha256) WHERE sha256 IS NOT NULL;
-- Label history: every like, dislike and clear (value 0) is a row; undo marks the latest live row
-- undone. The current label is the value of the latest row that is not undone (0 if none).
CREATE TABLE labels (
    id          INTEGER PRIMARY KEY,
    image_id    INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    value       INTEGER NOT NULL CHECK (value IN (-1, 0, 1)),
    created_at  TEXT NOT NULL,
    undone_at   TEXT
);
CREATE INDEX labels_image ON labels(image_id, id);
)sql";

const char* kV2 = R"sql(
-- The current label cached on the image row (kept in step with `labels` in the same transaction),
-- so filters and counts over a million images need no per-image history lookup.
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
)sql";

const char* kV3 = R"sql(
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
)sql";

const char* kV4 = R"sql(
-- One comparison session: which two sides (A: usually the base model, B: a fine-tune) its votes
-- judge, with the settings both sides were rendered with. Votes name it by compare_id; votes of
-- version 3 have no row here (their sides are only the left/right model ids).
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
-- When the vote was turned into labels (winner liked, loser disliked), so that happens once.
ALTER TABLE comparison_votes ADD COLUMN labels_applied_at TEXT;
)sql";

const char* kV5 = R"sql(
-- The label an image came with from a dataset import. It is the label in force while the image's
-- history (`labels`) has no live entry, and label_history() shows it as the first event. An
-- import writes it here instead of a history row: one row fewer per imported image.
ALTER TABLE images ADD COLUMN base_label INTEGER NOT NULL DEFAULT 0 CHECK (base_label IN (-1, 0, 1));
)sql";

}  // namespace

const std::vector<Migration>& migrations() {
    static const std::vector<Migration> all = {
        {1, "models, generations, images, label history", kV1},
        {2, "current label on images, training runs, checkpoint/run on generations", kV2},
        {3, "comparison votes", kV3},
        {4, "comparison sessions, votes turned into labels", kV4},
        {5, "imported labels on the image row", kV5},
    };
    return all;
}

int latest_schema_version() { return migrations().back().version; }

int schema_version(SQLite::Database& db) {
    return db.execAndGet("PRAGMA user_version").getInt();
}

void migrate(SQLite::Database& db, const std::string& db_label) {
    const int latest = latest_schema_version();
    const int found = schema_version(db);
    if (found > latest) {
        throw Error(db_label + ": schema version " + std::to_string(found) +
                    " is newer than this KTO Studio understands (" + std::to_string(latest) +
                    "); upgrade KTO Studio to open it. The database was not modified.");
    }
    for (const Migration& step : migrations()) {
        if (step.version <= found) continue;
        // IMMEDIATE takes the write lock first, so two processes opening an old database at the
        // same time cannot both run a step: the second re-reads the version and skips it.
        db.exec("BEGIN IMMEDIATE");
        try {
            const int now = schema_version(db);
            if (now > latest) {
                throw Error("schema version " + std::to_string(now) +
                            " appeared while upgrading (another, newer KTO Studio?)");
            }
            if (now < step.version) {
                db.exec(step.sql);
                db.exec("PRAGMA user_version = " + std::to_string(step.version));
            }
            db.exec("COMMIT");
        } catch (const std::exception& e) {
            try {
                db.exec("ROLLBACK");
            } catch (const std::exception&) {  // already rolled back by SQLite
            }
            throw Error(db_label + ": upgrading the schema to version " +
                        std::to_string(step.version) + " (" + step.description +
                        ") failed: " + e.what() + "; the database stays at version " +
                        std::to_string(schema_version(db)));
        }
    }
}

}  // namespace kto::storage
