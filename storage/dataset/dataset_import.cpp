#include "storage/dataset/dataset_import.h"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cerrno>
#include <climits>
#include <cstring>
#include <cstdlib>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "core/common/error.h"
#include "storage/dataset/csv.h"
#include "storage/store/store.h"

namespace fs = std::filesystem;

namespace kto::storage {
namespace {

std::string lower_trimmed(const std::string& s) {
    std::size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    std::string out = s.substr(b, e - b);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// Column positions found in the header.
struct Columns {
    int path = -1;
    int caption = -1;
    int label = -1;
    int seed = -1;
    int sampler = -1;
    int steps = -1;
    int cfg = -1;
    std::size_t count = 0;
};

Columns read_header(const std::vector<std::string>& header, const CsvReader& csv) {
    std::unordered_map<std::string, int> index;
    for (std::size_t i = 0; i < header.size(); ++i) {
        const std::string name = lower_trimmed(header[i]);
        if (name.empty()) continue;
        if (!index.emplace(name, static_cast<int>(i)).second) {
            throw Error(csv.path().string() + ": line " + std::to_string(csv.record_line()) +
                        ": column '" + name + "' appears twice in the header");
        }
    }
    const auto find = [&](const char* a, const char* b = nullptr) {
        auto it = index.find(a);
        if (it != index.end()) return it->second;
        if (b && (it = index.find(b)) != index.end()) return it->second;
        return -1;
    };
    Columns c;
    c.count = header.size();
    // file_path / label are the documented names; file_name / split what the trainer reads.
    c.path = find("file_path", "file_name");
    c.label = find("label", "split");
    c.caption = find("caption");
    c.seed = find("seed");
    c.sampler = find("sampler");
    c.steps = find("steps");
    c.cfg = find("cfg");
    std::string missing;
    if (c.path < 0) missing += "'file_path' (or 'file_name')";
    if (c.label < 0) missing += std::string(missing.empty() ? "" : " and ") + "'label' (or 'split')";
    if (!missing.empty()) {
        std::string found;
        for (const auto& h : header) found += (found.empty() ? "" : ", ") + h;
        throw Error(csv.path().string() + ": line " + std::to_string(csv.record_line()) +
                    ": missing column " + missing + " in the header (found: " + found + ")");
    }
    return c;
}

// Decides where a row's image is, or why it is skipped. Paths are relative to the dataset folder
// (a bare file name is also looked up under train/); nothing may resolve outside the folder.
class ImageLocator {
public:
    explicit ImageLocator(fs::path root) : root_(std::move(root)), root_slash_(root_.string() + "/") {
        root_fd_ = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root_fd_ < 0) throw Error(root_.string() + ": cannot open folder: " + std::strerror(errno));
    }
    ~ImageLocator() { ::close(root_fd_); }
    ImageLocator(const ImageLocator&) = delete;
    ImageLocator& operator=(const ImageLocator&) = delete;

    struct Found {
        std::string path;  // absolute
        std::int64_t size = 0;
        const char* skip = nullptr;  // reason kind when skipped
    };

    // Pick-a-Pic style sets name the same image in many rows: recent answers are remembered.
    const Found& locate(const std::string& rel) {
        auto it = recent_.find(rel);
        if (it != recent_.end()) return it->second;
        if (recent_.size() >= 4096) recent_.clear();  // bounded memory for any row count
        return recent_.emplace(rel, resolve(rel)).first->second;
    }

private:
    Found resolve(const std::string& rel) {
        Found f;
        if (rel.empty()) return skip(f, kSkipEmptyPath);
        if (rel.front() == '/') return skip(f, kSkipAbsolute);
        if (has_parent_component(rel)) return skip(f, kSkipParent);
        if (!try_candidate(rel, f) && f.skip == nullptr) {
            const bool under_train = rel.compare(0, 6, "train/") == 0;
            if (under_train || !try_candidate("train/" + rel, f)) {
                if (f.skip == nullptr) f.skip = kSkipMissing;
            }
        }
        return f;
    }

    static Found& skip(Found& f, const char* why) {
        f.skip = why;
        return f;
    }

    static bool has_parent_component(const std::string& rel) {
        std::size_t start = 0;
        while (start <= rel.size()) {
            const std::size_t slash = rel.find('/', start);
            const std::size_t end = slash == std::string::npos ? rel.size() : slash;
            if (end - start == 2 && rel[start] == '.' && rel[start + 1] == '.') return true;
            if (slash == std::string::npos) break;
            start = slash + 1;
        }
        return false;
    }

    bool inside(const std::string& real) const {
        return real == root_.string() || real.compare(0, root_slash_.size(), root_slash_) == 0;
    }

    // True when found; false with f.skip unset when the file does not exist.
    bool try_candidate(const std::string& rel, Found& f) {
        struct stat st {};
        // Relative to the open folder: only the components inside the dataset are walked.
        if (::fstatat(root_fd_, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
        std::string full = root_slash_ + rel;
        // Folders on the way may be links: each distinct folder is resolved once.
        const std::size_t slash = rel.rfind('/');
        if (slash != std::string::npos) {
            const std::string dir = rel.substr(0, slash);
            auto it = dir_inside_.find(dir);
            if (it == dir_inside_.end()) {
                if (dir_inside_.size() > 65536) dir_inside_.clear();  // bounded memory
                char* real = ::realpath((root_slash_ + dir).c_str(), nullptr);
                const bool ok = real && inside(real);
                std::free(real);
                it = dir_inside_.emplace(dir, ok).first;
            }
            if (!it->second) {
                f.skip = kSkipLinkOut;
                return false;
            }
        }
        if (S_ISLNK(st.st_mode)) {
            char* real = ::realpath(full.c_str(), nullptr);
            const bool ok = real && inside(real);
            std::free(real);
            if (!real) {
                f.skip = kSkipMissing;  // a dangling link
                return false;
            }
            if (!ok) {
                f.skip = kSkipLinkOut;
                return false;
            }
            if (::stat(full.c_str(), &st) != 0) {
                f.skip = kSkipMissing;
                return false;
            }
        }
        if (!S_ISREG(st.st_mode)) {
            f.skip = kSkipNotAFile;
            return false;
        }
        if (full.find("/./") != std::string::npos || full.find("//") != std::string::npos) {
            full = fs::path(full).lexically_normal().string();
        }
        f.path = std::move(full);
        f.size = static_cast<std::int64_t>(st.st_size);
        return true;
    }

    fs::path root_;
    std::string root_slash_;
    int root_fd_ = -1;
    std::unordered_map<std::string, bool> dir_inside_;
    std::unordered_map<std::string, Found> recent_;
};

// A prepared statement on the raw connection: the import's hot loop binds without copies.
class RawStatement {
public:
    RawStatement(sqlite3* db, const char* sql) : db_(db) {
        if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK) {
            throw Error(std::string("import: cannot prepare statement: ") + sqlite3_errmsg(db));
        }
    }
    ~RawStatement() { sqlite3_finalize(st_); }
    RawStatement(const RawStatement&) = delete;
    RawStatement& operator=(const RawStatement&) = delete;

    // `s` must outlive the next run(): bound without a copy.
    void text(int i, const std::string& s) {
        sqlite3_bind_text(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
    }
    void integer(int i, std::int64_t v) { sqlite3_bind_int64(st_, i, v); }
    void real(int i, double v) { sqlite3_bind_double(st_, i, v); }
    std::int64_t single_integer() {
        const int rc = sqlite3_step(st_);
        const std::int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st_, 0) : 0;
        const std::string why = rc == SQLITE_ROW ? "" : sqlite3_errmsg(db_);
        sqlite3_reset(st_);
        if (rc != SQLITE_ROW) throw Error("import: " + why + " (code " + std::to_string(rc) + ")");
        return v;
    }
    void run() {
        const int rc = sqlite3_step(st_);
        if (rc != SQLITE_DONE) {
            const std::string why = sqlite3_errmsg(db_);
            sqlite3_reset(st_);
            throw Error("import: " + why);
        }
        sqlite3_reset(st_);
    }

private:
    sqlite3* db_;
    sqlite3_stmt* st_ = nullptr;
};

// A prepared INSERT of `rows` rows at once ("INSERT ... VALUES (row), (row), ..."), each row with
// `per_row` parameters; parameters are addressed by row and by their 1-based place in a row.
class RowInserts {
public:
    RowInserts(sqlite3* db, int rows, const std::string& prefix, const std::string& row_sql, int per_row)
        : rows_(rows), per_row_(per_row), statement_(db, sql(prefix, row_sql, rows).c_str()) {}
    int rows() const { return rows_; }
    // `s` must outlive the next run(): bound without a copy.
    void text(int row, int i, const std::string& s) { statement_.text(row * per_row_ + i, s); }
    void integer(int row, int i, std::int64_t v) { statement_.integer(row * per_row_ + i, v); }
    void real(int row, int i, double v) { statement_.real(row * per_row_ + i, v); }
    void run() { statement_.run(); }

private:
    static std::string sql(const std::string& prefix, const std::string& row, int rows) {
        std::string out = prefix;
        for (int r = 0; r < rows; ++r) (out += r ? ", " : "") += row;
        return out;
    }
    int rows_, per_row_;
    RawStatement statement_;
};

// Rows per multi-row INSERT during an import (8 parameters a row: far below SQLite's limit).
constexpr int kRowsPerInsert = 64;

template <class T>
T parse_number(const std::string& text, const char* column, const CsvReader& csv) {
    T value{};
    if (text.empty()) return value;
    const char* b = text.data();
    const char* e = b + text.size();
    const auto r = std::from_chars(b, e, value);
    if (r.ec != std::errc() || r.ptr != e) {
        throw Error(csv.path().string() + ": line " + std::to_string(csv.record_line()) + ": " +
                    column + " '" + text + "' is not a number");
    }
    return value;
}

// Raises the page cache for the bulk transaction and turns foreign-key checks off for it (every
// id the import writes comes from a row it has just inserted in the same transaction, so the
// parent look-ups per CSV row check nothing), and puts both back afterwards. foreign_keys can only
// change outside a transaction: construct before BEGIN, destroy after COMMIT/ROLLBACK.
class BulkPragmas {
public:
    explicit BulkPragmas(SQLite::Database& db) : db_(db) {
        old_cache_ = db_.execAndGet("PRAGMA cache_size").getInt();
        old_foreign_keys_ = db_.execAndGet("PRAGMA foreign_keys").getInt();
        db_.exec("PRAGMA cache_size = -32768");  // 32 MiB
        db_.exec("PRAGMA foreign_keys = OFF");
    }
    ~BulkPragmas() {
        try {
            db_.exec("PRAGMA cache_size = " + std::to_string(old_cache_));
            db_.exec(old_foreign_keys_ ? "PRAGMA foreign_keys = ON" : "PRAGMA foreign_keys = OFF");
        } catch (...) {  // the connection stays usable
        }
    }

private:
    SQLite::Database& db_;
    int old_cache_ = 0;
    int old_foreign_keys_ = 1;
};

// One CSV row that passed every check, waiting to be written.
struct PendingRow {
    std::string caption, sampler, path;
    std::int64_t seed = 0;
    int steps = 0;
    double cfg = 0;
    std::int64_t size = 0;
    int value = 0;
};

// A batch of rows handed from the reader to the writer. Batches are recycled, so their strings'
// buffers are reused instead of allocated per row.
struct RowBatch {
    static constexpr std::size_t kRows = 2048;
    std::vector<PendingRow> storage;
    std::size_t used = 0;
    std::uint64_t bytes_read = 0;  // CSV bytes consumed when the batch was handed over
    bool last = false;

    PendingRow& add() {
        if (used == storage.size()) storage.emplace_back();
        return storage[used++];
    }
    std::size_t size() const { return used; }
    struct Span {
        const PendingRow* b;
        const PendingRow* e;
        const PendingRow* begin() const { return b; }
        const PendingRow* end() const { return e; }
    };
    Span rows() const { return {storage.data(), storage.data() + used}; }
};

// A bounded queue of batches between the two threads (a few batches: bounded memory).
class RowPipe {
public:
    // Blocks while the queue is full; false when the writer has stopped.
    bool push(RowBatch&& batch) {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stopped_ || full_.size() < kDepth; });
        if (stopped_) return false;
        full_.push_back(std::move(batch));
        changed_.notify_all();
        return true;
    }
    // The next batch in order; nullopt when the reader failed.
    std::optional<RowBatch> pop() {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return failed_ || !full_.empty(); });
        if (full_.empty()) return std::nullopt;
        RowBatch b = std::move(full_.front());
        full_.pop_front();
        changed_.notify_all();
        return b;
    }
    RowBatch empty_batch() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (spare_.empty()) return RowBatch{};
        RowBatch b = std::move(spare_.back());
        spare_.pop_back();
        return b;
    }
    void recycle(RowBatch&& batch) {
        batch.used = 0;
        batch.last = false;
        std::lock_guard<std::mutex> lock(mutex_);
        spare_.push_back(std::move(batch));
    }
    void fail() {
        std::lock_guard<std::mutex> lock(mutex_);
        failed_ = true;
        changed_.notify_all();
    }
    void stop() {
        std::lock_guard<std::mutex> lock(mutex_);
        stopped_ = true;
        changed_.notify_all();
    }

private:
    static constexpr std::size_t kDepth = 4;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<RowBatch> full_;
    std::vector<RowBatch> spare_;
    bool failed_ = false;
    bool stopped_ = false;
};

}  // namespace

ImportReport import_dataset(Store& store, const fs::path& dir, const ImportOptions& options) {
    ImportReport report;
    std::error_code ec;
    const fs::path root = fs::canonical(dir, ec);
    if (ec || !fs::is_directory(root)) {
        throw Error(dir.string() + ": not a dataset folder" + (ec ? ": " + ec.message() : ""));
    }
    report.dataset_dir = root;
    const fs::path csv_path = root / options.csv_name;
    if (!fs::is_regular_file(csv_path)) {
        throw Error(root.string() + ": no " + options.csv_name + " in this folder");
    }

    CsvReader csv(csv_path);
    std::vector<std::string> fields;
    if (!csv.next(fields)) {
        throw Error(csv_path.string() + ": line 1: empty file (expected a header row with "
                                        "file_path, caption and label)");
    }
    const Columns col = read_header(fields, csv);
    const std::string now = store.now();
    const std::string model_name = "imported:" + root.filename().string();
    const std::string model_folder = root.string();

    SQLite::Database& db = store.connection();
    sqlite3* raw = db.getHandle();
    BulkPragmas pragmas(db);
    SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
    {
        RawStatement add_model(raw,
                               "INSERT OR IGNORE INTO models (name, folder, content_hash, created_at) "
                               "VALUES (?, ?, '', ?)");
        add_model.text(1, model_name);
        add_model.text(2, model_folder);
        add_model.text(3, now);
        add_model.run();
        RawStatement find_model(raw, "SELECT id FROM models WHERE name = ? AND folder = ?");
        find_model.text(1, model_name);
        find_model.text(2, model_folder);
        report.model_id = find_model.single_integer();
    }
    // Rows of this dataset folder already in the workspace (an earlier import of the same folder),
    // counted by file and caption: importing again adds only what is new, so re-importing never
    // duplicates images, while a CSV that repeats a file (one row per rating) still gets one
    // image per row.
    std::unordered_map<std::string, std::int64_t> already;
    {
        SQLite::Statement q(db,
                            "SELECT i.file, g.prompt FROM images i JOIN generations g ON g.id = i.generation_id "
                            "WHERE g.model_id = ?");
        q.bind(1, report.model_id);
        while (q.executeStep()) ++already[q.getColumn(0).getString() + '\0' + q.getColumn(1).getString()];
    }

    // Rows are written K at a time by multi-row INSERTs (one statement run per K rows instead of
    // per row: SQLite opens and closes its cursors once per run), with ids assigned here. The
    // IMMEDIATE transaction holds the write lock, so MAX(id) + 1 onwards are the ids SQLite itself
    // would give.
    std::int64_t next_generation_id = 0, next_image_id = 0;
    {
        RawStatement q(raw, "SELECT COALESCE(MAX(id), 0) FROM generations");
        next_generation_id = q.single_integer() + 1;
        RawStatement qi(raw, "SELECT COALESCE(MAX(id), 0) FROM images");
        next_image_id = qi.single_integer() + 1;
    }
    // The imported label is the image's base label (its history starts empty): two rows per image.
    const std::string generations_sql =
        "INSERT INTO generations (id, prompt, negative_prompt, seed, steps, cfg, sampler, width, height, "
        "model_id, created_at) VALUES ";
    const std::string generations_row = "(?, ?, '', ?, ?, ?, ?, 0, 0, ?, ?)";
    const std::string images_sql =
        "INSERT INTO images (id, generation_id, file, sha256, byte_size, width, height, created_at, label, "
        "base_label) VALUES ";
    const std::string images_row = "(?, ?, ?, NULL, ?, 0, 0, ?, ?, ?)";
    RowInserts generations_k(raw, kRowsPerInsert, generations_sql, generations_row, 8);
    RowInserts generations_1(raw, 1, generations_sql, generations_row, 8);
    RowInserts images_k(raw, kRowsPerInsert, images_sql, images_row, 7);
    RowInserts images_1(raw, 1, images_sql, images_row, 7);
    // Bound once: the same for every row.
    for (RowInserts* g : {&generations_k, &generations_1})
        for (int r = 0; r < g->rows(); ++r) {
            g->integer(r, 7, report.model_id);
            g->text(r, 8, now);
        }
    for (RowInserts* im : {&images_k, &images_1})
        for (int r = 0; r < im->rows(); ++r) im->text(r, 5, now);
    const auto write_rows = [&](const PendingRow* rows, RowInserts& gen, RowInserts& img) {
        for (int r = 0; r < gen.rows(); ++r) {
            const PendingRow& row = rows[r];
            gen.integer(r, 1, next_generation_id + r);
            gen.text(r, 2, row.caption);
            gen.integer(r, 3, row.seed);
            gen.integer(r, 4, row.steps);
            gen.real(r, 5, row.cfg);
            gen.text(r, 6, row.sampler);
            img.integer(r, 1, next_image_id + r);
            img.integer(r, 2, next_generation_id + r);
            img.text(r, 3, row.path);
            img.integer(r, 4, row.size);
            img.integer(r, 6, row.value);
            img.integer(r, 7, row.value);
        }
        gen.run();
        img.run();
        next_generation_id += gen.rows();
        next_image_id += img.rows();
    };

    // Two stages on two threads: a reader parses and checks the CSV rows and finds their images
    // (everything that can skip a row or fail on bad input), and this thread writes the rows it
    // hands over, in order, into the open transaction. The reader owns `csv`, the locator and the
    // row / skip counts of `report`; this thread owns SQLite and the imported / liked counts.
    std::exception_ptr reader_error;
    RowPipe pipe;
    std::thread reader([&] {
        pthread_setname_np(pthread_self(), "kto-import-csv");  // as shown by top -H, perf, gdb
        try {
            ImageLocator locator(root);
            const std::string empty;
            const auto skip_row = [&](const char* kind, const std::string& detail) {
                ++report.skipped;
                ++report.skipped_by_reason[kind];
                if (report.skipped_rows.size() < options.max_listed_skips) {
                    report.skipped_rows.push_back({csv.record_line(), detail + ": " + kind});
                }
            };
            RowBatch batch = pipe.empty_batch();
            while (csv.next(fields)) {
                ++report.rows;
                if (fields.size() != col.count) {
                    throw Error(csv_path.string() + ": line " + std::to_string(csv.record_line()) + ": " +
                                std::to_string(fields.size()) + " fields, but the header has " +
                                std::to_string(col.count));
                }
                const std::string& label_text = fields[static_cast<std::size_t>(col.label)];
                int value = 0;
                if (label_text == "exclusive_win") {
                    value = 1;
                } else if (label_text == "exclusive_lose") {
                    value = -1;
                } else if (label_text == "intersections") {
                    value = options.intersections == IntersectionPolicy::Like      ? 1
                            : options.intersections == IntersectionPolicy::Dislike ? -1
                                                                                   : 0;
                } else {
                    throw Error(csv_path.string() + ": line " + std::to_string(csv.record_line()) +
                                ": label '" + label_text +
                                "' is not exclusive_win, exclusive_lose or intersections");
                }
                const std::string& caption =
                    col.caption >= 0 ? fields[static_cast<std::size_t>(col.caption)] : empty;
                const auto seed = col.seed >= 0 ? parse_number<std::int64_t>(fields[col.seed], "seed", csv) : 0;
                const auto steps = col.steps >= 0 ? parse_number<int>(fields[col.steps], "steps", csv) : 0;
                const auto cfg = col.cfg >= 0 ? parse_number<double>(fields[col.cfg], "cfg", csv) : 0.0;
                if (value == 0) {
                    skip_row(kSkipIntersections, "intersections");
                    continue;
                }
                const std::string& rel = fields[static_cast<std::size_t>(col.path)];
                const ImageLocator::Found& found = locator.locate(rel);
                if (found.skip) {
                    skip_row(found.skip, "'" + rel + "'");
                    continue;
                }
                if (!already.empty()) {
                    const auto it = already.find(found.path + '\0' + caption);
                    if (it != already.end() && it->second > 0) {
                        --it->second;
                        skip_row(kSkipAlreadyImported, "'" + rel + "'");
                        continue;
                    }
                }
                PendingRow& row = batch.add();
                row.caption = caption;
                row.sampler = col.sampler >= 0 ? fields[static_cast<std::size_t>(col.sampler)] : empty;
                row.path = found.path;
                row.seed = seed;
                row.steps = steps;
                row.cfg = cfg;
                row.size = found.size;
                row.value = value;
                if (batch.size() == RowBatch::kRows) {
                    batch.bytes_read = csv.bytes_read();
                    if (!pipe.push(std::move(batch))) return;  // the writer stopped
                    batch = pipe.empty_batch();
                }
            }
            batch.bytes_read = csv.bytes_read();
            batch.last = true;
            pipe.push(std::move(batch));
        } catch (...) {
            reader_error = std::current_exception();
            pipe.fail();
        }
    });
    struct JoinReader {  // on every way out of this scope, the reader stops and is joined
        RowPipe& pipe;
        std::thread& thread;
        ~JoinReader() {
            pipe.stop();
            if (thread.joinable()) thread.join();
        }
    } join_reader{pipe, reader};

    std::int64_t imported = 0, liked = 0, disliked = 0;
    for (;;) {
        std::optional<RowBatch> batch = pipe.pop();
        if (!batch) break;  // the reader failed: its error is rethrown below
        const PendingRow* row = batch->rows().begin();
        const PendingRow* const end = batch->rows().end();
        for (; end - row >= kRowsPerInsert; row += kRowsPerInsert) write_rows(row, generations_k, images_k);
        for (; row != end; ++row) write_rows(row, generations_1, images_1);
        for (const PendingRow& r : batch->rows()) (r.value > 0 ? liked : disliked)++;
        imported += static_cast<std::int64_t>(batch->size());
        const bool last = batch->last;
        const std::uint64_t bytes = batch->bytes_read;
        pipe.recycle(std::move(*batch));
        if (last) break;
        if (options.progress && !options.progress(bytes, csv.file_size())) throw Cancelled();
    }
    pipe.stop();
    reader.join();
    if (reader_error) std::rethrow_exception(reader_error);
    report.imported = imported;
    report.liked = liked;
    report.disliked = disliked;
    tx.commit();
    if (options.progress) options.progress(csv.bytes_read(), csv.file_size());
    return report;
}

}  // namespace kto::storage
