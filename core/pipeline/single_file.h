#pragma once
// Single-file Stable Diffusion checkpoints in the original LDM/CompVis key layout
// (model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.* for SD 1.x /
// cond_stage_model.model.* OpenCLIP for SD 2.x), converted to diffusers names as diffusers'
// convert_from_ckpt.py does. The architecture is inferred from the tensors: cross-attention
// context 768 -> SD 1.x, 1024 -> SD 2.x (OpenCLIP text tower, linear projections, 64-d heads;
// v-prediction at 768 px unless the file name says "base").
#include <nlohmann/json.hpp>

#include <string>

#include "core/io/safetensors.h"

namespace kto {

struct ModelBundle;
struct ModelBundleOptions;

// The key prefix of the UNet's tensors in an LDM checkpoint.
inline constexpr const char* kLdmUNetPrefix = "model.diffusion_model.";

struct ConvertedCheckpoint {
    TensorMap unet, vae, text_encoder;  // diffusers names
    nlohmann::json unet_config, vae_config, text_config, scheduler_config;
    std::string family;                 // "sd1" or "sd2"
};

// Renames LDM keys to diffusers keys (reshaping VAE attention 1x1 convs, splitting OpenCLIP
// in_proj). Throws kto::Error naming `source` when the file is not an SD 1.x/2.x checkpoint.
// With check_family false (configs supplied by the caller) other context widths are accepted.
ConvertedCheckpoint convert_ldm_checkpoint(const TensorMap& ldm, const std::string& source, bool check_family = true);

// diffusers UNet/VAE/CLIP (SD 1.x layout) keys -> LDM keys: the inverse map, for tests and export.
TensorMap to_ldm_checkpoint(const TensorMap& unet, const TensorMap& vae, const TensorMap& text_encoder);

// Loads a single-file checkpoint into a bundle. The CLIP tokenizer is not in the file: it is read
// from options.tokenizer_dir, else a tokenizer/ folder next to the file. When options.config_dir
// names a diffusers folder, its unet/vae/text_encoder/scheduler configs are used instead of the
// inferred ones (and its tokenizer/ when no tokenizer_dir is given).
ModelBundle load_single_file_checkpoint(const std::string& path, const ModelBundleOptions& options);

}  // namespace kto
