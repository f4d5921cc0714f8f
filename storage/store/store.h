#pragma once
// The label store: generations, images, like/dislike history, training runs and comparison votes
// of one workspace, in SQLite (WAL, foreign keys on, schema migrated on open).
//
// Thread-safety: a Store is one SQLite connection, so use each Store from one thread at a time and
// give every thread (the GUI's storage worker, each reader) its own Store on the same workspace;
// WAL lets readers run while a writer commits, and writers wait up to busy_timeout_ms for each other.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "storage/store/records.h"
#include "storage/store/workspace.h"

namespace SQLite {
class Database;
class Statement;
}  // namespace SQLite

namespace kto::storage {

struct StoreOptions {
    // Current time in the stored format; tests replace it to place records in time.
    std::function<std::string()> clock;
    // How long a write waits for another connection's write lock before failing.
    int busy_timeout_ms = 10000;
    // false: synchronous=NORMAL (in WAL a commit survives a crash of the app, and the last commits
    // may roll back after a power loss); true: synchronous=FULL (also survives power loss, ~1 fsync
    // per commit).
    bool sync_every_commit = false;
};

class Store {
public:
    // Opens (creating or upgrading) the workspace's studio.sqlite3. Throws kto::Error if the file
    // is not a KTO Studio database, is newer than this build (left untouched), or an upgrade fails.
    explicit Store(Workspace workspace, StoreOptions options = {});
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    const Workspace& workspace() const { return workspace_; }
    // True when the workspace (folder or studio.sqlite3) is not writable: it was opened read-only,
    // reads work and every write throws kto::Error saying so. read_only_message() is the text to
    // show (the UI's status bar, the CLI's stderr).
    bool read_only() const { return read_only_; }
    std::string read_only_message() const;
    int schema_version();

    // --- models
    // The model with this name and folder, created if missing; a non-empty content_hash updates it.
    std::int64_t ensure_model(const std::string& name, const std::string& folder = "",
                              const std::string& content_hash = "");
    std::optional<ModelRecord> model(std::int64_t id);
    std::optional<ModelRecord> find_model(const std::string& name);  // the first with this name
    std::vector<ModelRecord> models();

    // --- generations and images
    // Stores the image files (content-addressed) and adds the generation and its image rows in one
    // transaction. A failure adds no rows (files already written stay: content-addressed, reusable).
    AddedGeneration add_generation(const GenerationInput& generation,
                                   const std::vector<ImageInput>& images);
    std::optional<ImageRecord> image(std::int64_t id);
    // The image's SHA-256, hashing its file now (and recording it) if it was imported lazily.
    std::string ensure_image_hash(std::int64_t id);
    // Records hashes computed elsewhere (e.g. while exporting), in one transaction.
    void record_image_hashes(const std::vector<std::pair<std::int64_t, std::string>>& hashes);
    // Deletes the image rows (with their label history) and then the workspace files no other image
    // uses; files referenced in place (imported datasets) are never deleted. Returns rows deleted.
    std::int64_t delete_images(const std::vector<std::int64_t>& ids);

    // --- labels (each call is one transaction; throws kto::Error for an unknown image)
    // Records a like or dislike (Label::None records a clear). Relabelling appends to the history.
    void set_label(std::int64_t image_id, Label label);
    void clear_label(std::int64_t image_id) { set_label(image_id, Label::None); }
    // Marks the latest live history entry undone and returns the label now in force (the entry
    // before it, or None). Repeated undos walk further back. Throws if there is nothing to undo.
    Label undo_label(std::int64_t image_id);
    Label current_label(std::int64_t image_id);
    std::vector<LabelEvent> label_history(std::int64_t image_id);

    // --- queries
    std::vector<ImageRecord> query_images(const ImageQuery& query);
    // Streams the matching images to `visit` in query order (for exports of any size); stop early
    // by returning false.
    void for_each_image(const ImageQuery& query, const std::function<bool(const ImageRecord&)>& visit);
    // Counts over the images matching `query` (its label filter, order and paging are ignored).
    LabelCounts counts(const ImageQuery& query = {});
    // Like/dislike balance per prompt, most images first.
    std::vector<PromptBalance> prompt_balance(std::int64_t limit = -1);

    // --- training runs
    std::int64_t add_run(const std::string& name, const std::string& config_json,
                         const std::string& folder = "");
    // Running records started_at (once); Finished/Failed/Cancelled record finished_at.
    void set_run_status(std::int64_t run_id, RunStatus status);
    void set_run_folder(std::int64_t run_id, const std::string& folder);
    std::optional<TrainingRun> run(std::int64_t run_id);
    std::vector<TrainingRun> runs();

    // --- comparison votes
    std::int64_t add_vote(const ComparisonVoteInput& vote);
    std::vector<ComparisonVote> votes(const std::string& compare_id);
    VoteTally tally_votes(const std::string& compare_id);
    // Records a comparison session. Throws kto::Error for an empty or already used id or an
    // unknown model.
    void add_comparison(const ComparisonInput& comparison);
    std::optional<ComparisonRecord> comparison(const std::string& id);
    std::vector<ComparisonRecord> comparisons();  // oldest first
    // Turns the session's votes into labels, in one transaction: for every vote not applied yet
    // that has a winner and both images, the winner image is liked and the loser disliked (label
    // history rows like any click), and the vote is marked applied. Ties are skipped.
    VoteLabelsApplied apply_vote_labels(const std::string& compare_id);

    // The connection, for kto_storage's own bulk paths (dataset import). Not for the UI.
    SQLite::Database& connection() { return *db_; }
    std::string now() const;

private:
    SQLite::Statement& statement(const std::string& sql);
    ImageRecord read_image_row(SQLite::Statement& row) const;
    void check_image(std::int64_t image_id);
    void open_read_only(const std::string& label);

    Workspace workspace_;
    StoreOptions options_;
    std::unique_ptr<SQLite::Database> db_;
    bool read_only_ = false;
    std::map<std::string, std::unique_ptr<SQLite::Statement>> statements_;
};

}  // namespace kto::storage
