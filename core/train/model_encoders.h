#pragma once
// The frozen encoders of a diffusers model folder as the latent cache needs them: the VAE (vae/)
// and the CLIP tokenizer + text encoder (tokenizer/, text_encoder/), each loaded on first use, so a
// run whose data is all cached never loads them. Identities hash the weights and configs.
// Used from one thread.
#include <torch/torch.h>

#include <memory>
#include <string>

#include "core/train/latent_cache.h"

namespace kto {

class ModelEncoders {
public:
    ModelEncoders(std::string model_dir, torch::Device device);
    ~ModelEncoders();
    ModelEncoders(const ModelEncoders&) = delete;
    ModelEncoders& operator=(const ModelEncoders&) = delete;

    // Encoders bound to this object (valid while it lives).
    const LatentEncoders& encoders() const { return encoders_; }
    // vae/config.json scaling_factor.
    double scaling_factor() const { return scaling_factor_; }
    // Pixels per latent cell: 2^(len(vae block_out_channels) - 1) (8 for SD 1.x).
    int vae_scale_factor() const { return vae_scale_factor_; }
    // Frees the loaded models (they are reloaded if an encoder is called again).
    void release();

private:
    struct Loaded;
    std::string model_dir_;
    torch::Device device_;
    double scaling_factor_ = 0.18215;
    int vae_scale_factor_ = 8;
    std::unique_ptr<Loaded> loaded_;
    LatentEncoders encoders_;
};

}  // namespace kto
