#pragma once
// Training data: labelled image records (from the caller, or read from an exported dataset folder),
// image decoding and the augmentation of shared/guide/KTO.md ("Training recipe"), data checks with
// messages a user can act on, and the class-balanced batch sampler. Functions are thread-safe; a
// BatchSampler is used from one thread.
#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/train/objectives.h"

namespace kto {

// One labelled image. The CLI and the UI build these from the workspace's label store (core does
// not depend on storage) or with read_dataset_folder().
struct TrainRecord {
    std::string image_path;  // absolute, or relative to the working directory
    std::string caption;     // the prompt; "" is allowed
    bool desirable = true;   // liked (exclusive_win) or disliked (exclusive_lose)
};

struct DatasetFolderOptions {
    std::string csv_name = "train_processed_v3.csv";
    // What an `intersections` row becomes: desirable (the reference loader's default policy) or
    // dropped when false.
    bool intersections_desirable = true;
};

// Reads DIR/train_processed_v3.csv (KTO.md, "Dataset CSV") in either column spelling: file_path or
// file_name, label or split (exclusive_win / exclusive_lose / intersections; 1 / 0 also accepted);
// a missing caption column or cell means "". Paths are relative to DIR (a path not found there is
// also tried under DIR/train/). Throws kto::Error naming the file and line for malformed CSV,
// missing columns and unknown labels. Image files are not opened here.
std::vector<TrainRecord> read_dataset_folder(const std::string& dir,
                                             const DatasetFolderOptions& options = {});

// A snapshot of labelled images in a JSON file: [{"image": path, "caption": text, "liked": bool}, ...].
// The app writes one for a multi-process run so that every worker trains on exactly the same
// records (`kto-studio-cli train --records FILE`), however the workspace changes meanwhile.
// write_records_file writes atomically; read_records_file throws kto::Error naming the file and
// the entry for anything malformed.
void write_records_file(const std::string& path, const std::vector<TrainRecord>& records);
std::vector<TrainRecord> read_records_file(const std::string& path);

// Decodes PNG/JPEG/BMP/TGA (stb_image) and applies the deterministic part of the augmentation:
// resize the shorter side to `resolution` (bilinear, antialiased when shrinking), centre crop to
// resolution x resolution, scale to [-1, 1]. Returns float [3, R, R]. Throws kto::Error
// "<path>: <reason>" for a missing, unreadable or corrupt file.
torch::Tensor load_training_image(const std::string& path, int resolution);
// The same from an 8-bit RGB buffer (height x width x 3).
torch::Tensor preprocess_rgb(const uint8_t* rgb, int width, int height, int resolution);

struct SkippedImage {
    std::string path;
    std::string reason;
};

// Checks a record set before any work: an empty set is an error; a set with one class is an error
// for KTO unless `allow_one_class` (the reference point still works, but nothing tells the model
// what to avoid or prefer) and always for DPO (no pairs); SFT needs at least one liked image.
// Returns warnings (e.g. one class allowed) for the caller to show.
std::vector<std::string> check_records(const std::vector<TrainRecord>& records, ObjectiveKind objective,
                                       bool allow_one_class);

// Diffusion-DPO pairs: every (liked, disliked) combination of records with the same caption, as
// indices into `records`. Throws kto::Error when no caption has both a liked and a disliked image.
std::vector<std::pair<size_t, size_t>> make_dpo_pairs(const std::vector<TrainRecord>& records);

// Draws training indices with replacement so that P(desirable) = positive_ratio in every batch
// stream (KTO.md, "Class balance"), uniformly within a class; with one class present every draw
// comes from it. Also owns the random stream for the per-sample coin flips of the data pipeline
// (horizontal flip, caption dropout) so its whole state is one serialisable engine.
class BatchSampler {
public:
    BatchSampler(const std::vector<bool>& desirable, double positive_ratio, uint64_t seed);
    size_t next_index();
    double uniform();  // U[0, 1), from the same stream
    std::string state() const;
    void set_state(const std::string& state);  // throws kto::Error for a malformed state
    size_t desirable_count() const { return desirable_.size(); }
    size_t undesirable_count() const { return undesirable_.size(); }

private:
    std::vector<size_t> desirable_, undesirable_;
    double positive_ratio_;
    std::mt19937_64 engine_;
};

}  // namespace kto
