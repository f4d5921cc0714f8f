#pragma once
// The label store's schema: numbered migrations, cumulative, each applied in its own transaction,
// with `PRAGMA user_version` holding the version reached. Old migrations are never edited: a
// change is a new migration, so every database ever written upgrades along the same path.
#include <string>
#include <vector>

namespace SQLite {
class Database;
}

namespace kto::storage {

struct Migration {
    int version;              // user_version after this step
    std::string description;  // one line, shown when a step fails
    std::string sql;          // statements run inside the step's transaction
};

// All migrations in order; migrations()[i].version == i + 1.
const std::vector<Migration>& migrations();
// The schema version this build writes.
int latest_schema_version();

// Reads `PRAGMA user_version`.
int schema_version(SQLite::Database& db);

// Brings `db` to latest_schema_version(): each missing step in one IMMEDIATE transaction, rolled
// back on failure (the database is left at the last completed version). Throws kto::Error naming
// `db_label` if the database is newer than this build (without touching it) or a step fails.
void migrate(SQLite::Database& db, const std::string& db_label);

}  // namespace kto::storage
