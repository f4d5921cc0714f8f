#pragma once
// Plain records the label store reads and writes. Times are ISO-8601 UTC text (timestamps.h).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kto::storage {

// An image's current label. Stored as 1 / -1 / 0.
enum class Label : int { None = 0, Like = 1, Dislike = -1 };

// "liked", "disliked", "unlabeled".
const char* label_name(Label label);

struct ModelRecord {
    std::int64_t id = 0;
    std::string name;
    std::string folder;
    std::string content_hash;
    std::string created_at;
};

// What produced a set of images. Sizes are pixels; `model_id` is a ModelRecord id.
struct GenerationInput {
    std::string prompt;
    std::string negative_prompt;
    std::int64_t seed = 0;
    int steps = 0;
    double cfg = 0.0;
    std::string sampler;
    int width = 0;
    int height = 0;
    std::int64_t model_id = 0;
    std::optional<std::string> checkpoint;  // a fine-tuned checkpoint folder, if not the base model
    std::optional<std::int64_t> run_id;     // the training run that produced the checkpoint
};

// One image to add: encoded bytes (PNG as generated), or else a file to copy into the workspace.
struct ImageInput {
    std::string encoded;
    std::filesystem::path source_file;
    std::string extension = ".png";  // used with `encoded`
    int width = 0;                   // 0: the generation's width
    int height = 0;
};

struct AddedGeneration {
    std::int64_t generation_id = 0;
    std::vector<std::int64_t> image_ids;
};

// An image with its generation's provenance, as queries return it.
struct ImageRecord {
    std::int64_t id = 0;
    std::int64_t generation_id = 0;
    std::string file;                   // as recorded (relative to the workspace or absolute)
    std::filesystem::path path;         // absolute path of the file
    std::optional<std::string> sha256;  // empty until hashed (imported images hash lazily)
    std::int64_t byte_size = 0;
    int width = 0;  // 0 when unknown (imported images are not decoded)
    int height = 0;
    std::string created_at;
    Label label = Label::None;

    std::string prompt;
    std::string negative_prompt;
    std::int64_t seed = 0;
    int steps = 0;
    double cfg = 0.0;
    std::string sampler;
    std::int64_t model_id = 0;
    std::string model_name;
    std::optional<std::string> checkpoint;
    std::optional<std::int64_t> run_id;
};

// One entry of an image's label history. value None is a "clear".
struct LabelEvent {
    std::int64_t id = 0;  // 0 for the imported label
    Label value = Label::None;
    std::string created_at;
    std::optional<std::string> undone_at;
    bool imported = false;  // the label the image came with (a dataset import), not a change made here
};

enum class LabelFilter { Any, Liked, Disliked, Unlabeled, Labeled };

// Which images a query, count or export covers. Empty/unset fields do not filter.
struct ImageQuery {
    LabelFilter label = LabelFilter::Any;
    std::string prompt_contains;  // case-insensitive for ASCII letters
    std::optional<std::int64_t> model_id;
    std::string model_name;  // exact model name
    std::optional<std::string> checkpoint;
    std::optional<std::int64_t> run_id;
    std::string since;  // image creation time bounds, inclusive, as produced by iso_bound()
    std::string until;
    bool unlabeled_first = false;  // unlabeled images first, then by id
    bool newest_first = false;     // by id descending (after unlabeled_first)
    std::int64_t limit = -1;       // -1: no limit
    std::int64_t offset = 0;
};

struct LabelCounts {
    std::int64_t images = 0;
    std::int64_t liked = 0;
    std::int64_t disliked = 0;
    std::int64_t unlabeled = 0;
};

// Per-prompt balance of likes and dislikes (KTO wants both for each prompt).
struct PromptBalance {
    std::string prompt;
    LabelCounts counts;
};

enum class RunStatus { Created, Running, Finished, Failed, Cancelled };
const char* run_status_name(RunStatus status);
RunStatus run_status_from_name(const std::string& name);  // throws kto::Error for unknown names

struct TrainingRun {
    std::int64_t id = 0;
    std::string name;
    std::string config_json;
    RunStatus status = RunStatus::Created;
    std::string folder;
    std::string created_at;
    std::optional<std::string> started_at;
    std::optional<std::string> finished_at;
};

enum class Winner { Left, Right, Tie };
const char* winner_name(Winner winner);  // "left", "right", "tie"

struct ComparisonVoteInput {
    std::string compare_id;  // one comparison session (e.g. "run-3-blind-1")
    std::optional<std::int64_t> run_id;
    std::string prompt;
    std::int64_t seed = 0;
    std::int64_t left_model_id = 0;
    std::int64_t right_model_id = 0;
    std::optional<std::int64_t> left_image_id;
    std::optional<std::int64_t> right_image_id;
    Winner winner = Winner::Tie;
};

struct ComparisonVote : ComparisonVoteInput {
    std::int64_t id = 0;
    std::string created_at;
    std::optional<std::string> labels_applied_at;  // when apply_vote_labels turned it into labels
};

// A comparison session: the two sides its votes judge. Side B is the one whose win rate is
// reported (the fine-tune, by convention).
struct ComparisonInput {
    std::string id;  // the compare_id its votes carry
    std::int64_t a_model_id = 0;
    std::int64_t b_model_id = 0;
    std::optional<std::string> a_checkpoint;  // a fine-tuned UNet folder, if not the base model
    std::optional<std::string> b_checkpoint;
    std::optional<std::int64_t> run_id;
    std::string settings_json = "{}";  // steps, cfg, sampler, size, prompts, seeds
    bool blind = true;
};

struct ComparisonRecord : ComparisonInput {
    std::string created_at;
};

// What apply_vote_labels did.
struct VoteLabelsApplied {
    std::int64_t votes = 0;     // votes turned into labels now
    std::int64_t liked = 0;     // winner images labelled liked
    std::int64_t disliked = 0;  // loser images labelled disliked
    std::int64_t skipped = 0;   // ties, votes without both images, votes already applied
};

struct VoteTally {
    std::int64_t left = 0;
    std::int64_t right = 0;
    std::int64_t tie = 0;
};

}  // namespace kto::storage
