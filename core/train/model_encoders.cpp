#include "core/train/model_encoders.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/nn/vae.h"
#include "core/text/clip_text_model.h"
#include "core/text/clip_tokenizer.h"
#include "core/common/sha256.h"

namespace fs = std::filesystem;

namespace kto {

struct ModelEncoders::Loaded {
    AutoencoderKL vae{nullptr};
    std::unique_ptr<CLIPTokenizer> tokenizer;
    CLIPTextModel text{nullptr};
};

namespace {

// Hash of every regular file of a tokenizer folder (vocab, merges, configs).
std::string folder_identity(const fs::path& dir) {
    if (!fs::is_directory(dir)) throw Error(dir.string() + ": folder not found");
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    Sha256 h;
    for (const auto& f : files) h.update(f.filename().string() + "\n" + sha256_file_hex(f.string()) + "\n");
    return h.hex_digest();
}

}  // namespace

ModelEncoders::ModelEncoders(std::string model_dir, torch::Device device)
    : model_dir_(std::move(model_dir)), device_(device), loaded_(std::make_unique<Loaded>()) {
    const fs::path root(model_dir_);
    const auto vae_cfg = root / "vae" / "config.json";
    std::ifstream in(vae_cfg);
    if (!in) throw Error(vae_cfg.string() + ": not found");
    nlohmann::json j;
    try {
        in >> j;
    } catch (const std::exception& e) {
        throw Error(vae_cfg.string() + ": malformed JSON (" + e.what() + ")");
    }
    if (j.contains("scaling_factor")) {
        if (!j["scaling_factor"].is_number()) throw Error(vae_cfg.string() + ": 'scaling_factor' is not a number");
        scaling_factor_ = j["scaling_factor"].get<double>();
    }
    if (!j.contains("block_out_channels") || !j["block_out_channels"].is_array() || j["block_out_channels"].empty())
        throw Error(vae_cfg.string() + ": missing 'block_out_channels'");
    vae_scale_factor_ = 1 << (static_cast<int>(j["block_out_channels"].size()) - 1);
    encoders_.vae_identity = "vae:" + component_identity((root / "vae").string());
    encoders_.text_identity = "clip:" + component_identity((root / "text_encoder").string()) + ":" +
                              folder_identity(root / "tokenizer");
    encoders_.encode_images = [this](const torch::Tensor& x) {
        if (!loaded_->vae) loaded_->vae = load_vae((fs::path(model_dir_) / "vae").string(), device_);
        // The VAE stays fp32 (KTO.md, "Training recipe").
        const auto d = loaded_->vae->encode(x.to(device_, torch::kFloat));
        return std::make_pair(d.mean, d.std());
    };
    encoders_.encode_text = [this](const std::vector<std::string>& captions) {
        if (!loaded_->tokenizer)
            loaded_->tokenizer = std::make_unique<CLIPTokenizer>(
                CLIPTokenizer::from_folder((fs::path(model_dir_) / "tokenizer").string()));
        if (!loaded_->text) loaded_->text = load_text_encoder((fs::path(model_dir_) / "text_encoder").string(), device_);
        // KTO.md: CLIP last hidden state, 77 tokens, no attention mask.
        const auto ids = loaded_->tokenizer->encode(captions).input_ids.to(device_);
        return loaded_->text->forward(ids).last_hidden_state;
    };
}

ModelEncoders::~ModelEncoders() = default;

void ModelEncoders::release() { loaded_ = std::make_unique<Loaded>(); }

}  // namespace kto
