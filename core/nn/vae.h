#pragma once
// AutoencoderKL as in diffusers 0.25 (models/autoencoders/autoencoder_kl.py, vae.py): Encoder with
// DownEncoderBlock2D blocks and an attention mid block, the diagonal Gaussian latent distribution,
// Decoder with UpDecoderBlock2D blocks. Submodule names equal the diffusers state-dict keys.
// Thread-safety: one forward at a time per model instance.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/nn/layers.h"

namespace kto {

struct VAEConfig {
    int64_t in_channels = 3;
    int64_t out_channels = 3;
    int64_t latent_channels = 4;
    std::vector<int64_t> block_out_channels;
    int64_t layers_per_block = 1;
    int64_t norm_num_groups = 32;
    int64_t sample_size = 512;
    double scaling_factor = 0.18215;
    bool force_upcast = true;
    bool use_quant_conv = true;
    bool use_post_quant_conv = true;
    bool mid_block_add_attention = true;
    nlohmann::json raw;

    // Reads a diffusers AutoencoderKL config; unsupported values throw kto::Error naming the field.
    static VAEConfig from_json(const nlohmann::json& j);
};

// The latent distribution the encoder predicts (unscaled latent space).
struct LatentDist {
    torch::Tensor mean;
    torch::Tensor logvar;  // clamped to [-30, 20]
    torch::Tensor std() const { return torch::exp(0.5 * logvar); }
    // mean + std * N(0, 1) drawn from `generator` (default generator when undefined).
    torch::Tensor sample(c10::optional<at::Generator> generator = c10::nullopt) const;
};

// UNetMidBlock2D without time embedding: resnets.0, attentions.0, resnets.1.
class VAEMidBlockImpl : public torch::nn::Module {
public:
    VAEMidBlockImpl(int64_t channels, int64_t groups, bool add_attention, const ModuleOptions& o);
    torch::Tensor forward(torch::Tensor h);

    std::vector<ResnetBlock2D> resnets;
    SpatialAttention attention{nullptr};
};
TORCH_MODULE(VAEMidBlock);

// DownEncoderBlock2D (resnets + optional downsampler) or UpDecoderBlock2D (resnets + optional upsampler).
class VAEBlockImpl : public torch::nn::Module {
public:
    VAEBlockImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers, int64_t groups,
                 bool add_downsample, bool add_upsample, const ModuleOptions& o);
    torch::Tensor forward(torch::Tensor h);

    std::vector<ResnetBlock2D> resnets;
    Downsample2D downsampler{nullptr};
    Upsample2D upsampler{nullptr};
};
TORCH_MODULE(VAEBlock);

class VAEEncoderImpl : public torch::nn::Module {
public:
    VAEEncoderImpl(const VAEConfig& c, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x, ActivationTrace* trace = nullptr);

    Conv2d conv_in{nullptr};
    std::vector<VAEBlock> down_blocks;
    VAEMidBlock mid_block{nullptr};
    GroupNorm conv_norm_out{nullptr};
    Conv2d conv_out{nullptr};
};
TORCH_MODULE(VAEEncoder);

class VAEDecoderImpl : public torch::nn::Module {
public:
    VAEDecoderImpl(const VAEConfig& c, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& z, ActivationTrace* trace = nullptr);

    Conv2d conv_in{nullptr};
    VAEMidBlock mid_block{nullptr};
    std::vector<VAEBlock> up_blocks;
    GroupNorm conv_norm_out{nullptr};
    Conv2d conv_out{nullptr};
};
TORCH_MODULE(VAEDecoder);

class AutoencoderKLImpl : public torch::nn::Module {
public:
    explicit AutoencoderKLImpl(const VAEConfig& config, const ModuleOptions& o = {});

    // x [B,in_channels,H,W] in [-1,1] -> latent distribution [B,latent,H/f,W/f] (unscaled).
    LatentDist encode(const torch::Tensor& x, ActivationTrace* trace = nullptr);
    // z [B,latent,h,w] unscaled (divide diffusion latents by scaling_factor first) -> image in ~[-1,1].
    torch::Tensor decode(const torch::Tensor& z, ActivationTrace* trace = nullptr);

    double scaling_factor() const { return config_.scaling_factor; }
    const VAEConfig& config() const { return config_; }

    VAEEncoder encoder{nullptr};
    VAEDecoder decoder{nullptr};
    Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};

private:
    VAEConfig config_;
};
TORCH_MODULE(AutoencoderKL);

// Renames pre-0.14 diffusers VAE attention keys (query/key/value/proj_attn -> to_q/to_k/to_v/to_out.0)
// in place and reshapes 1x1-conv attention weights [C,C,1,1] to linear [C,C].
void convert_legacy_vae_attention_names(std::map<std::string, torch::Tensor>& tensors);

// Loads `component_dir` (config.json + diffusion_pytorch_model[.fp16].safetensors) strictly.
AutoencoderKL load_vae(const std::string& component_dir, torch::Device device = torch::kCPU,
                       torch::ScalarType dtype = torch::kFloat32);

}  // namespace kto
