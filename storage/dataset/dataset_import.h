#pragma once
// Imports a Diffusion-KTO / Pick-a-Pic style folder: <dir>/train_processed_v3.csv plus the image
// files it names. Either column spelling is read (file_path or file_name; label or split; caption
// optional, missing means ""); seed, sampler, steps and cfg are kept when present.
//
// Images are referenced in place, not copied: each row records the absolute path of its file inside
// the dataset folder and its byte size; nothing is decoded and the SHA-256 is computed later, when
// first needed (export, ensure_image_hash). So the dataset folder must stay where it is.
//
// The CSV is streamed (constant memory for any row count) and imported in one transaction: a
// malformed file (unterminated quote, missing column, wrong field count, unknown label, empty file)
// throws kto::Error naming the line and imports nothing. Rows whose image is missing or whose path
// leaves the folder (absolute, "..", a link pointing outside) are skipped and reported, and so are
// rows already in the workspace from an earlier import of the folder (same file and caption):
// importing a folder again adds only new rows.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "storage/store/records.h"

namespace kto::storage {

class Store;

// What an `intersections` row (liked and disliked by different raters) becomes.
enum class IntersectionPolicy { Like, Dislike, Skip };

struct ImportOptions {
    IntersectionPolicy intersections = IntersectionPolicy::Like;  // desirable, as the trainer does
    std::string csv_name = "train_processed_v3.csv";
    // Called now and then with (CSV bytes read, CSV size); return false to cancel (throws
    // kto::Cancelled, nothing imported).
    std::function<bool(std::uint64_t done, std::uint64_t total)> progress;
    // How many skipped rows are listed one by one in the report (all are counted).
    std::size_t max_listed_skips = 200;
};

struct SkippedRow {
    std::int64_t line = 0;  // CSV line where the row starts
    std::string reason;     // e.g. "train/x.png: image file not found"
};

struct ImportReport {
    std::filesystem::path dataset_dir;  // canonical
    std::int64_t model_id = 0;          // the "imported:<folder name>" model
    std::int64_t rows = 0;
    std::int64_t imported = 0;
    std::int64_t liked = 0;
    std::int64_t disliked = 0;
    std::int64_t skipped = 0;
    std::map<std::string, std::int64_t> skipped_by_reason;  // reason kind -> rows
    std::vector<SkippedRow> skipped_rows;                   // the first max_listed_skips
};

ImportReport import_dataset(Store& store, const std::filesystem::path& dir,
                            const ImportOptions& options = {});

// Reason kinds used in ImportReport::skipped_by_reason.
inline constexpr const char* kSkipMissing = "image file not found";
inline constexpr const char* kSkipNotAFile = "not a regular file";
inline constexpr const char* kSkipAbsolute = "absolute path";
inline constexpr const char* kSkipParent = "path leaves the dataset folder";
inline constexpr const char* kSkipLinkOut = "link points outside the dataset folder";
inline constexpr const char* kSkipEmptyPath = "empty file path";
inline constexpr const char* kSkipIntersections = "intersections skipped";
// The row is already in the workspace (an earlier import of this folder: same file and caption).
inline constexpr const char* kSkipAlreadyImported = "already in the workspace";

}  // namespace kto::storage
