#pragma once
// UNet2DConditionModel as in diffusers 0.25 (models/unets/unet_2d_condition.py), for Stable
// Diffusion 1.x / 2.x configs: CrossAttnDownBlock2D / DownBlock2D, UNetMidBlock2DCrossAttn,
// CrossAttnUpBlock2D / UpBlock2D. Submodule names equal the diffusers state-dict keys.
// Thread-safety: one forward at a time per model instance.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/nn/layers.h"

namespace kto {

struct UNetConfig {
    int64_t in_channels = 4;
    int64_t out_channels = 4;
    int64_t sample_size = 64;
    bool center_input_sample = false;
    bool flip_sin_to_cos = true;
    double freq_shift = 0;
    std::vector<std::string> down_block_types;
    std::string mid_block_type = "UNetMidBlock2DCrossAttn";
    std::vector<std::string> up_block_types;
    std::vector<int64_t> block_out_channels;
    std::vector<int64_t> layers_per_block;           // per down block
    std::vector<int64_t> transformer_layers_per_block;  // per down block
    std::vector<int64_t> num_attention_heads;        // per down block (diffusers: attention_head_dim)
    std::vector<int64_t> cross_attention_dim;        // per down block
    std::vector<bool> only_cross_attention;          // per down block
    int64_t downsample_padding = 1;
    double mid_block_scale_factor = 1;
    int64_t norm_num_groups = 32;
    double norm_eps = 1e-5;
    bool use_linear_projection = false;
    bool upcast_attention = false;
    int64_t conv_in_kernel = 3;
    int64_t conv_out_kernel = 3;
    int64_t time_embed_dim = 0;  // block_out_channels[0] * 4 unless time_embedding_dim is set

    // The config.json as read; save_unet writes it back (plus _class_name, _diffusers_version).
    nlohmann::json raw;

    // Reads a diffusers UNet2DConditionModel config. Missing optional fields take diffusers'
    // defaults; unsupported values (SDXL addition embeddings, class embeddings, other block types,
    // ...) throw kto::Error naming the field and the value.
    static UNetConfig from_json(const nlohmann::json& j);
};

// Down block: CrossAttnDownBlock2D (with attentions) or DownBlock2D.
class UNetDownBlockImpl : public torch::nn::Module {
public:
    UNetDownBlockImpl(const UNetConfig& c, size_t index, int64_t in_channels, int64_t out_channels,
                      bool add_downsample, const ModuleOptions& o);
    // Returns the output and appends every skip state to `skips`.
    torch::Tensor forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context,
                          std::vector<torch::Tensor>& skips, ActivationTrace* trace,
                          const std::string& prefix);

    std::vector<ResnetBlock2D> resnets;
    std::vector<Transformer2DModel> attentions;  // empty for DownBlock2D
    Downsample2D downsampler{nullptr};
    bool checkpointing = false;
};
TORCH_MODULE(UNetDownBlock);

class UNetMidBlockImpl : public torch::nn::Module {
public:
    UNetMidBlockImpl(const UNetConfig& c, const ModuleOptions& o);
    torch::Tensor forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context);

    std::vector<ResnetBlock2D> resnets;
    std::vector<Transformer2DModel> attentions;
    bool checkpointing = false;
};
TORCH_MODULE(UNetMidBlock);

// Up block: CrossAttnUpBlock2D or UpBlock2D; consumes skips from the back.
class UNetUpBlockImpl : public torch::nn::Module {
public:
    UNetUpBlockImpl(const UNetConfig& c, size_t index, int64_t in_channels, int64_t prev_out_channels,
                    int64_t out_channels, bool add_upsample, const ModuleOptions& o);
    torch::Tensor forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context,
                          std::vector<torch::Tensor>& skips,
                          c10::optional<std::vector<int64_t>> upsample_size);

    std::vector<ResnetBlock2D> resnets;
    std::vector<Transformer2DModel> attentions;  // empty for UpBlock2D
    Upsample2D upsampler{nullptr};
    bool checkpointing = false;
};
TORCH_MODULE(UNetUpBlock);

class UNet2DConditionModelImpl : public torch::nn::Module {
public:
    explicit UNet2DConditionModelImpl(const UNetConfig& config, const ModuleOptions& o = {});

    // sample [B,C,H,W]; timestep I64 or floating, shape [], [1] or [B]; context [B,77,D].
    // Returns the noise (or v) prediction [B,out_channels,H,W].
    torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                          const torch::Tensor& encoder_hidden_states);
    // As forward, and records named activations (conv_in, time_proj, down_blocks.N, ...).
    torch::Tensor forward_traced(const torch::Tensor& sample, const torch::Tensor& timestep,
                                 const torch::Tensor& encoder_hidden_states, ActivationTrace& trace);

    // Recompute each block in backward instead of keeping its activations (training memory).
    void set_gradient_checkpointing(bool on);
    bool gradient_checkpointing() const { return gradient_checkpointing_; }

    const UNetConfig& config() const { return config_; }

    // Attaches `probe` to every cross-attention layer (attn2 of each transformer block), so that
    // each forward appends their maps in block order (down, mid, up); nullptr detaches. Not with
    // gradient checkpointing (its recomputation would record the maps twice, without history).
    void set_attention_probe(AttentionProbe* probe);

    Conv2d conv_in{nullptr};
    Linear time_linear_1{nullptr}, time_linear_2{nullptr};
    std::vector<UNetDownBlock> down_blocks;
    UNetMidBlock mid_block{nullptr};
    std::vector<UNetUpBlock> up_blocks;
    GroupNorm conv_norm_out{nullptr};
    Conv2d conv_out{nullptr};

private:
    torch::Tensor run(const torch::Tensor& sample, const torch::Tensor& timestep,
                      const torch::Tensor& context, ActivationTrace* trace);

    UNetConfig config_;
    bool gradient_checkpointing_ = false;
    bool probing_ = false;
};
TORCH_MODULE(UNet2DConditionModel);

// diffusers get_timestep_embedding: sinusoidal [N, dim] for timesteps [N] (any numeric dtype).
torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                 double freq_shift);

// Loads `component_dir` (config.json + diffusion_pytorch_model[.fp16].safetensors) strictly: any
// missing, unexpected or wrong-shape tensor is an error listing them. Parameters in `dtype`.
UNet2DConditionModel load_unet(const std::string& component_dir, torch::Device device = torch::kCPU,
                               torch::ScalarType dtype = torch::kFloat32);

// Writes `dir`/config.json (config_json as read, plus _class_name/_diffusers_version) and
// `dir`/diffusion_pytorch_model.safetensors ({"format":"pt"}), each atomically, so that
// diffusers' UNet2DConditionModel.from_pretrained(dir) loads it. Tensors are written as held.
void save_unet(UNet2DConditionModel& model, const nlohmann::json& config_json, const std::string& dir);

}  // namespace kto
