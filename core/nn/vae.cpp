#include "core/nn/vae.h"

#include "core/common/error.h"
#include "core/nn/config_fields.h"

namespace kto {

using namespace config_fields;

VAEConfig VAEConfig::from_json(const nlohmann::json& j) {
    const std::string what = "VAE config";
    if (!j.is_object()) throw Error(what + ": expected a JSON object");
    const auto cls = get_string(j, "_class_name", "AutoencoderKL", what);
    if (cls != "AutoencoderKL") throw Error(what + ": unsupported '_class_name' = \"" + cls + "\" (expected AutoencoderKL)");
    require_one_of(j, "act_fn", {"silu", "swish"}, what);
    require_null(j, "shift_factor", what, "latent shift (SD3/Flux VAEs) is not supported");
    require_null(j, "latents_mean", what, "per-channel latent statistics (SDXL-refiner style) are not supported");
    require_null(j, "latents_std", what, "per-channel latent statistics are not supported");
    require_one_of(j, "norm_type", {"group"}, what);

    VAEConfig c;
    c.raw = j;
    c.in_channels = get_int(j, "in_channels", 3, what);
    c.out_channels = get_int(j, "out_channels", 3, what);
    c.latent_channels = get_int(j, "latent_channels", 4, what);
    c.block_out_channels = int_list(require(j, "block_out_channels", what), "block_out_channels", what);
    c.layers_per_block = get_int(j, "layers_per_block", 1, what);
    c.norm_num_groups = get_int(j, "norm_num_groups", 32, what);
    c.sample_size = get_int(j, "sample_size", 512, what);
    c.scaling_factor = get_double(j, "scaling_factor", 0.18215, what);
    c.force_upcast = get_bool(j, "force_upcast", true, what);
    c.use_quant_conv = get_bool(j, "use_quant_conv", true, what);
    c.use_post_quant_conv = get_bool(j, "use_post_quant_conv", true, what);
    c.mid_block_add_attention = get_bool(j, "mid_block_add_attention", true, what);
    const size_t n = c.block_out_channels.size();
    if (has(j, "down_block_types")) {
        auto types = string_list(j.at("down_block_types"), "down_block_types", what);
        if (types.size() != n) throw Error(what + ": 'down_block_types' needs one entry per 'block_out_channels' entry");
        for (const auto& t : types)
            if (t != "DownEncoderBlock2D") throw Error(what + ": unsupported down block type \"" + t + "\" in 'down_block_types'");
    }
    if (has(j, "up_block_types")) {
        auto types = string_list(j.at("up_block_types"), "up_block_types", what);
        if (types.size() != n) throw Error(what + ": 'up_block_types' needs one entry per 'block_out_channels' entry");
        for (const auto& t : types)
            if (t != "UpDecoderBlock2D") throw Error(what + ": unsupported up block type \"" + t + "\" in 'up_block_types'");
    }
    if (c.norm_num_groups < 1) throw Error(what + ": 'norm_num_groups' must be positive");
    for (auto ch : c.block_out_channels)
        if (ch < 1 || ch % c.norm_num_groups != 0)
            throw Error(what + ": 'block_out_channels' entry " + std::to_string(ch) +
                        " is not a positive multiple of 'norm_num_groups' (" + std::to_string(c.norm_num_groups) + ")");
    if (c.layers_per_block < 1) throw Error(what + ": 'layers_per_block' must be positive");
    if (c.in_channels < 1 || c.out_channels < 1 || c.latent_channels < 1)
        throw Error(what + ": channel counts must be positive");
    if (!(c.scaling_factor > 0)) throw Error(what + ": 'scaling_factor' must be positive");
    return c;
}

torch::Tensor LatentDist::sample(c10::optional<at::Generator> generator) const {
    auto noise = at::randn(mean.sizes(), generator, mean.options());
    return mean + std() * noise;
}

VAEMidBlockImpl::VAEMidBlockImpl(int64_t ch, int64_t groups, bool add_attention, const ModuleOptions& o) {
    auto rl = register_module("resnets", torch::nn::ModuleList());
    for (int i = 0; i < 2; ++i) {
        resnets.push_back(ResnetBlock2D(ch, ch, 0, groups, 1e-6, 1.0, o));
        rl->push_back(resnets.back());
    }
    if (add_attention) {
        auto al = register_module("attentions", torch::nn::ModuleList());
        attention = SpatialAttention(ch, 1, groups, 1e-6, 1.0, o);  // heads = ch / attention_head_dim(=ch)
        al->push_back(attention);
    }
}

torch::Tensor VAEMidBlockImpl::forward(torch::Tensor h) {
    h = resnets[0]->forward(h);
    if (attention) h = attention->forward(h);
    return resnets[1]->forward(h);
}

VAEBlockImpl::VAEBlockImpl(int64_t in, int64_t out, int64_t num_layers, int64_t groups, bool add_downsample,
                           bool add_upsample, const ModuleOptions& o) {
    auto rl = register_module("resnets", torch::nn::ModuleList());
    for (int64_t i = 0; i < num_layers; ++i) {
        resnets.push_back(ResnetBlock2D(i == 0 ? in : out, out, 0, groups, 1e-6, 1.0, o));
        rl->push_back(resnets.back());
    }
    if (add_downsample) {
        auto dl = register_module("downsamplers", torch::nn::ModuleList());
        downsampler = Downsample2D(out, out, 0, o);
        dl->push_back(downsampler);
    }
    if (add_upsample) {
        auto ul = register_module("upsamplers", torch::nn::ModuleList());
        upsampler = Upsample2D(out, out, o);
        ul->push_back(upsampler);
    }
}

torch::Tensor VAEBlockImpl::forward(torch::Tensor h) {
    for (auto& r : resnets) h = r->forward(h);
    if (downsampler) h = downsampler->forward(h);
    if (upsampler) h = upsampler->forward(h);
    return h;
}

VAEEncoderImpl::VAEEncoderImpl(const VAEConfig& c, const ModuleOptions& o) {
    const auto& boc = c.block_out_channels;
    const size_t n = boc.size();
    conv_in = register_module("conv_in", Conv2d(c.in_channels, boc[0], 3, 1, 1, o));
    auto dl = register_module("down_blocks", torch::nn::ModuleList());
    int64_t out = boc[0];
    for (size_t i = 0; i < n; ++i) {
        const int64_t in = out;
        out = boc[i];
        down_blocks.push_back(VAEBlock(in, out, c.layers_per_block, c.norm_num_groups, i + 1 < n, false, o));
        dl->push_back(down_blocks.back());
    }
    mid_block = register_module("mid_block", VAEMidBlock(boc[n - 1], c.norm_num_groups, c.mid_block_add_attention, o));
    conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, boc[n - 1], 1e-6, o));
    conv_out = register_module("conv_out", Conv2d(boc[n - 1], 2 * c.latent_channels, 3, 1, 1, o));
}

torch::Tensor VAEEncoderImpl::forward(const torch::Tensor& x, ActivationTrace* trace) {
    auto h = conv_in->forward(x);
    if (trace) (*trace)["encoder.conv_in"] = h;
    for (size_t i = 0; i < down_blocks.size(); ++i) {
        h = down_blocks[i]->forward(h);
        if (trace) (*trace)["encoder.down_blocks." + std::to_string(i)] = h;
    }
    h = mid_block->forward(h);
    if (trace) (*trace)["encoder.mid_block"] = h;
    h = conv_norm_out->forward(h);
    if (trace) (*trace)["encoder.conv_norm_out"] = h;
    return conv_out->forward(torch::silu(h));
}

VAEDecoderImpl::VAEDecoderImpl(const VAEConfig& c, const ModuleOptions& o) {
    const auto& boc = c.block_out_channels;
    const size_t n = boc.size();
    conv_in = register_module("conv_in", Conv2d(c.latent_channels, boc[n - 1], 3, 1, 1, o));
    mid_block = register_module("mid_block", VAEMidBlock(boc[n - 1], c.norm_num_groups, c.mid_block_add_attention, o));
    auto ul = register_module("up_blocks", torch::nn::ModuleList());
    std::vector<int64_t> rev(boc.rbegin(), boc.rend());
    int64_t out = rev[0];
    for (size_t i = 0; i < n; ++i) {
        const int64_t prev = out;
        out = rev[i];
        up_blocks.push_back(VAEBlock(prev, out, c.layers_per_block + 1, c.norm_num_groups, false, i + 1 < n, o));
        ul->push_back(up_blocks.back());
    }
    conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, boc[0], 1e-6, o));
    conv_out = register_module("conv_out", Conv2d(boc[0], c.out_channels, 3, 1, 1, o));
}

torch::Tensor VAEDecoderImpl::forward(const torch::Tensor& z, ActivationTrace* trace) {
    auto h = conv_in->forward(z);
    if (trace) (*trace)["decoder.conv_in"] = h;
    h = mid_block->forward(h);
    if (trace) (*trace)["decoder.mid_block"] = h;
    for (size_t i = 0; i < up_blocks.size(); ++i) {
        h = up_blocks[i]->forward(h);
        if (trace) (*trace)["decoder.up_blocks." + std::to_string(i)] = h;
    }
    h = conv_norm_out->forward(h);
    if (trace) (*trace)["decoder.conv_norm_out"] = h;
    return conv_out->forward(torch::silu(h));
}

AutoencoderKLImpl::AutoencoderKLImpl(const VAEConfig& c, const ModuleOptions& o) : config_(c) {
    encoder = register_module("encoder", VAEEncoder(c, o));
    decoder = register_module("decoder", VAEDecoder(c, o));
    if (c.use_quant_conv)
        quant_conv = register_module("quant_conv", Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1, 1, 0, o));
    if (c.use_post_quant_conv)
        post_quant_conv = register_module("post_quant_conv", Conv2d(c.latent_channels, c.latent_channels, 1, 1, 0, o));
}

LatentDist AutoencoderKLImpl::encode(const torch::Tensor& x, ActivationTrace* trace) {
    if (!x.defined() || x.dim() != 4 || x.size(1) != config_.in_channels) {
        std::ostringstream os;
        os << "VAE encode: image must be [B," << config_.in_channels << ",H,W], got "
           << (x.defined() ? x.sizes() : torch::IntArrayRef{});
        throw Error(os.str());
    }
    auto h = encoder->forward(x, trace);
    if (trace) (*trace)["encoder"] = h;
    if (quant_conv) {
        h = quant_conv->forward(h);
        if (trace) (*trace)["quant_conv"] = h;
    }
    auto parts = h.chunk(2, 1);
    return LatentDist{parts[0], torch::clamp(parts[1], -30.0, 20.0)};
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& z, ActivationTrace* trace) {
    if (!z.defined() || z.dim() != 4 || z.size(1) != config_.latent_channels) {
        std::ostringstream os;
        os << "VAE decode: latents must be [B," << config_.latent_channels << ",h,w], got "
           << (z.defined() ? z.sizes() : torch::IntArrayRef{});
        throw Error(os.str());
    }
    auto h = z;
    if (post_quant_conv) {
        h = post_quant_conv->forward(h);
        if (trace) (*trace)["post_quant_conv"] = h;
    }
    return decoder->forward(h, trace);
}

void convert_legacy_vae_attention_names(std::map<std::string, torch::Tensor>& tensors) {
    static const std::pair<const char*, const char*> renames[] = {
        {".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."}};
    std::map<std::string, torch::Tensor> out;
    for (auto& [name, t] : tensors) {
        std::string n = name;
        bool renamed = false;
        if (n.find("mid_block.attentions.") != std::string::npos) {
            for (const auto& [from, to] : renames) {
                auto pos = n.find(from);
                if (pos != std::string::npos) {
                    n.replace(pos, std::string(from).size(), to);
                    renamed = true;
                    break;
                }
            }
        }
        auto v = t;
        // Some converted checkpoints keep the attention projections as 1x1 convolutions.
        const bool is_proj = n.find("mid_block.attentions.") != std::string::npos &&
                             (n.find(".to_q.weight") != std::string::npos || n.find(".to_k.weight") != std::string::npos ||
                              n.find(".to_v.weight") != std::string::npos || n.find(".to_out.0.weight") != std::string::npos);
        if ((renamed || is_proj) && v.dim() == 4 && v.size(2) == 1 && v.size(3) == 1) v = v.flatten(1);
        out[n] = v;
    }
    tensors = std::move(out);
}

}  // namespace kto
