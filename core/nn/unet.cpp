#include "core/nn/unet.h"

#include <cmath>

#include "core/common/error.h"
#include "core/nn/checkpoint.h"
#include "core/nn/config_fields.h"

namespace kto {

using namespace config_fields;

// ---- config -----------------------------------------------------------------------------------

UNetConfig UNetConfig::from_json(const nlohmann::json& j) {
    const std::string what = "UNet config";
    if (!j.is_object()) throw Error(what + ": expected a JSON object");
    const auto cls = get_string(j, "_class_name", "UNet2DConditionModel", what);
    if (cls != "UNet2DConditionModel")
        throw Error(what + ": unsupported '_class_name' = \"" + cls + "\" (expected UNet2DConditionModel)");

    // Architectures this implementation does not have: refuse rather than compute something else.
    require_null(j, "addition_embed_type", what, "SDXL-style added conditioning is not supported");
    require_null(j, "class_embed_type", what, "class-conditioned UNets are not supported");
    require_null(j, "num_class_embeds", what, "class-conditioned UNets are not supported");
    require_null(j, "encoder_hid_dim", what, "encoder_hid_proj is not supported");
    require_null(j, "encoder_hid_dim_type", what, "encoder_hid_proj is not supported");
    require_null(j, "time_cond_proj_dim", what, "LCM time conditioning is not supported");
    require_null(j, "time_embedding_act_fn", what);
    require_null(j, "timestep_post_act", what);
    require_null(j, "cross_attention_norm", what);
    require_null(j, "reverse_transformer_layers_per_block", what);
    require_one_of(j, "act_fn", {"silu", "swish"}, what);
    require_one_of(j, "time_embedding_type", {"positional"}, what);
    require_one_of(j, "resnet_time_scale_shift", {"default"}, what);
    require_one_of(j, "dual_cross_attention", {false}, what);
    require_one_of(j, "class_embeddings_concat", {false}, what);
    require_one_of(j, "resnet_skip_time_act", {false}, what);
    require_one_of(j, "resnet_out_scale_factor", {1, 1.0}, what);
    require_one_of(j, "attention_type", {"default"}, what);
    require_one_of(j, "mid_block_type", {"UNetMidBlock2DCrossAttn"}, what);

    UNetConfig c;
    c.raw = j;
    c.in_channels = get_int(j, "in_channels", 4, what);
    c.out_channels = get_int(j, "out_channels", 4, what);
    c.sample_size = get_int(j, "sample_size", 64, what);
    c.center_input_sample = get_bool(j, "center_input_sample", false, what);
    c.flip_sin_to_cos = get_bool(j, "flip_sin_to_cos", true, what);
    c.freq_shift = get_double(j, "freq_shift", 0, what);
    c.block_out_channels = int_list(require(j, "block_out_channels", what), "block_out_channels", what);
    c.down_block_types = string_list(require(j, "down_block_types", what), "down_block_types", what);
    c.up_block_types = string_list(require(j, "up_block_types", what), "up_block_types", what);
    const size_t n = c.down_block_types.size();
    if (c.block_out_channels.size() != n)
        throw Error(what + ": 'block_out_channels' has " + std::to_string(c.block_out_channels.size()) +
                    " entries but 'down_block_types' has " + std::to_string(n));
    if (c.up_block_types.size() != n)
        throw Error(what + ": 'up_block_types' has " + std::to_string(c.up_block_types.size()) +
                    " entries but 'down_block_types' has " + std::to_string(n));
    for (const auto& t : c.down_block_types)
        if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D")
            throw Error(what + ": unsupported down block type \"" + t + "\" in 'down_block_types'");
    for (const auto& t : c.up_block_types)
        if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D")
            throw Error(what + ": unsupported up block type \"" + t + "\" in 'up_block_types'");

    c.layers_per_block = per_block_ints(j, "layers_per_block", 2, n, what);
    c.transformer_layers_per_block = per_block_ints(j, "transformer_layers_per_block", 1, n, what);
    c.cross_attention_dim = per_block_ints(j, "cross_attention_dim", 1280, n, what);
    // diffusers naming quirk: attention_head_dim is the number of heads unless num_attention_heads is set.
    c.num_attention_heads = has(j, "num_attention_heads")
                                ? per_block_ints(j, "num_attention_heads", 8, n, what)
                                : per_block_ints(j, "attention_head_dim", 8, n, what);
    if (has(j, "only_cross_attention") && j.at("only_cross_attention").is_array()) {
        const auto& v = j.at("only_cross_attention");
        if (v.size() != n) throw Error(what + ": 'only_cross_attention' needs one entry per down block");
        for (const auto& e : v) {
            if (!e.is_boolean()) throw Error(what + ": 'only_cross_attention' must hold true/false values");
            c.only_cross_attention.push_back(e.get<bool>());
        }
    } else {
        c.only_cross_attention.assign(n, get_bool(j, "only_cross_attention", false, what));
    }
    c.downsample_padding = get_int(j, "downsample_padding", 1, what);
    c.mid_block_scale_factor = get_double(j, "mid_block_scale_factor", 1, what);
    c.norm_num_groups = get_int(j, "norm_num_groups", 32, what);
    c.norm_eps = get_double(j, "norm_eps", 1e-5, what);
    c.use_linear_projection = get_bool(j, "use_linear_projection", false, what);
    c.upcast_attention = get_bool(j, "upcast_attention", false, what);
    c.conv_in_kernel = get_int(j, "conv_in_kernel", 3, what);
    c.conv_out_kernel = get_int(j, "conv_out_kernel", 3, what);
    c.time_embed_dim = get_int(j, "time_embedding_dim", c.block_out_channels[0] * 4, what);

    if (c.conv_in_kernel % 2 == 0 || c.conv_in_kernel < 1)
        throw Error(what + ": 'conv_in_kernel' must be an odd positive integer");
    if (c.conv_out_kernel % 2 == 0 || c.conv_out_kernel < 1)
        throw Error(what + ": 'conv_out_kernel' must be an odd positive integer");
    if (c.norm_num_groups < 1) throw Error(what + ": 'norm_num_groups' must be positive");
    for (size_t i = 0; i < n; ++i) {
        const auto ch = c.block_out_channels[i];
        if (ch < 1 || ch % c.norm_num_groups != 0)
            throw Error(what + ": 'block_out_channels' entry " + std::to_string(ch) +
                        " is not a positive multiple of 'norm_num_groups' (" + std::to_string(c.norm_num_groups) + ")");
        if (c.num_attention_heads[i] < 1 || ch % c.num_attention_heads[i] != 0)
            throw Error(what + ": " + std::to_string(ch) + " channels cannot be split into " +
                        std::to_string(c.num_attention_heads[i]) + " attention heads ('attention_head_dim')");
        if (c.layers_per_block[i] < 1) throw Error(what + ": 'layers_per_block' must be positive");
        if (c.transformer_layers_per_block[i] < 1) throw Error(what + ": 'transformer_layers_per_block' must be positive");
        if (c.cross_attention_dim[i] < 1) throw Error(what + ": 'cross_attention_dim' must be positive");
    }
    if (c.in_channels < 1 || c.out_channels < 1) throw Error(what + ": 'in_channels'/'out_channels' must be positive");
    return c;
}

// ---- blocks -----------------------------------------------------------------------------------

namespace {

Transformer2DOptions transformer_options(const UNetConfig& c, size_t i, int64_t channels) {
    Transformer2DOptions t;
    t.heads = c.num_attention_heads[i];
    t.dim_head = channels / t.heads;
    t.in_channels = channels;
    t.num_layers = c.transformer_layers_per_block[i];
    t.cross_attention_dim = c.cross_attention_dim[i];
    t.norm_num_groups = c.norm_num_groups;
    t.use_linear_projection = c.use_linear_projection;
    t.only_cross_attention = c.only_cross_attention[i];
    t.upcast_attention = c.upcast_attention;
    return t;
}

// Runs a resnet, through the recompute-in-backward path when checkpointing.
torch::Tensor run_resnet(ResnetBlock2D& r, const torch::Tensor& h, const torch::Tensor& temb, bool ckpt) {
    if (!ckpt) return r->forward(h, temb);
    auto mod = r.ptr();
    return checkpoint_call(*r, [mod](const std::vector<torch::Tensor>& in) { return mod->forward(in[0], in[1]); },
                           {h, temb});
}

torch::Tensor run_transformer(Transformer2DModel& t, const torch::Tensor& h, const torch::Tensor& context,
                              bool ckpt, ActivationTrace* trace, const std::string& prefix) {
    if (!ckpt || trace) return t->forward(h, context, trace, prefix);
    auto mod = t.ptr();
    return checkpoint_call(*t, [mod](const std::vector<torch::Tensor>& in) { return mod->forward(in[0], in[1]); },
                           {h, context});
}

}  // namespace

UNetDownBlockImpl::UNetDownBlockImpl(const UNetConfig& c, size_t index, int64_t in, int64_t out,
                                     bool add_downsample, const ModuleOptions& o) {
    const bool cross = c.down_block_types[index] == "CrossAttnDownBlock2D";
    auto rl = register_module("resnets", torch::nn::ModuleList());
    torch::nn::ModuleList al{nullptr};
    if (cross) al = register_module("attentions", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.layers_per_block[index]; ++i) {
        resnets.push_back(ResnetBlock2D(i == 0 ? in : out, out, c.time_embed_dim, c.norm_num_groups, c.norm_eps, 1.0, o));
        rl->push_back(resnets.back());
        if (cross) {
            attentions.push_back(Transformer2DModel(transformer_options(c, index, out), o));
            al->push_back(attentions.back());
        }
    }
    if (add_downsample) {
        auto dl = register_module("downsamplers", torch::nn::ModuleList());
        downsampler = Downsample2D(out, out, c.downsample_padding, o);
        dl->push_back(downsampler);
    }
}

torch::Tensor UNetDownBlockImpl::forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context,
                                         std::vector<torch::Tensor>& skips, ActivationTrace* trace,
                                         const std::string& prefix) {
    for (size_t i = 0; i < resnets.size(); ++i) {
        h = run_resnet(resnets[i], h, temb, checkpointing);
        if (!attentions.empty()) {
            const auto name = prefix + ".attentions." + std::to_string(i);
            h = run_transformer(attentions[i], h, context, checkpointing, trace, name);
            if (trace) (*trace)[name] = h;
        }
        skips.push_back(h);
    }
    if (downsampler) {
        h = downsampler->forward(h);
        skips.push_back(h);
    }
    return h;
}

UNetMidBlockImpl::UNetMidBlockImpl(const UNetConfig& c, const ModuleOptions& o) {
    const size_t last = c.block_out_channels.size() - 1;
    const int64_t ch = c.block_out_channels[last];
    auto rl = register_module("resnets", torch::nn::ModuleList());
    auto al = register_module("attentions", torch::nn::ModuleList());
    auto resnet = [&] {
        return ResnetBlock2D(ch, ch, c.time_embed_dim, c.norm_num_groups, c.norm_eps, c.mid_block_scale_factor, o);
    };
    resnets.push_back(resnet());
    rl->push_back(resnets.back());
    attentions.push_back(Transformer2DModel(transformer_options(c, last, ch), o));
    al->push_back(attentions.back());
    resnets.push_back(resnet());
    rl->push_back(resnets.back());
}

torch::Tensor UNetMidBlockImpl::forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context) {
    h = run_resnet(resnets[0], h, temb, checkpointing);
    for (size_t i = 0; i < attentions.size(); ++i) {
        h = run_transformer(attentions[i], h, context, checkpointing, nullptr, {});
        h = run_resnet(resnets[i + 1], h, temb, checkpointing);
    }
    return h;
}

UNetUpBlockImpl::UNetUpBlockImpl(const UNetConfig& c, size_t index, int64_t in, int64_t prev_out, int64_t out,
                                 bool add_upsample, const ModuleOptions& o) {
    // `index` counts up blocks; per-block settings are read from the mirrored down block.
    const size_t down_index = c.block_out_channels.size() - 1 - index;
    const bool cross = c.up_block_types[index] == "CrossAttnUpBlock2D";
    const int64_t num_layers = c.layers_per_block[down_index] + 1;
    auto rl = register_module("resnets", torch::nn::ModuleList());
    torch::nn::ModuleList al{nullptr};
    if (cross) al = register_module("attentions", torch::nn::ModuleList());
    for (int64_t i = 0; i < num_layers; ++i) {
        const int64_t skip_ch = (i == num_layers - 1) ? in : out;
        const int64_t res_in = (i == 0) ? prev_out : out;
        resnets.push_back(ResnetBlock2D(res_in + skip_ch, out, c.time_embed_dim, c.norm_num_groups, c.norm_eps, 1.0, o));
        rl->push_back(resnets.back());
        if (cross) {
            attentions.push_back(Transformer2DModel(transformer_options(c, down_index, out), o));
            al->push_back(attentions.back());
        }
    }
    if (add_upsample) {
        auto ul = register_module("upsamplers", torch::nn::ModuleList());
        upsampler = Upsample2D(out, out, o);
        ul->push_back(upsampler);
    }
}

torch::Tensor UNetUpBlockImpl::forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context,
                                       std::vector<torch::Tensor>& skips,
                                       c10::optional<std::vector<int64_t>> upsample_size) {
    for (size_t i = 0; i < resnets.size(); ++i) {
        if (skips.empty()) throw Error("UNet: internal error, skip connections exhausted");
        h = torch::cat({h, skips.back()}, 1);
        skips.pop_back();
        h = run_resnet(resnets[i], h, temb, checkpointing);
        if (!attentions.empty()) h = run_transformer(attentions[i], h, context, checkpointing, nullptr, {});
    }
    if (upsampler) h = upsampler->forward(h, upsample_size);
    return h;
}

// ---- model ------------------------------------------------------------------------------------

torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                 double freq_shift) {
    const int64_t half = dim / 2;
    auto exponent = torch::arange(0, half, torch::TensorOptions().dtype(torch::kFloat32).device(timesteps.device())) *
                    (-std::log(10000.0));
    exponent = exponent / (static_cast<double>(half) - freq_shift);
    auto emb = timesteps.unsqueeze(1).to(torch::kFloat32) * torch::exp(exponent).unsqueeze(0);
    emb = flip_sin_to_cos ? torch::cat({torch::cos(emb), torch::sin(emb)}, -1)
                          : torch::cat({torch::sin(emb), torch::cos(emb)}, -1);
    if (dim % 2 == 1) emb = torch::nn::functional::pad(emb, torch::nn::functional::PadFuncOptions({0, 1, 0, 0}));
    return emb;
}

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& c, const ModuleOptions& o) : config_(c) {
    const auto& boc = c.block_out_channels;
    const size_t n = boc.size();
    conv_in = register_module("conv_in", Conv2d(c.in_channels, boc[0], c.conv_in_kernel, 1, (c.conv_in_kernel - 1) / 2, o));
    auto te = register_module("time_embedding", std::make_shared<torch::nn::Module>("TimestepEmbedding"));
    time_linear_1 = te->register_module("linear_1", Linear(boc[0], c.time_embed_dim, true, o));
    time_linear_2 = te->register_module("linear_2", Linear(c.time_embed_dim, c.time_embed_dim, true, o));

    auto dl = register_module("down_blocks", torch::nn::ModuleList());
    int64_t out_ch = boc[0];
    for (size_t i = 0; i < n; ++i) {
        const int64_t in_ch = out_ch;
        out_ch = boc[i];
        down_blocks.push_back(UNetDownBlock(c, i, in_ch, out_ch, i + 1 < n, o));
        dl->push_back(down_blocks.back());
    }
    mid_block = register_module("mid_block", UNetMidBlock(c, o));

    auto ul = register_module("up_blocks", torch::nn::ModuleList());
    std::vector<int64_t> rev(boc.rbegin(), boc.rend());
    out_ch = rev[0];
    for (size_t i = 0; i < n; ++i) {
        const int64_t prev_out = out_ch;
        out_ch = rev[i];
        const int64_t in_ch = rev[std::min(i + 1, n - 1)];
        up_blocks.push_back(UNetUpBlock(c, i, in_ch, prev_out, out_ch, i + 1 < n, o));
        ul->push_back(up_blocks.back());
    }
    conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, boc[0], c.norm_eps, o));
    conv_out = register_module("conv_out", Conv2d(boc[0], c.out_channels, c.conv_out_kernel, 1, (c.conv_out_kernel - 1) / 2, o));
}

void UNet2DConditionModelImpl::set_gradient_checkpointing(bool on) {
    if (on && probing_) throw Error("UNet: gradient checkpointing with an attention probe attached");
    gradient_checkpointing_ = on;
    for (auto& b : down_blocks) b->checkpointing = on;
    mid_block->checkpointing = on;
    for (auto& b : up_blocks) b->checkpointing = on;
}

void UNet2DConditionModelImpl::set_attention_probe(AttentionProbe* probe) {
    if (probe && gradient_checkpointing_) throw Error("UNet: an attention probe with gradient checkpointing on");
    probing_ = probe != nullptr;
    auto attach = [probe](std::vector<Transformer2DModel>& transformers) {
        for (auto& t : transformers)
            for (auto& block : t->blocks) block->attn2->probe = probe;
    };
    for (auto& b : down_blocks) attach(b->attentions);
    attach(mid_block->attentions);
    for (auto& b : up_blocks) attach(b->attentions);
}

torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                                                const torch::Tensor& encoder_hidden_states) {
    return run(sample, timestep, encoder_hidden_states, nullptr);
}

torch::Tensor UNet2DConditionModelImpl::forward_traced(const torch::Tensor& sample, const torch::Tensor& timestep,
                                                       const torch::Tensor& encoder_hidden_states,
                                                       ActivationTrace& trace) {
    return run(sample, timestep, encoder_hidden_states, &trace);
}

torch::Tensor UNet2DConditionModelImpl::run(const torch::Tensor& sample_in, const torch::Tensor& timestep,
                                            const torch::Tensor& context, ActivationTrace* trace) {
    const auto& c = config_;
    if (!sample_in.defined() || sample_in.dim() != 4 || sample_in.size(1) != c.in_channels) {
        std::ostringstream os;
        os << "UNet: 'sample' must be [B," << c.in_channels << ",H,W], got "
           << (sample_in.defined() ? sample_in.sizes() : torch::IntArrayRef{});
        throw Error(os.str());
    }
    const int64_t b = sample_in.size(0);
    if (!context.defined() || context.dim() != 3 || context.size(0) != b ||
        context.size(2) != c.cross_attention_dim[0]) {
        std::ostringstream os;
        os << "UNet: 'encoder_hidden_states' must be [" << b << ",N," << c.cross_attention_dim[0] << "], got "
           << (context.defined() ? context.sizes() : torch::IntArrayRef{});
        throw Error(os.str());
    }
    if (!timestep.defined() || timestep.dim() > 1 || (timestep.dim() == 1 && timestep.size(0) != 1 && timestep.size(0) != b)) {
        std::ostringstream os;
        os << "UNet: 'timestep' must have shape [], [1] or [" << b << "], got "
           << (timestep.defined() ? timestep.sizes() : torch::IntArrayRef{});
        throw Error(os.str());
    }
    auto t = timestep.reshape({-1}).to(sample_in.device()).expand({b});

    auto sample = c.center_input_sample ? sample_in * 2.0 - 1.0 : sample_in;
    auto t_emb = timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift).to(sample.scalar_type());
    auto emb = time_linear_2->forward(torch::silu(time_linear_1->forward(t_emb)));
    if (trace) {
        (*trace)["time_proj"] = t_emb;
        (*trace)["time_embedding"] = emb;
    }

    // Upsample to the skip's size when H or W is not a multiple of 2^(number of upsamplers).
    int64_t factor = 1;
    for (auto& ub : up_blocks)
        if (ub->upsampler) factor *= 2;
    const bool forward_upsample_size = sample.size(2) % factor != 0 || sample.size(3) % factor != 0;

    auto h = conv_in->forward(sample);
    if (trace) (*trace)["conv_in"] = h;
    std::vector<torch::Tensor> skips{h};
    for (size_t i = 0; i < down_blocks.size(); ++i) {
        const auto name = "down_blocks." + std::to_string(i);
        h = down_blocks[i]->forward(h, emb, context, skips, trace, name);
        if (trace) (*trace)[name] = h;
    }
    h = mid_block->forward(h, emb, context);
    if (trace) (*trace)["mid_block"] = h;
    for (size_t i = 0; i < up_blocks.size(); ++i) {
        c10::optional<std::vector<int64_t>> size;
        const size_t consumed = up_blocks[i]->resnets.size();
        if (forward_upsample_size && up_blocks[i]->upsampler && skips.size() > consumed) {
            const auto& next = skips[skips.size() - consumed - 1];
            size = std::vector<int64_t>{next.size(2), next.size(3)};
        }
        h = up_blocks[i]->forward(h, emb, context, skips, size);
        if (trace) (*trace)["up_blocks." + std::to_string(i)] = h;
    }
    h = conv_norm_out->forward(h);
    if (trace) (*trace)["conv_norm_out"] = h;
    return conv_out->forward(torch::silu(h));
}

}  // namespace kto
