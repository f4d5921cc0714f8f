#include "storage/store/store.h"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <sqlite3.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <chrono>
#include <set>
#include <thread>
#include <variant>

#include "core/common/error.h"
#include "storage/store/schema.h"
#include "storage/store/sha256.h"
#include "storage/store/timestamps.h"

namespace fs = std::filesystem;

namespace kto::storage {

const char* label_name(Label label) {
    switch (label) {
        case Label::Like: return "liked";
        case Label::Dislike: return "disliked";
        case Label::None: break;
    }
    return "unlabeled";
}

const char* run_status_name(RunStatus status) {
    switch (status) {
        case RunStatus::Created: return "created";
        case RunStatus::Running: return "running";
        case RunStatus::Finished: return "finished";
        case RunStatus::Failed: return "failed";
        case RunStatus::Cancelled: return "cancelled";
    }
    return "created";
}

RunStatus run_status_from_name(const std::string& name) {
    for (RunStatus s : {RunStatus::Created, RunStatus::Running, RunStatus::Finished,
                        RunStatus::Failed, RunStatus::Cancelled}) {
        if (name == run_status_name(s)) return s;
    }
    throw Error("unknown training run status '" + name + "'");
}

const char* winner_name(Winner winner) {
    switch (winner) {
        case Winner::Left: return "left";
        case Winner::Right: return "right";
        case Winner::Tie: break;
    }
    return "tie";
}

namespace {

Winner winner_from_name(const std::string& name) {
    if (name == "left") return Winner::Left;
    if (name == "right") return Winner::Right;
    return Winner::Tie;
}

Label label_from_int(int v) { return v > 0 ? Label::Like : v < 0 ? Label::Dislike : Label::None; }

std::optional<std::string> opt_text(const SQLite::Column& c) {
    if (c.isNull()) return std::nullopt;
    return c.getString();
}

std::optional<std::int64_t> opt_int(const SQLite::Column& c) {
    if (c.isNull()) return std::nullopt;
    return c.getInt64();
}

// Resets a cached statement when the caller is done with it, so no read transaction stays open
// (an unreset SELECT would pin an old WAL snapshot).
class Prepared {
public:
    explicit Prepared(SQLite::Statement& s) : s_(s) {}
    ~Prepared() {
        try {
            s_.reset();
        } catch (...) {  // a failed step reports again on reset; the error was already thrown
        }
    }
    SQLite::Statement* operator->() { return &s_; }
    SQLite::Statement& operator*() { return s_; }

private:
    SQLite::Statement& s_;
};

using Bind = std::variant<std::int64_t, std::string>;

void bind_all(SQLite::Statement& st, const std::vector<Bind>& binds) {
    int index = 1;
    for (const Bind& b : binds) {
        if (std::holds_alternative<std::int64_t>(b)) {
            st.bind(index++, std::get<std::int64_t>(b));
        } else {
            st.bind(index++, std::get<std::string>(b));
        }
    }
}

std::string like_pattern(const std::string& text) {
    std::string p = "%";
    for (char c : text) {
        if (c == '%' || c == '_' || c == '\\') p += '\\';
        p += c;
    }
    return p + "%";
}

// WHERE clause (with leading " WHERE ", or empty) for the filters of `q`.
std::string where_clause(const ImageQuery& q, bool with_label, std::vector<Bind>& binds) {
    std::vector<std::string> terms;
    if (with_label) {
        switch (q.label) {
            case LabelFilter::Liked: terms.push_back("i.label = 1"); break;
            case LabelFilter::Disliked: terms.push_back("i.label = -1"); break;
            case LabelFilter::Unlabeled: terms.push_back("i.label = 0"); break;
            case LabelFilter::Labeled: terms.push_back("i.label != 0"); break;
            case LabelFilter::Any: break;
        }
    }
    if (!q.prompt_contains.empty()) {
        terms.push_back("g.prompt LIKE ? ESCAPE '\\'");
        binds.emplace_back(like_pattern(q.prompt_contains));
    }
    if (q.model_id) {
        terms.push_back("g.model_id = ?");
        binds.emplace_back(*q.model_id);
    }
    if (!q.model_name.empty()) {
        terms.push_back("m.name = ?");
        binds.emplace_back(q.model_name);
    }
    if (q.checkpoint) {
        terms.push_back("g.checkpoint = ?");
        binds.emplace_back(*q.checkpoint);
    }
    if (q.run_id) {
        terms.push_back("g.run_id = ?");
        binds.emplace_back(*q.run_id);
    }
    if (!q.since.empty()) {
        terms.push_back("i.created_at >= ?");
        binds.emplace_back(q.since);
    }
    if (!q.until.empty()) {
        terms.push_back("i.created_at <= ?");
        binds.emplace_back(q.until);
    }
    std::string sql;
    for (std::size_t k = 0; k < terms.size(); ++k) sql += (k ? " AND " : " WHERE ") + terms[k];
    return sql;
}

bool needs_generation_join(const ImageQuery& q) {
    return !q.prompt_contains.empty() || q.model_id || !q.model_name.empty() || q.checkpoint ||
           q.run_id;
}

const char* kImageSelect =
    "SELECT i.id, i.generation_id, i.file, i.sha256, i.byte_size, i.width, i.height, "
    "i.created_at, i.label, g.prompt, g.negative_prompt, g.seed, g.steps, g.cfg, g.sampler, "
    "g.model_id, m.name, g.checkpoint, g.run_id "
    "FROM images i JOIN generations g ON g.id = i.generation_id JOIN models m ON m.id = g.model_id";

// Wraps SQLite errors with the database path and what was being done.
template <class F>
auto guarded(const Workspace& ws, const char* what, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const SQLite::Exception& e) {
        if (e.getErrorCode() == SQLITE_READONLY)
            throw Error(ws.dir().string() + ": " + what + ": the workspace is read-only (no write "
                        "permission on the folder or studio.sqlite3); nothing was saved");
        throw Error(ws.database_path().string() + ": " + what + ": " + e.what());
    }
}

}  // namespace

namespace {
// Memory statistics make every SQLite allocation take a global mutex; nothing here reads them.
// Must run before SQLite initializes; if another user initialized it first, the call is refused
// and the default stays.
void configure_sqlite_once() {
    static const bool done = [] {
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        return true;
    }();
    (void)done;
}
}  // namespace

Store::Store(Workspace workspace, StoreOptions options)
    : workspace_(std::move(workspace)), options_(std::move(options)) {
    configure_sqlite_once();
    const fs::path path = workspace_.database_path();
    const std::string label = path.string();
    // Two processes creating one workspace at once can meet a lock that SQLite's busy handler does
    // not wait for (the journal-mode switch, the first schema step): retry within the busy timeout.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.busy_timeout_ms);
    for (;;) {
        try {
            std::error_code ec;
            // A workspace on read-only media (or without write permission) opens read-only: browsing,
            // queries and exports work, and every write fails with a message that says why.
            const bool db_exists = fs::exists(path, ec);
            if (::access(workspace_.dir().c_str(), W_OK) != 0 ||
                (db_exists && ::access(path.c_str(), W_OK) != 0)) {
                if (!db_exists)
                    throw Error(workspace_.dir().string() + ": the workspace folder is read-only and holds "
                                "no studio.sqlite3 yet; choose a writable workspace folder");
                open_read_only(label);
                return;
            }
            if (db_exists) {
                // Check the version on a read-only connection, so a newer database is never written.
                SQLite::Database ro(path.string(), SQLite::OPEN_READONLY, options_.busy_timeout_ms);
                // One read transaction, so both reads see one snapshot: another process may commit its
                // first schema step (tables and version together) between two separate reads.
                ro.exec("BEGIN");
                const int found = storage::schema_version(ro);
                const int64_t tables = ro.execAndGet("SELECT COUNT(*) FROM sqlite_master").getInt64();
                ro.exec("COMMIT");
                if (found > latest_schema_version()) migrate(ro, label);  // throws, writes nothing
                if (found == 0 && tables > 0) {
                    throw Error(label + ": not a KTO Studio database (it has tables but no schema "
                                        "version); choose another workspace folder");
                }
            }
            // A Store is used by one thread at a time (see the header), so SQLite's mutexes are not needed.
            db_ = std::make_unique<SQLite::Database>(
                path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX,
                options_.busy_timeout_ms);
            db_->exec("PRAGMA foreign_keys = ON");
            const std::string mode = db_->execAndGet("PRAGMA journal_mode = WAL").getString();
            if (mode != "wal") throw Error(label + ": cannot switch to WAL mode (got '" + mode + "')");
            db_->exec(options_.sync_every_commit ? "PRAGMA synchronous = FULL"
                                                 : "PRAGMA synchronous = NORMAL");
            migrate(*db_, label);
            return;
        } catch (const SQLite::Exception& e) {
            const int code = e.getErrorCode() & 0xff;
            if ((code == SQLITE_BUSY || code == SQLITE_LOCKED) && std::chrono::steady_clock::now() < deadline) {
                statements_.clear();
                db_.reset();
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
                continue;
            }
            throw Error(label + ": cannot open the label store: " + e.what());
        }
    }
}

void Store::open_read_only(const std::string& label) {
    read_only_ = true;
    // WAL needs its -shm file; in a folder we cannot write to, none can be created, so the file is
    // opened as immutable (nobody can change it from here either).
    const std::string uri = "file:" + workspace_.database_path().string() + "?immutable=1";
    SQLite::Database probe(workspace_.database_path().string(), SQLite::OPEN_READONLY,
                           options_.busy_timeout_ms);
    bool plain_ok = true;
    try {
        (void)storage::schema_version(probe);
        probe.execAndGet("SELECT COUNT(*) FROM sqlite_master");
    } catch (const SQLite::Exception&) {
        plain_ok = false;
    }
    db_ = plain_ok ? std::make_unique<SQLite::Database>(workspace_.database_path().string(),
                                                        SQLite::OPEN_READONLY | SQLite::OPEN_NOMUTEX,
                                                        options_.busy_timeout_ms)
                   : std::make_unique<SQLite::Database>(
                         uri, SQLite::OPEN_READONLY | SQLite::OPEN_URI | SQLite::OPEN_NOMUTEX,
                         options_.busy_timeout_ms);
    const int found = storage::schema_version(*db_);
    if (found == 0)
        throw Error(label + ": not a KTO Studio database (no schema version); choose another "
                            "workspace folder");
    if (found != latest_schema_version())
        throw Error(label + ": the workspace is read-only and its database is at schema version " +
                    std::to_string(found) + ", which this KTO Studio cannot use without " +
                    (found < latest_schema_version() ? "upgrading it to version " : "a newer build: ") +
                    std::to_string(latest_schema_version()) +
                    (found < latest_schema_version() ? "; open it once from a writable location"
                                                     : ""));
    db_->exec("PRAGMA query_only = ON");
}

std::string Store::read_only_message() const {
    return workspace_.dir().string() +
           ": the workspace is read-only (no write permission on the folder or studio.sqlite3); "
           "labels, generations and runs cannot be saved. Browsing and exporting still work";
}

Store::~Store() {
    statements_.clear();  // statements must be finalized before the connection closes
}

std::string Store::now() const { return options_.clock ? options_.clock() : utc_now_iso(); }

int Store::schema_version() { return storage::schema_version(*db_); }

SQLite::Statement& Store::statement(const std::string& sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) {
        it = statements_.emplace(sql, std::make_unique<SQLite::Statement>(*db_, sql)).first;
    } else {
        it->second->reset();
        it->second->clearBindings();
    }
    return *it->second;
}

// ---------------------------------------------------------------- models

std::int64_t Store::ensure_model(const std::string& name, const std::string& folder,
                                 const std::string& content_hash) {
    if (name.empty()) throw Error("model name is empty");
    return guarded(workspace_, "recording a model", [&]() -> std::int64_t {
        SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
        std::int64_t id = 0;
        {
            Prepared find(statement("SELECT id, content_hash FROM models WHERE name = ? AND folder = ?"));
            find->bind(1, name);
            find->bind(2, folder);
            if (find->executeStep()) {
                id = find->getColumn(0).getInt64();
                if (!content_hash.empty() && find->getColumn(1).getString() != content_hash) {
                    Prepared up(statement("UPDATE models SET content_hash = ? WHERE id = ?"));
                    up->bind(1, content_hash);
                    up->bind(2, id);
                    up->exec();
                }
            }
        }
        if (id == 0) {
            Prepared ins(statement(
                "INSERT INTO models (name, folder, content_hash, created_at) VALUES (?, ?, ?, ?)"));
            ins->bind(1, name);
            ins->bind(2, folder);
            ins->bind(3, content_hash);
            ins->bind(4, now());
            ins->exec();
            id = db_->getLastInsertRowid();
        }
        tx.commit();
        return id;
    });
}

namespace {
ModelRecord read_model(SQLite::Statement& s) {
    ModelRecord m;
    m.id = s.getColumn(0).getInt64();
    m.name = s.getColumn(1).getString();
    m.folder = s.getColumn(2).getString();
    m.content_hash = s.getColumn(3).getString();
    m.created_at = s.getColumn(4).getString();
    return m;
}
}  // namespace

std::optional<ModelRecord> Store::model(std::int64_t id) {
    return guarded(workspace_, "reading a model", [&]() -> std::optional<ModelRecord> {
        Prepared s(statement("SELECT id, name, folder, content_hash, created_at FROM models WHERE id = ?"));
        s->bind(1, id);
        if (!s->executeStep()) return std::nullopt;
        return read_model(*s);
    });
}

std::optional<ModelRecord> Store::find_model(const std::string& name) {
    return guarded(workspace_, "reading a model", [&]() -> std::optional<ModelRecord> {
        Prepared s(statement("SELECT id, name, folder, content_hash, created_at FROM models "
                             "WHERE name = ? ORDER BY id LIMIT 1"));
        s->bind(1, name);
        if (!s->executeStep()) return std::nullopt;
        return read_model(*s);
    });
}

std::vector<ModelRecord> Store::models() {
    return guarded(workspace_, "listing models", [&] {
        Prepared s(statement("SELECT id, name, folder, content_hash, created_at FROM models ORDER BY id"));
        std::vector<ModelRecord> out;
        while (s->executeStep()) out.push_back(read_model(*s));
        return out;
    });
}

// ---------------------------------------------------------------- generations and images

AddedGeneration Store::add_generation(const GenerationInput& gen, const std::vector<ImageInput>& images) {
    if (!model(gen.model_id)) {
        throw Error("add generation: model id " + std::to_string(gen.model_id) + " does not exist");
    }
    if (gen.run_id && !run(*gen.run_id)) {
        throw Error("add generation: training run id " + std::to_string(*gen.run_id) +
                    " does not exist");
    }
    // Files first: a crash after this leaves unused content-addressed files, never rows without files.
    std::vector<StoredFile> files;
    files.reserve(images.size());
    for (const ImageInput& img : images) {
        if (!img.encoded.empty()) {
            files.push_back(workspace_.store_image_bytes(img.encoded, img.extension));
        } else if (!img.source_file.empty()) {
            files.push_back(workspace_.store_image_file(img.source_file));
        } else {
            throw Error("add generation: an image has neither encoded bytes nor a source file");
        }
    }
    return guarded(workspace_, "adding a generation", [&] {
        const std::string t = now();
        SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
        AddedGeneration added;
        {
            Prepared g(statement(
                "INSERT INTO generations (prompt, negative_prompt, seed, steps, cfg, sampler, width, "
                "height, model_id, checkpoint, run_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
            g->bind(1, gen.prompt);
            g->bind(2, gen.negative_prompt);
            g->bind(3, gen.seed);
            g->bind(4, gen.steps);
            g->bind(5, gen.cfg);
            g->bind(6, gen.sampler);
            g->bind(7, gen.width);
            g->bind(8, gen.height);
            g->bind(9, gen.model_id);
            if (gen.checkpoint) g->bind(10, *gen.checkpoint);
            if (gen.run_id) g->bind(11, *gen.run_id);
            g->bind(12, t);
            g->exec();
            added.generation_id = db_->getLastInsertRowid();
        }
        for (std::size_t k = 0; k < images.size(); ++k) {
            Prepared im(statement(
                "INSERT INTO images (generation_id, file, sha256, byte_size, width, height, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"));
            im->bind(1, added.generation_id);
            im->bind(2, files[k].file);
            im->bind(3, files[k].sha256);
            im->bind(4, files[k].byte_size);
            im->bind(5, images[k].width ? images[k].width : gen.width);
            im->bind(6, images[k].height ? images[k].height : gen.height);
            im->bind(7, t);
            im->exec();
            added.image_ids.push_back(db_->getLastInsertRowid());
        }
        tx.commit();
        return added;
    });
}

ImageRecord Store::read_image_row(SQLite::Statement& s) const {
    ImageRecord r;
    r.id = s.getColumn(0).getInt64();
    r.generation_id = s.getColumn(1).getInt64();
    r.file = s.getColumn(2).getString();
    r.path = workspace_.resolve(r.file);
    r.sha256 = opt_text(s.getColumn(3));
    r.byte_size = s.getColumn(4).getInt64();
    r.width = s.getColumn(5).getInt();
    r.height = s.getColumn(6).getInt();
    r.created_at = s.getColumn(7).getString();
    r.label = label_from_int(s.getColumn(8).getInt());
    r.prompt = s.getColumn(9).getString();
    r.negative_prompt = s.getColumn(10).getString();
    r.seed = s.getColumn(11).getInt64();
    r.steps = s.getColumn(12).getInt();
    r.cfg = s.getColumn(13).getDouble();
    r.sampler = s.getColumn(14).getString();
    r.model_id = s.getColumn(15).getInt64();
    r.model_name = s.getColumn(16).getString();
    r.checkpoint = opt_text(s.getColumn(17));
    r.run_id = opt_int(s.getColumn(18));
    return r;
}

std::optional<ImageRecord> Store::image(std::int64_t id) {
    return guarded(workspace_, "reading an image", [&]() -> std::optional<ImageRecord> {
        Prepared s(statement(std::string(kImageSelect) + " WHERE i.id = ?"));
        s->bind(1, id);
        if (!s->executeStep()) return std::nullopt;
        return read_image_row(*s);
    });
}

std::string Store::ensure_image_hash(std::int64_t id) {
    auto img = image(id);
    if (!img) throw Error("image " + std::to_string(id) + " does not exist");
    if (img->sha256) return *img->sha256;
    const std::string hash = sha256_file_hex(img->path);
    guarded(workspace_, "recording an image hash", [&] {
        Prepared s(statement("UPDATE images SET sha256 = ? WHERE id = ?"));
        s->bind(1, hash);
        s->bind(2, id);
        s->exec();
    });
    return hash;
}

void Store::record_image_hashes(const std::vector<std::pair<std::int64_t, std::string>>& hashes) {
    guarded(workspace_, "recording image hashes", [&] {
        SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
        for (const auto& [id, hash] : hashes) {
            Prepared s(statement("UPDATE images SET sha256 = ? WHERE id = ?"));
            s->bind(1, hash);
            s->bind(2, id);
            s->exec();
        }
        tx.commit();
    });
}

std::int64_t Store::delete_images(const std::vector<std::int64_t>& ids) {
    std::set<std::pair<std::string, std::string>> owned;  // (file, sha256)
    std::int64_t deleted = 0;
    guarded(workspace_, "deleting images", [&] {
        SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
        for (std::int64_t id : ids) {
            std::int64_t generation = 0;
            {
                Prepared s(statement("SELECT file, sha256, generation_id FROM images WHERE id = ?"));
                s->bind(1, id);
                if (!s->executeStep()) continue;
                const std::string file = s->getColumn(0).getString();
                if (workspace_.owns(file) && !s->getColumn(1).isNull()) {
                    owned.emplace(file, s->getColumn(1).getString());
                }
                generation = s->getColumn(2).getInt64();
            }
            Prepared del(statement("DELETE FROM images WHERE id = ?"));
            del->bind(1, id);
            deleted += del->exec();
            // A generation without images has nothing left to describe.
            Prepared gen(statement("DELETE FROM generations WHERE id = ? AND NOT EXISTS "
                                   "(SELECT 1 FROM images WHERE generation_id = ?)"));
            gen->bind(1, generation);
            gen->bind(2, generation);
            gen->exec();
        }
        tx.commit();
    });
    // Files go only after the commit, so a rollback never loses an image.
    for (const auto& entry : owned) {
        // Named copies: C++17 lambdas cannot capture structured bindings (clang refuses).
        const auto& file = entry.first;
        const auto& sha = entry.second;
        const bool still_used = guarded(workspace_, "checking image files", [&] {
            Prepared s(statement("SELECT 1 FROM images WHERE sha256 = ? AND file = ? LIMIT 1"));
            s->bind(1, sha);
            s->bind(2, file);
            return s->executeStep();
        });
        if (!still_used) {
            std::error_code ec;
            fs::remove(workspace_.resolve(file), ec);  // already gone is fine
        }
    }
    return deleted;
}

// ---------------------------------------------------------------- labels

void Store::check_image(std::int64_t image_id) {
    Prepared s(statement("SELECT 1 FROM images WHERE id = ?"));
    s->bind(1, image_id);
    if (!s->executeStep()) throw Error("image " + std::to_string(image_id) + " does not exist");
}

void Store::set_label(std::int64_t image_id, Label label) {
    guarded(workspace_, "recording a label", [&] {
        const std::string t = now();
        SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
        {
            Prepared up(statement("UPDATE images SET label = ? WHERE id = ?"));
            up->bind(1, static_cast<int>(label));
            up->bind(2, image_id);
            if (up->exec() == 0) throw Error("image " + std::to_string(image_id) + " does not exist");
        }
        Prepared ins(statement("INSERT INTO labels (image_id, value, created_at) VALUES (?, ?, ?)"));
        ins->bind(1, image_id);
        ins->bind(2, static_cast<int>(label));
        ins->bind(3, t);
        ins->exec();
        tx.commit();
    });
}

Label Store::undo_label(std::int64_t image_id) {
    return guarded(workspace_, "undoing a label", [&] {
        const std::string t = now();
        SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
        check_image(image_id);
        const char* latest_live =
            "SELECT id, value FROM labels WHERE image_id = ? AND undone_at IS NULL "
            "ORDER BY id DESC LIMIT 1";
        std::int64_t entry = 0;
        {
            Prepared s(statement(latest_live));
            s->bind(1, image_id);
            if (!s->executeStep()) {
                throw Error("image " + std::to_string(image_id) + ": no label change to undo");
            }
            entry = s->getColumn(0).getInt64();
        }
        {
            Prepared s(statement("UPDATE labels SET undone_at = ? WHERE id = ?"));
            s->bind(1, t);
            s->bind(2, entry);
            s->exec();
        }
        Label now_in_force = Label::None;
        {
            Prepared s(statement(latest_live));
            s->bind(1, image_id);
            if (s->executeStep()) {
                now_in_force = label_from_int(s->getColumn(1).getInt());
            } else {  // history undone to its start: the label the image came with
                Prepared b(statement("SELECT base_label FROM images WHERE id = ?"));
                b->bind(1, image_id);
                if (b->executeStep()) now_in_force = label_from_int(b->getColumn(0).getInt());
            }
        }
        {
            Prepared s(statement("UPDATE images SET label = ? WHERE id = ?"));
            s->bind(1, static_cast<int>(now_in_force));
            s->bind(2, image_id);
            s->exec();
        }
        tx.commit();
        return now_in_force;
    });
}

Label Store::current_label(std::int64_t image_id) {
    return guarded(workspace_, "reading a label", [&] {
        Prepared s(statement("SELECT label FROM images WHERE id = ?"));
        s->bind(1, image_id);
        if (!s->executeStep()) throw Error("image " + std::to_string(image_id) + " does not exist");
        return label_from_int(s->getColumn(0).getInt());
    });
}

std::vector<LabelEvent> Store::label_history(std::int64_t image_id) {
    return guarded(workspace_, "reading label history", [&] {
        std::vector<LabelEvent> out;
        {
            Prepared b(statement("SELECT base_label, created_at FROM images WHERE id = ?"));
            b->bind(1, image_id);
            if (!b->executeStep()) throw Error("image " + std::to_string(image_id) + " does not exist");
            if (b->getColumn(0).getInt() != 0) {
                LabelEvent e;
                e.value = label_from_int(b->getColumn(0).getInt());
                e.created_at = b->getColumn(1).getString();
                e.imported = true;
                out.push_back(std::move(e));
            }
        }
        Prepared s(statement("SELECT id, value, created_at, undone_at FROM labels "
                             "WHERE image_id = ? ORDER BY id"));
        s->bind(1, image_id);
        while (s->executeStep()) {
            LabelEvent e;
            e.id = s->getColumn(0).getInt64();
            e.value = label_from_int(s->getColumn(1).getInt());
            e.created_at = s->getColumn(2).getString();
            e.undone_at = opt_text(s->getColumn(3));
            out.push_back(std::move(e));
        }
        return out;
    });
}

// ---------------------------------------------------------------- queries

void Store::for_each_image(const ImageQuery& q, const std::function<bool(const ImageRecord&)>& visit) {
    guarded(workspace_, "querying images", [&] {
        std::vector<Bind> binds;
        std::string sql = std::string(kImageSelect) + where_clause(q, true, binds) + " ORDER BY ";
        if (q.unlabeled_first) sql += "(i.label != 0), ";
        sql += q.newest_first ? "i.id DESC" : "i.id";
        sql += " LIMIT ? OFFSET ?";
        binds.emplace_back(q.limit < 0 ? std::int64_t(-1) : q.limit);
        binds.emplace_back(q.offset < 0 ? std::int64_t(0) : q.offset);
        // Not cached: a visitor may call back into this Store while the statement is open.
        SQLite::Statement s(*db_, sql);
        bind_all(s, binds);
        while (s.executeStep()) {
            if (!visit(read_image_row(s))) break;
        }
    });
}

std::vector<ImageRecord> Store::query_images(const ImageQuery& q) {
    std::vector<ImageRecord> out;
    for_each_image(q, [&](const ImageRecord& r) {
        out.push_back(r);
        return true;
    });
    return out;
}

LabelCounts Store::counts(const ImageQuery& q) {
    return guarded(workspace_, "counting images", [&] {
        std::vector<Bind> binds;
        std::string sql =
            "SELECT COUNT(*), COALESCE(SUM(i.label = 1), 0), COALESCE(SUM(i.label = -1), 0), "
            "COALESCE(SUM(i.label = 0), 0) FROM images i";
        if (needs_generation_join(q)) {
            sql += " JOIN generations g ON g.id = i.generation_id JOIN models m ON m.id = g.model_id";
        }
        sql += where_clause(q, false, binds);
        Prepared s(statement(sql));
        bind_all(*s, binds);
        s->executeStep();
        LabelCounts c;
        c.images = s->getColumn(0).getInt64();
        c.liked = s->getColumn(1).getInt64();
        c.disliked = s->getColumn(2).getInt64();
        c.unlabeled = s->getColumn(3).getInt64();
        return c;
    });
}

std::vector<PromptBalance> Store::prompt_balance(std::int64_t limit) {
    return guarded(workspace_, "counting labels per prompt", [&] {
        Prepared s(statement(
            "SELECT g.prompt, COUNT(*), SUM(i.label = 1), SUM(i.label = -1), SUM(i.label = 0) "
            "FROM images i JOIN generations g ON g.id = i.generation_id "
            "GROUP BY g.prompt ORDER BY COUNT(*) DESC, g.prompt LIMIT ?"));
        s->bind(1, limit < 0 ? std::int64_t(-1) : limit);
        std::vector<PromptBalance> out;
        while (s->executeStep()) {
            PromptBalance b;
            b.prompt = s->getColumn(0).getString();
            b.counts.images = s->getColumn(1).getInt64();
            b.counts.liked = s->getColumn(2).getInt64();
            b.counts.disliked = s->getColumn(3).getInt64();
            b.counts.unlabeled = s->getColumn(4).getInt64();
            out.push_back(std::move(b));
        }
        return out;
    });
}

// ---------------------------------------------------------------- training runs

std::int64_t Store::add_run(const std::string& name, const std::string& config_json,
                            const std::string& folder) {
    if (!nlohmann::json::accept(config_json)) {
        throw Error("training run '" + name + "': config is not valid JSON");
    }
    return guarded(workspace_, "adding a training run", [&] {
        Prepared s(statement("INSERT INTO training_runs (name, config_json, status, folder, created_at) "
                             "VALUES (?, ?, 'created', ?, ?)"));
        s->bind(1, name);
        s->bind(2, config_json);
        s->bind(3, folder);
        s->bind(4, now());
        s->exec();
        return db_->getLastInsertRowid();
    });
}

void Store::set_run_status(std::int64_t run_id, RunStatus status) {
    guarded(workspace_, "updating a training run", [&] {
        const std::string t = now();
        const bool ends = status == RunStatus::Finished || status == RunStatus::Failed ||
                          status == RunStatus::Cancelled;
        Prepared s(statement(
            "UPDATE training_runs SET status = ?, "
            "started_at = CASE WHEN ? AND started_at IS NULL THEN ? ELSE started_at END, "
            "finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?"));
        s->bind(1, std::string(run_status_name(status)));
        s->bind(2, status == RunStatus::Running ? 1 : 0);
        s->bind(3, t);
        s->bind(4, ends ? 1 : 0);
        s->bind(5, t);
        s->bind(6, run_id);
        if (s->exec() == 0) throw Error("training run " + std::to_string(run_id) + " does not exist");
    });
}

void Store::set_run_folder(std::int64_t run_id, const std::string& folder) {
    guarded(workspace_, "updating a training run", [&] {
        Prepared s(statement("UPDATE training_runs SET folder = ? WHERE id = ?"));
        s->bind(1, folder);
        s->bind(2, run_id);
        if (s->exec() == 0) throw Error("training run " + std::to_string(run_id) + " does not exist");
    });
}

namespace {
const char* kRunSelect =
    "SELECT id, name, config_json, status, folder, created_at, started_at, finished_at "
    "FROM training_runs";

TrainingRun read_run(SQLite::Statement& s) {
    TrainingRun r;
    r.id = s.getColumn(0).getInt64();
    r.name = s.getColumn(1).getString();
    r.config_json = s.getColumn(2).getString();
    r.status = run_status_from_name(s.getColumn(3).getString());
    r.folder = s.getColumn(4).getString();
    r.created_at = s.getColumn(5).getString();
    r.started_at = opt_text(s.getColumn(6));
    r.finished_at = opt_text(s.getColumn(7));
    return r;
}
}  // namespace

std::optional<TrainingRun> Store::run(std::int64_t run_id) {
    return guarded(workspace_, "reading a training run", [&]() -> std::optional<TrainingRun> {
        Prepared s(statement(std::string(kRunSelect) + " WHERE id = ?"));
        s->bind(1, run_id);
        if (!s->executeStep()) return std::nullopt;
        return read_run(*s);
    });
}

std::vector<TrainingRun> Store::runs() {
    return guarded(workspace_, "listing training runs", [&] {
        Prepared s(statement(std::string(kRunSelect) + " ORDER BY id"));
        std::vector<TrainingRun> out;
        while (s->executeStep()) out.push_back(read_run(*s));
        return out;
    });
}

// ---------------------------------------------------------------- comparison votes

std::int64_t Store::add_vote(const ComparisonVoteInput& v) {
    if (v.compare_id.empty()) throw Error("comparison vote: empty compare id");
    for (std::int64_t id : {v.left_model_id, v.right_model_id}) {
        if (!model(id)) throw Error("comparison vote: model id " + std::to_string(id) + " does not exist");
    }
    return guarded(workspace_, "recording a comparison vote", [&] {
        Prepared s(statement(
            "INSERT INTO comparison_votes (compare_id, run_id, prompt, seed, left_model_id, "
            "right_model_id, left_image_id, right_image_id, winner, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
        s->bind(1, v.compare_id);
        if (v.run_id) s->bind(2, *v.run_id);
        s->bind(3, v.prompt);
        s->bind(4, v.seed);
        s->bind(5, v.left_model_id);
        s->bind(6, v.right_model_id);
        if (v.left_image_id) s->bind(7, *v.left_image_id);
        if (v.right_image_id) s->bind(8, *v.right_image_id);
        s->bind(9, std::string(winner_name(v.winner)));
        s->bind(10, now());
        s->exec();
        return db_->getLastInsertRowid();
    });
}

std::vector<ComparisonVote> Store::votes(const std::string& compare_id) {
    return guarded(workspace_, "reading comparison votes", [&] {
        Prepared s(statement(
            "SELECT id, compare_id, run_id, prompt, seed, left_model_id, right_model_id, "
            "left_image_id, right_image_id, winner, created_at, labels_applied_at FROM comparison_votes "
            "WHERE compare_id = ? ORDER BY id"));
        s->bind(1, compare_id);
        std::vector<ComparisonVote> out;
        while (s->executeStep()) {
            ComparisonVote v;
            v.id = s->getColumn(0).getInt64();
            v.compare_id = s->getColumn(1).getString();
            v.run_id = opt_int(s->getColumn(2));
            v.prompt = s->getColumn(3).getString();
            v.seed = s->getColumn(4).getInt64();
            v.left_model_id = s->getColumn(5).getInt64();
            v.right_model_id = s->getColumn(6).getInt64();
            v.left_image_id = opt_int(s->getColumn(7));
            v.right_image_id = opt_int(s->getColumn(8));
            v.winner = winner_from_name(s->getColumn(9).getString());
            v.created_at = s->getColumn(10).getString();
            v.labels_applied_at = opt_text(s->getColumn(11));
            out.push_back(std::move(v));
        }
        return out;
    });
}

VoteTally Store::tally_votes(const std::string& compare_id) {
    return guarded(workspace_, "counting comparison votes", [&] {
        Prepared s(statement("SELECT winner, COUNT(*) FROM comparison_votes WHERE compare_id = ? "
                             "GROUP BY winner"));
        s->bind(1, compare_id);
        VoteTally t;
        while (s->executeStep()) {
            const std::string w = s->getColumn(0).getString();
            const std::int64_t n = s->getColumn(1).getInt64();
            if (w == "left") t.left = n;
            else if (w == "right") t.right = n;
            else t.tie = n;
        }
        return t;
    });
}

// ---------------------------------------------------------------- comparison sessions

namespace {
const char* kComparisonSelect =
    "SELECT id, a_model_id, b_model_id, a_checkpoint, b_checkpoint, run_id, settings_json, blind, created_at "
    "FROM comparisons";

ComparisonRecord read_comparison(SQLite::Statement& s) {
    ComparisonRecord c;
    c.id = s.getColumn(0).getString();
    c.a_model_id = s.getColumn(1).getInt64();
    c.b_model_id = s.getColumn(2).getInt64();
    c.a_checkpoint = opt_text(s.getColumn(3));
    c.b_checkpoint = opt_text(s.getColumn(4));
    c.run_id = opt_int(s.getColumn(5));
    c.settings_json = s.getColumn(6).getString();
    c.blind = s.getColumn(7).getInt() != 0;
    c.created_at = s.getColumn(8).getString();
    return c;
}
}  // namespace

void Store::add_comparison(const ComparisonInput& c) {
    if (c.id.empty()) throw Error("comparison: empty id");
    for (std::int64_t id : {c.a_model_id, c.b_model_id}) {
        if (!model(id)) throw Error("comparison: model id " + std::to_string(id) + " does not exist");
    }
    if (comparison(c.id)) throw Error("comparison '" + c.id + "' already exists");
    guarded(workspace_, "recording a comparison", [&] {
        Prepared s(statement(
            "INSERT INTO comparisons (id, a_model_id, b_model_id, a_checkpoint, b_checkpoint, run_id, "
            "settings_json, blind, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
        s->bind(1, c.id);
        s->bind(2, c.a_model_id);
        s->bind(3, c.b_model_id);
        if (c.a_checkpoint) s->bind(4, *c.a_checkpoint);
        if (c.b_checkpoint) s->bind(5, *c.b_checkpoint);
        if (c.run_id) s->bind(6, *c.run_id);
        s->bind(7, c.settings_json);
        s->bind(8, c.blind ? 1 : 0);
        s->bind(9, now());
        s->exec();
    });
}

std::optional<ComparisonRecord> Store::comparison(const std::string& id) {
    return guarded(workspace_, "reading a comparison", [&]() -> std::optional<ComparisonRecord> {
        Prepared s(statement(std::string(kComparisonSelect) + " WHERE id = ?"));
        s->bind(1, id);
        if (!s->executeStep()) return std::nullopt;
        return read_comparison(*s);
    });
}

std::vector<ComparisonRecord> Store::comparisons() {
    return guarded(workspace_, "listing comparisons", [&] {
        Prepared s(statement(std::string(kComparisonSelect) + " ORDER BY created_at, id"));
        std::vector<ComparisonRecord> out;
        while (s->executeStep()) out.push_back(read_comparison(*s));
        return out;
    });
}

VoteLabelsApplied Store::apply_vote_labels(const std::string& compare_id) {
    return guarded(workspace_, "turning comparison votes into labels", [&] {
        const std::string t = now();
        SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
        struct Pending {
            std::int64_t vote = 0;
            std::int64_t winner_image = 0;
            std::int64_t loser_image = 0;
        };
        std::vector<Pending> pending;
        VoteLabelsApplied applied;
        {
            Prepared s(statement(
                "SELECT id, winner, left_image_id, right_image_id, labels_applied_at FROM comparison_votes "
                "WHERE compare_id = ? ORDER BY id"));
            s->bind(1, compare_id);
            while (s->executeStep()) {
                const std::string winner = s->getColumn(1).getString();
                const auto left = opt_int(s->getColumn(2));
                const auto right = opt_int(s->getColumn(3));
                if (winner == "tie" || !left || !right || !s->getColumn(4).isNull()) {
                    ++applied.skipped;
                    continue;
                }
                const bool left_won = winner == "left";
                pending.push_back({s->getColumn(0).getInt64(), left_won ? *left : *right, left_won ? *right : *left});
            }
        }
        auto label = [&](std::int64_t image_id, Label value) {
            {
                Prepared up(statement("UPDATE images SET label = ? WHERE id = ?"));
                up->bind(1, static_cast<int>(value));
                up->bind(2, image_id);
                if (up->exec() == 0) throw Error("image " + std::to_string(image_id) + " does not exist");
            }
            Prepared ins(statement("INSERT INTO labels (image_id, value, created_at) VALUES (?, ?, ?)"));
            ins->bind(1, image_id);
            ins->bind(2, static_cast<int>(value));
            ins->bind(3, t);
            ins->exec();
        };
        for (const Pending& p : pending) {
            label(p.winner_image, Label::Like);
            label(p.loser_image, Label::Dislike);
            Prepared up(statement("UPDATE comparison_votes SET labels_applied_at = ? WHERE id = ?"));
            up->bind(1, t);
            up->bind(2, p.vote);
            up->exec();
            ++applied.votes;
            ++applied.liked;
            ++applied.disliked;
        }
        tx.commit();
        return applied;
    });
}

}  // namespace kto::storage
