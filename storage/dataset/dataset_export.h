#pragma once
// Exports labelled images as a Diffusion-KTO training set: <dir>/train_processed_v3.csv and
// <dir>/train/<sha256>.<ext>. Columns: file_path, caption, label, file_name, split (the same values
// under the names the reference trainer's loader reads, see shared/guide/KTO.md), then provenance
// seed, model, sampler, steps, cfg. label/split: exclusive_win (liked), exclusive_lose (disliked).
//
// The dataset is built in a hidden folder beside the target and renamed into place (an overwrite
// swaps the folders atomically), so a crash never leaves a partial dataset under the target name.
#include <cstdint>
#include <filesystem>
#include <functional>

#include "storage/store/records.h"

namespace kto::storage {

class Store;

inline constexpr const char* kDatasetCsvName = "train_processed_v3.csv";
inline constexpr const char* kDatasetImageDir = "train";

struct ExportOptions {
    // Which images: label Any means every labelled one; Liked/Disliked narrow it; Unlabeled is an
    // error (unlabeled images carry no training signal). Ordered by image id unless the query says.
    ImageQuery query;
    // Replace a non-empty target folder (built first, then swapped in).
    bool overwrite = false;
    // Called after each image with (done, total); return false to cancel (throws kto::Cancelled,
    // leaving the target as it was).
    std::function<bool(std::int64_t done, std::int64_t total)> progress;
};

struct ExportResult {
    std::int64_t images = 0;  // CSV rows
    std::int64_t liked = 0;
    std::int64_t disliked = 0;
    std::int64_t files = 0;  // image files written (identical images share one file)
    std::filesystem::path csv;
};

ExportResult export_dataset(Store& store, const std::filesystem::path& target,
                            const ExportOptions& options = {});

// The header row, in column order.
const std::vector<std::string>& dataset_csv_columns();

}  // namespace kto::storage
