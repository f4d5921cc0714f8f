#pragma once
// A small labelled dataset and a training request on the tiny-sd reference model, shared by the
// training-job tests (test_training_job, test_checkpoint_faults).
#include <stb/stb_image_write.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/train/trainer.h"
#include "tests/support/test_paths.h"

namespace kto::test {

inline std::string tiny_sd() { return reference_dir() + "/tiny-sd"; }

// 4 liked (bright) and 2 disliked (dark) 80x64 images under root/train/ + the CSV.
inline void make_tiny_dataset(const std::filesystem::path& root) {
    std::filesystem::create_directories(root / "train");
    std::string csv = "file_path,caption,label\n";
    for (int i = 0; i < 6; ++i) {
        const bool liked = i < 4;
        std::vector<uint8_t> px(80 * 64 * 3);
        for (size_t k = 0; k < px.size(); ++k) px[k] = static_cast<uint8_t>((liked ? 150 : 20) + (k * 7 + i * 13) % 90);
        const std::string name = "train/img" + std::to_string(i) + ".png";
        stbi_write_png((root / name).string().c_str(), 80, 64, 3, px.data(), 80 * 3);
        csv += name + ",a photograph of an astronaut riding a horse," + (liked ? "exclusive_win" : "exclusive_lose") + "\n";
    }
    std::ofstream(root / "train_processed_v3.csv") << csv;
}

// A run of `steps` on root/data (make_tiny_dataset) into root/runs/<run>: batch 2, LR 1e-4, no
// warmup, a checkpoint every step, the last 2 kept.
inline kto::TrainRequest tiny_train_request(const std::filesystem::path& root, const std::string& run,
                                            int64_t steps) {
    kto::TrainRequest r;
    r.model_dir = tiny_sd();
    r.records = kto::read_dataset_folder((root / "data").string());
    r.out_dir = (root / "runs" / run).string();
    r.options.steps = steps;
    r.options.batch_size = 2;
    r.options.learning_rate = 1e-4;
    r.options.warmup_steps = 0;
    r.options.checkpoint_every = 1;
    r.options.keep_last = 2;
    return r;
}

inline int count_lines(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) ++n;
    return n;
}

}  // namespace kto::test
