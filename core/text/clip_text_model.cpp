#include "core/text/clip_text_model.h"

#include <torch/version.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "core/common/batched_matmul.h"
#include "core/common/error.h"

namespace fs = std::filesystem;

namespace kto {
namespace {

torch::nn::LayerNorm layer_norm(const CLIPTextConfig& c) {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps));
}

// Additive float mask [B or 1, 1, S, S]: the causal mask plus, when given, the padding mask,
// both with the dtype's lowest value, as transformers builds them.
torch::Tensor build_mask(int64_t seq, const torch::Tensor& attention_mask,
                         const torch::TensorOptions& opts) {
    const double lowest = opts.dtype() == torch::kFloat16    ? -65504.0
                          : opts.dtype() == torch::kBFloat16 ? -3.3895313892515355e38
                          : opts.dtype() == torch::kFloat64
                              ? std::numeric_limits<double>::lowest()
                              : double(std::numeric_limits<float>::lowest());
    auto mask = torch::full({seq, seq}, lowest, opts).triu(1).view({1, 1, seq, seq});
    if (attention_mask.defined()) {
        const auto keep = attention_mask.to(opts.device())
                              .to(torch::kBool)
                              .view({attention_mask.size(0), 1, 1, seq});
        mask = mask + torch::zeros(keep.sizes(), opts).masked_fill_(keep.logical_not(), lowest);
    }
    return mask;
}

}  // namespace

CLIPTextConfig CLIPTextConfig::from_config(const JsonConfig& j) {
    CLIPTextConfig c;
    if (j.has("model_type")) {
        const auto type = j.get<std::string>("model_type");
        if (type != "clip_text_model" && type != "clip")
            j.fail("model_type",
                   "is '" + type + "', expected 'clip_text_model' (a CLIP text encoder)");
    }
    c.vocab_size = j.get<int64_t>("vocab_size");
    c.hidden_size = j.get<int64_t>("hidden_size");
    c.intermediate_size = j.get<int64_t>("intermediate_size");
    c.num_hidden_layers = j.get<int64_t>("num_hidden_layers");
    c.num_attention_heads = j.get<int64_t>("num_attention_heads");
    c.max_position_embeddings = j.get<int64_t>("max_position_embeddings");
    c.hidden_act = j.get_or<std::string>("hidden_act", "quick_gelu");
    c.layer_norm_eps = j.get_or<double>("layer_norm_eps", 1e-5);
    c.bos_token_id = j.get_or<int64_t>("bos_token_id", 0);
    c.eos_token_id = j.get_or<int64_t>("eos_token_id", 2);
    c.pad_token_id = j.get_or<int64_t>("pad_token_id", 1);
    for (auto [key, v] : {std::pair{"vocab_size", c.vocab_size},
                          {"hidden_size", c.hidden_size},
                          {"intermediate_size", c.intermediate_size},
                          {"num_hidden_layers", c.num_hidden_layers},
                          {"num_attention_heads", c.num_attention_heads},
                          {"max_position_embeddings", c.max_position_embeddings}})
        if (v <= 0) j.fail(key, "must be positive, got " + std::to_string(v));
    if (c.hidden_size % c.num_attention_heads != 0)
        j.fail("num_attention_heads", "(" + std::to_string(c.num_attention_heads) +
                                          ") must divide hidden_size (" +
                                          std::to_string(c.hidden_size) + ")");
    if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu" && c.hidden_act != "gelu_new" &&
        c.hidden_act != "gelu_pytorch_tanh")
        j.fail("hidden_act",
               "'" + c.hidden_act +
                   "' is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)");
    if (!(c.layer_norm_eps > 0)) j.fail("layer_norm_eps", "must be positive");
    return c;
}

CLIPTextConfig CLIPTextConfig::from_json(const nlohmann::json& json, const std::string& source) {
    return from_config(JsonConfig(json, source));
}

// ---- layers ----------------------------------------------------------------------------------

CLIPAttentionImpl::CLIPAttentionImpl(const CLIPTextConfig& c)
    : heads_(c.num_attention_heads),
      head_dim_(c.hidden_size / c.num_attention_heads),
      scale_(1.0 / std::sqrt(double(c.hidden_size / c.num_attention_heads))) {
    k_proj = register_module("k_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
    v_proj = register_module("v_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
    q_proj = register_module("q_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
    out_proj = register_module("out_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
}

torch::Tensor CLIPAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
    const int64_t B = x.size(0), S = x.size(1), H = x.size(2);
    auto heads = [&](const torch::Tensor& t) {
        return t.view({B, S, heads_, head_dim_}).transpose(1, 2);
    };
#if TORCH_VERSION_MAJOR >= 2
    auto out = at::scaled_dot_product_attention(heads(q_proj(x)), heads(k_proj(x)),
                                                heads(v_proj(x)), mask);
#else
    // transformers scales the query before the product.
    auto q = heads(q_proj(x) * scale_);
    auto scores = batched_matmul(q, heads(k_proj(x)).transpose(-1, -2)) + mask;
    auto out = batched_matmul(torch::softmax(scores, -1), heads(v_proj(x)));
#endif
    return out_proj(out.transpose(1, 2).reshape({B, S, H}));
}

CLIPMLPImpl::CLIPMLPImpl(const CLIPTextConfig& c) : act_(c.hidden_act) {
    fc1 = register_module("fc1", torch::nn::Linear(c.hidden_size, c.intermediate_size));
    fc2 = register_module("fc2", torch::nn::Linear(c.intermediate_size, c.hidden_size));
}

torch::Tensor CLIPMLPImpl::forward(const torch::Tensor& x) {
    auto h = fc1(x);
    if (act_ == "quick_gelu")
        h = h * torch::sigmoid(1.702 * h);
    else if (act_ == "gelu")
        h = torch::gelu(h);
    else
        h = torch::gelu(h, "tanh");
    return fc2(h);
}

CLIPEncoderLayerImpl::CLIPEncoderLayerImpl(const CLIPTextConfig& c) {
    self_attn = register_module("self_attn", CLIPAttention(c));
    layer_norm1 = register_module("layer_norm1", layer_norm(c));
    mlp = register_module("mlp", CLIPMLP(c));
    layer_norm2 = register_module("layer_norm2", layer_norm(c));
}

torch::Tensor CLIPEncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
    auto h = x + self_attn(layer_norm1(x), mask);
    return h + mlp(layer_norm2(h));
}

CLIPTextEmbeddingsImpl::CLIPTextEmbeddingsImpl(const CLIPTextConfig& c) {
    token_embedding =
        register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.hidden_size));
    position_embedding = register_module(
        "position_embedding", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
}

torch::Tensor CLIPTextEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
    const auto positions =
        torch::arange(input_ids.size(1), input_ids.options().dtype(torch::kInt64));
    return token_embedding(input_ids) + position_embedding(positions).unsqueeze(0);
}

CLIPEncoderImpl::CLIPEncoderImpl(const CLIPTextConfig& c) {
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(CLIPEncoderLayer(c));
}

CLIPTextTransformerImpl::CLIPTextTransformerImpl(const CLIPTextConfig& c) : config_(c) {
    embeddings = register_module("embeddings", CLIPTextEmbeddings(c));
    encoder = register_module("encoder", CLIPEncoder(c));
    final_layer_norm = register_module("final_layer_norm", layer_norm(c));
}

CLIPTextOutput CLIPTextTransformerImpl::forward(const torch::Tensor& input_ids,
                                                const torch::Tensor& attention_mask,
                                                bool output_hidden_states) {
    if (input_ids.dim() != 2)
        throw Error("text encoder: input_ids must be [batch, tokens], got " +
                    shape_string(input_ids.sizes().vec()));
    const int64_t B = input_ids.size(0), S = input_ids.size(1);
    if (S > config_.max_position_embeddings)
        throw Error("text encoder: " + std::to_string(S) +
                    " tokens exceed max_position_embeddings " +
                    std::to_string(config_.max_position_embeddings));
    if (attention_mask.defined() && attention_mask.sizes() != input_ids.sizes())
        throw Error("text encoder: attention_mask " + shape_string(attention_mask.sizes().vec()) +
                    " does not match input_ids " + shape_string(input_ids.sizes().vec()));
    auto ids = input_ids.to(final_layer_norm->weight.device(), torch::kInt64);
    if (ids.numel() &&
        (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= config_.vocab_size))
        throw Error("text encoder: token id out of range [0, " +
                    std::to_string(config_.vocab_size) + ")");

    CLIPTextOutput out;
    auto h = embeddings(ids);
    const auto mask = build_mask(S, attention_mask, h.options());
    if (output_hidden_states) out.hidden_states.push_back(h);
    for (const auto& layer : *encoder->layers) {
        h = layer->as<CLIPEncoderLayer>()->forward(h, mask);
        if (output_hidden_states) out.hidden_states.push_back(h);
    }
    out.last_hidden_state = final_layer_norm(h);
    // Legacy configs (eos_token_id 2) pool at the highest id, which is EOS in CLIP vocabularies.
    const auto eos_pos = config_.eos_token_id == 2
                             ? ids.argmax(-1)
                             : (ids == config_.eos_token_id).to(torch::kInt32).argmax(-1);
    out.pooler_output = out.last_hidden_state.index({torch::arange(B, ids.options()), eos_pos});
    return out;
}

CLIPTextModelImpl::CLIPTextModelImpl(const CLIPTextConfig& config) : config_(config) {
    text_model = register_module("text_model", CLIPTextTransformer(config));
}

CLIPTextOutput CLIPTextModelImpl::forward(const torch::Tensor& input_ids,
                                          const torch::Tensor& attention_mask,
                                          bool output_hidden_states) {
    return text_model->forward(input_ids, attention_mask, output_hidden_states);
}

torch::Tensor CLIPTextModelImpl::encode(const torch::Tensor& input_ids, int clip_skip) {
    if (clip_skip <= 0) return forward(input_ids).last_hidden_state;
    if (clip_skip >= config_.num_hidden_layers)
        throw Error("clip_skip " + std::to_string(clip_skip) + " must be below the " +
                    std::to_string(config_.num_hidden_layers) + " text encoder layers");
    auto out = forward(input_ids, {}, true);
    return text_model->final_layer_norm(
        out.hidden_states[out.hidden_states.size() - 1 - size_t(clip_skip)]);
}

CLIPTextModel load_text_encoder(const std::string& folder, torch::Device device,
                                torch::ScalarType dtype) {
    std::error_code ec;
    const std::string dir = fs::exists(fs::path(folder) / "model_index.json", ec)
                                ? component_dir(folder, "text_encoder")
                                : folder;
    const JsonConfig cfg = read_component_config(dir);
    CLIPTextModel model(CLIPTextConfig::from_config(cfg));
    const std::string weights = find_weights_file(dir);
    StateDictLoadOptions opts;
    opts.ignore.insert("text_model.embeddings.position_ids");
    load_state_dict_strict(*model, load_component_weights(dir), weights, opts);
    model->to(device, dtype);
    model->eval();
    return model;
}

}  // namespace kto
