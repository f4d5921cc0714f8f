#pragma once
// transformers' CLIPTextModel (the SD text encoder): token + position embeddings, pre-LN
// transformer layers with a causal mask, final layer norm, pooled EOS state. Submodule names
// equal the state-dict keys ("text_model.encoder.layers.0.self_attn.q_proj.weight", ...), so
// loading is a name-for-name copy. A module instance is not thread-safe; use one per thread.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/io/model_folder.h"

namespace kto {

struct CLIPTextConfig {
    int64_t vocab_size = 49408;
    int64_t hidden_size = 768;
    int64_t intermediate_size = 3072;
    int64_t num_hidden_layers = 12;
    int64_t num_attention_heads = 12;
    int64_t max_position_embeddings = 77;
    std::string hidden_act = "quick_gelu";  // quick_gelu | gelu | gelu_new | gelu_pytorch_tanh
    double layer_norm_eps = 1e-5;
    int64_t bos_token_id = 0;
    int64_t eos_token_id = 2;  // 2 selects the legacy pooling rule (argmax of the ids)
    int64_t pad_token_id = 1;

    // Reads text_encoder/config.json; missing required fields and unsupported values are
    // errors naming the file and field (projection_dim and dropout fields are ignored).
    static CLIPTextConfig from_json(const nlohmann::json& json,
                                    const std::string& source = "config.json");
    static CLIPTextConfig from_config(const JsonConfig& config);
};

struct CLIPTextOutput {
    torch::Tensor last_hidden_state;  // [B, S, H], after final_layer_norm
    torch::Tensor pooler_output;      // [B, H]: last_hidden_state at the EOS position
    std::vector<torch::Tensor>
        hidden_states;  // when requested: embeddings, then each layer's output
};

class CLIPAttentionImpl : public torch::nn::Module {
public:
    explicit CLIPAttentionImpl(const CLIPTextConfig& c);
    // x [B,S,H]; mask: additive [B or 1, 1, S, S] float mask.
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

    torch::nn::Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};

private:
    int64_t heads_, head_dim_;
    double scale_;
};
TORCH_MODULE(CLIPAttention);

class CLIPMLPImpl : public torch::nn::Module {
public:
    explicit CLIPMLPImpl(const CLIPTextConfig& c);
    torch::Tensor forward(const torch::Tensor& x);

    torch::nn::Linear fc1{nullptr}, fc2{nullptr};

private:
    std::string act_;
};
TORCH_MODULE(CLIPMLP);

class CLIPEncoderLayerImpl : public torch::nn::Module {
public:
    explicit CLIPEncoderLayerImpl(const CLIPTextConfig& c);
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

    CLIPAttention self_attn{nullptr};
    torch::nn::LayerNorm layer_norm1{nullptr};
    CLIPMLP mlp{nullptr};
    torch::nn::LayerNorm layer_norm2{nullptr};
};
TORCH_MODULE(CLIPEncoderLayer);

class CLIPTextEmbeddingsImpl : public torch::nn::Module {
public:
    explicit CLIPTextEmbeddingsImpl(const CLIPTextConfig& c);
    torch::Tensor forward(const torch::Tensor& input_ids);

    torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
};
TORCH_MODULE(CLIPTextEmbeddings);

class CLIPEncoderImpl : public torch::nn::Module {
public:
    explicit CLIPEncoderImpl(const CLIPTextConfig& c);
    torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(CLIPEncoder);

class CLIPTextTransformerImpl : public torch::nn::Module {
public:
    explicit CLIPTextTransformerImpl(const CLIPTextConfig& c);
    CLIPTextOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                           bool output_hidden_states);

    CLIPTextEmbeddings embeddings{nullptr};
    CLIPEncoder encoder{nullptr};
    torch::nn::LayerNorm final_layer_norm{nullptr};

private:
    CLIPTextConfig config_;
};
TORCH_MODULE(CLIPTextTransformer);

class CLIPTextModelImpl : public torch::nn::Module {
public:
    explicit CLIPTextModelImpl(const CLIPTextConfig& config);

    // input_ids I64 [B, S<=max_position_embeddings]. attention_mask (optional, [B,S], 1 = keep)
    // additionally masks padding keys; StableDiffusionPipeline does not pass it.
    CLIPTextOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                           bool output_hidden_states = false);

    // The UNet's text conditioning: last_hidden_state for clip_skip 0, else final_layer_norm of
    // hidden_states[-(clip_skip + 1)] (diffusers' clip_skip semantics; 1 = penultimate layer).
    torch::Tensor encode(const torch::Tensor& input_ids, int clip_skip = 0);

    const CLIPTextConfig& config() const { return config_; }

    CLIPTextTransformer text_model{nullptr};

private:
    CLIPTextConfig config_;
};
TORCH_MODULE(CLIPTextModel);

// Loads a text encoder from a model folder (with model_index.json: its text_encoder/) or from a
// text_encoder component folder: config.json + model.safetensors (strictly; a stored
// "text_model.embeddings.position_ids" is ignored), moved to `device`/`dtype`, in eval mode.
CLIPTextModel load_text_encoder(const std::string& folder, torch::Device device = torch::kCPU,
                                torch::ScalarType dtype = torch::kFloat32);

}  // namespace kto
