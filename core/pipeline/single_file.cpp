// LDM -> diffusers key conversion, after diffusers' pipelines/stable_diffusion/convert_from_ckpt.py
// (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint,
// convert_open_clip_checkpoint).
#include "core/pipeline/single_file.h"

#include <cctype>
#include <filesystem>
#include <set>

#include "core/common/error.h"
#include "core/io/model_folder.h"
#include "core/io/state_dict.h"
#include "core/pipeline/pipeline.h"

namespace kto {
namespace fs = std::filesystem;
namespace {

const std::string kUnet = kLdmUNetPrefix;
const std::string kVae = "first_stage_model.";
const std::string kClip = "cond_stage_model.transformer.";
const std::string kOpenClip = "cond_stage_model.model.";

bool starts(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// Splits "12.rest" into 12 and "rest"; returns false when s does not start with a number and a dot.
bool take_index(const std::string& s, int& index, std::string& rest) {
    size_t i = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == 0 || i >= s.size() || s[i] != '.') return false;
    index = std::stoi(s.substr(0, i));
    rest = s.substr(i + 1);
    return true;
}

std::string replace_prefix(const std::string& s, const std::vector<std::pair<std::string, std::string>>& map) {
    for (const auto& [from, to] : map)
        if (starts(s, from)) return to + s.substr(from.size());
    return s;
}

std::string unet_resnet(const std::string& rest) {
    return replace_prefix(rest, {{"in_layers.0.", "norm1."},
                                 {"in_layers.2.", "conv1."},
                                 {"emb_layers.1.", "time_emb_proj."},
                                 {"out_layers.0.", "norm2."},
                                 {"out_layers.3.", "conv2."},
                                 {"skip_connection.", "conv_shortcut."}});
}

struct UNetLayout {
    int layers_per_block = 2;
};

// One UNet key (without the model.diffusion_model. prefix) -> diffusers name; empty if unknown.
std::string unet_key(const std::string& k, const UNetLayout& l) {
    const int per = l.layers_per_block + 1;
    int i = 0, j = 0;
    std::string rest, r2;
    if (starts(k, "time_embed.0.")) return "time_embedding.linear_1." + k.substr(13);
    if (starts(k, "time_embed.2.")) return "time_embedding.linear_2." + k.substr(13);
    if (starts(k, "out.0.")) return "conv_norm_out." + k.substr(6);
    if (starts(k, "out.2.")) return "conv_out." + k.substr(6);
    if (starts(k, "input_blocks.") && take_index(k.substr(13), i, rest) && take_index(rest, j, r2)) {
        if (i == 0) return j == 0 ? "conv_in." + r2 : "";
        const int b = (i - 1) / per, layer = (i - 1) % per;
        if (layer == l.layers_per_block)
            return starts(r2, "op.") ? "down_blocks." + std::to_string(b) + ".downsamplers.0.conv." + r2.substr(3) : "";
        if (j == 0) return "down_blocks." + std::to_string(b) + ".resnets." + std::to_string(layer) + "." + unet_resnet(r2);
        if (j == 1) return "down_blocks." + std::to_string(b) + ".attentions." + std::to_string(layer) + "." + r2;
        return "";
    }
    if (starts(k, "middle_block.") && take_index(k.substr(13), i, rest)) {
        if (i == 0 || i == 2) return "mid_block.resnets." + std::to_string(i / 2) + "." + unet_resnet(rest);
        if (i == 1) return "mid_block.attentions.0." + rest;
        return "";
    }
    if (starts(k, "output_blocks.") && take_index(k.substr(14), i, rest) && take_index(rest, j, r2)) {
        const int b = i / per, layer = i % per;
        if (j == 0) return "up_blocks." + std::to_string(b) + ".resnets." + std::to_string(layer) + "." + unet_resnet(r2);
        if (starts(r2, "conv.")) return "up_blocks." + std::to_string(b) + ".upsamplers.0.conv." + r2.substr(5);
        if (j == 1) return "up_blocks." + std::to_string(b) + ".attentions." + std::to_string(layer) + "." + r2;
        return "";
    }
    return "";
}

std::string vae_resnet(const std::string& rest) { return replace_prefix(rest, {{"nin_shortcut.", "conv_shortcut."}}); }

// One VAE key (without first_stage_model.) -> diffusers name; empty if unknown. Sets `attn` for
// mid-block attention weights that need [C,C,1,1] -> [C,C].
std::string vae_key(const std::string& k, int levels, bool& attn) {
    attn = false;
    for (const std::string part : {"encoder.", "decoder."}) {
        if (!starts(k, part)) continue;
        const std::string s = k.substr(part.size());
        int i = 0, j = 0;
        std::string rest, r2;
        if (starts(s, "conv_in.") || starts(s, "conv_out.")) return k;
        if (starts(s, "norm_out.")) return part + "conv_norm_out." + s.substr(9);
        if (starts(s, "mid.block_1.")) return part + "mid_block.resnets.0." + vae_resnet(s.substr(12));
        if (starts(s, "mid.block_2.")) return part + "mid_block.resnets.1." + vae_resnet(s.substr(12));
        if (starts(s, "mid.attn_1.")) {
            attn = true;
            return part + "mid_block.attentions.0." +
                   replace_prefix(s.substr(11), {{"norm.", "group_norm."},
                                                 {"q.", "to_q."},
                                                 {"k.", "to_k."},
                                                 {"v.", "to_v."},
                                                 {"proj_out.", "to_out.0."}});
        }
        const bool enc = part == "encoder.";
        const std::string lvl = enc ? "down." : "up.";
        if (starts(s, lvl) && take_index(s.substr(lvl.size()), i, rest)) {
            const int b = enc ? i : levels - 1 - i;
            const std::string blk = part + (enc ? "down_blocks." : "up_blocks.") + std::to_string(b) + ".";
            if (starts(rest, "block.") && take_index(rest.substr(6), j, r2))
                return blk + "resnets." + std::to_string(j) + "." + vae_resnet(r2);
            if (starts(rest, "downsample.conv.")) return blk + "downsamplers.0.conv." + rest.substr(16);
            if (starts(rest, "upsample.conv.")) return blk + "upsamplers.0.conv." + rest.substr(14);
        }
        return "";
    }
    if (starts(k, "quant_conv.") || starts(k, "post_quant_conv.")) return k;
    return "";
}

int max_index(const TensorMap& t, const std::string& prefix) {
    int m = -1;
    for (const auto& [k, v] : t) {
        if (!starts(k, prefix)) continue;
        int i = 0;
        std::string rest;
        if (take_index(k.substr(prefix.size()), i, rest)) m = std::max(m, i);
    }
    return m;
}

const torch::Tensor& need(const TensorMap& t, const std::string& key, const std::string& source) {
    auto it = t.find(key);
    if (it == t.end()) throw Error(source + ": not a Stable Diffusion checkpoint (missing tensor '" + key + "')");
    return it->second;
}

}  // namespace

ConvertedCheckpoint convert_ldm_checkpoint(const TensorMap& ldm, const std::string& source, bool check_family) {
    ConvertedCheckpoint c;
    TensorMap u, v;
    for (const auto& [k, t] : ldm) {
        if (starts(k, kUnet)) u[k.substr(kUnet.size())] = t;
        if (starts(k, kVae)) v[k.substr(kVae.size())] = t;
    }
    if (u.empty()) throw Error(source + ": no 'model.diffusion_model.*' tensors: not an LDM Stable Diffusion checkpoint");
    if (v.empty()) throw Error(source + ": no 'first_stage_model.*' (VAE) tensors in the checkpoint");

    // --- UNet layout from the tensors
    UNetLayout lay;
    int first_op = -1;
    for (int i = 1; i <= max_index(u, "input_blocks."); ++i)
        if (u.count("input_blocks." + std::to_string(i) + ".0.op.weight")) {
            first_op = i;
            break;
        }
    if (first_op < 2) throw Error(source + ": unsupported UNet layout (no downsampling blocks found)");
    lay.layers_per_block = first_op - 1;
    const int per = lay.layers_per_block + 1;
    const int levels = (max_index(u, "output_blocks.") + 1) / per;
    const torch::Tensor conv_in = need(u, "input_blocks.0.0.weight", source);
    if (conv_in.size(1) != 4)
        throw Error(source + ": UNet with " + std::to_string(conv_in.size(1)) +
                    " input channels (inpainting/depth models) is not supported");
    std::vector<int64_t> channels;
    std::vector<std::string> down, up;
    int64_t context_dim = 0;
    bool linear_proj = false;
    for (int b = 0; b < levels; ++b) {
        const std::string rb = "input_blocks." + std::to_string(1 + b * per);
        channels.push_back(need(u, rb + ".0.out_layers.3.weight", source).size(0));
        const bool attn = u.count(rb + ".1.proj_in.weight") > 0;
        down.push_back(attn ? "CrossAttnDownBlock2D" : "DownBlock2D");
        if (attn) {
            context_dim = need(u, rb + ".1.transformer_blocks.0.attn2.to_k.weight", source).size(1);
            linear_proj = u.at(rb + ".1.proj_in.weight").dim() == 2;
        }
        const bool up_attn = u.count("output_blocks." + std::to_string(b * per) + ".1.proj_in.weight") > 0;
        up.push_back(up_attn ? "CrossAttnUpBlock2D" : "UpBlock2D");
    }
    if (check_family && context_dim != 768 && context_dim != 1024)
        throw Error(source + ": cross-attention width " + std::to_string(context_dim) +
                    " is neither SD 1.x (768) nor SD 2.x (1024); SDXL and other architectures are not supported");
    const bool sd2 = context_dim == 1024;
    c.family = sd2 ? "sd2" : "sd1";
    nlohmann::json heads = 8;
    if (sd2) {
        heads = nlohmann::json::array();
        for (auto ch : channels) heads.push_back(ch / 64);
    }
    const bool base = fs::path(source).filename().string().find("base") != std::string::npos;
    c.unet_config = {{"_class_name", "UNet2DConditionModel"},
                     {"in_channels", 4},
                     {"out_channels", need(u, "out.2.weight", source).size(0)},
                     {"block_out_channels", channels},
                     {"layers_per_block", lay.layers_per_block},
                     {"down_block_types", down},
                     {"up_block_types", up},
                     {"cross_attention_dim", context_dim},
                     {"attention_head_dim", heads},
                     {"use_linear_projection", linear_proj},
                     {"norm_num_groups", 32},
                     {"sample_size", sd2 && !base ? 96 : 64}};
    for (const auto& [k, t] : u) {
        const std::string n = unet_key(k, lay);
        if (n.empty()) throw Error(source + ": unexpected UNet tensor 'model.diffusion_model." + k + "'");
        c.unet[n] = t;
    }

    // --- VAE
    const int vae_levels = max_index(v, "encoder.down.") + 1;
    if (vae_levels < 1) throw Error(source + ": the VAE has no encoder blocks");
    std::vector<int64_t> vch;
    for (int b = 0; b < vae_levels; ++b)
        vch.push_back(need(v, "encoder.down." + std::to_string(b) + ".block.0.conv1.weight", source).size(0));
    c.vae_config = {{"_class_name", "AutoencoderKL"},
                    {"block_out_channels", vch},
                    {"layers_per_block", max_index(v, "encoder.down.0.block.") + 1},
                    {"latent_channels", need(v, "quant_conv.weight", source).size(0) / 2},
                    {"down_block_types", std::vector<std::string>(static_cast<size_t>(vae_levels), "DownEncoderBlock2D")},
                    {"up_block_types", std::vector<std::string>(static_cast<size_t>(vae_levels), "UpDecoderBlock2D")},
                    {"norm_num_groups", 32},
                    {"sample_size", 512},
                    {"scaling_factor", 0.18215}};
    for (const auto& [k, t] : v) {
        bool attn = false;
        const std::string n = vae_key(k, vae_levels, attn);
        if (n.empty()) {
            if (starts(k, "loss.") || k == "model_ema.decay" || k == "model_ema.num_updates") continue;
            throw Error(source + ": unexpected VAE tensor 'first_stage_model." + k + "'");
        }
        c.vae[n] = (attn && t.dim() == 4) ? t.reshape({t.size(0), t.size(1)}) : t;
    }

    // --- text encoder
    if (!sd2) {
        for (const auto& [k, t] : ldm) {
            if (!starts(k, kClip)) continue;
            std::string n = k.substr(kClip.size());
            if (!starts(n, "text_model.")) n = "text_model." + n;
            if (n == "text_model.embeddings.position_ids") continue;
            c.text_encoder[n] = t;
        }
        if (c.text_encoder.empty()) throw Error(source + ": no 'cond_stage_model.transformer.*' (CLIP text encoder) tensors");
    } else {
        const int blocks = max_index(ldm, kOpenClip + "transformer.resblocks.") + 1;
        if (blocks < 2) throw Error(source + ": no 'cond_stage_model.model.*' (OpenCLIP text encoder) tensors");
        const int layers = blocks - 1;  // SD 2.x uses the penultimate layer: diffusers drops the last
        for (const auto& [k, t] : ldm) {
            if (!starts(k, kOpenClip)) continue;
            const std::string s = k.substr(kOpenClip.size());
            if (s == "token_embedding.weight") c.text_encoder["text_model.embeddings.token_embedding.weight"] = t;
            else if (s == "positional_embedding") c.text_encoder["text_model.embeddings.position_embedding.weight"] = t;
            else if (starts(s, "ln_final.")) c.text_encoder["text_model.final_layer_norm." + s.substr(9)] = t;
            else if (starts(s, "transformer.resblocks.")) {
                int i = 0;
                std::string rest;
                if (!take_index(s.substr(22), i, rest) || i >= layers) continue;
                const std::string L = "text_model.encoder.layers." + std::to_string(i) + ".";
                if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
                    const std::string kind = rest == "attn.in_proj_weight" ? "weight" : "bias";
                    auto qkv = t.chunk(3, 0);
                    c.text_encoder[L + "self_attn.q_proj." + kind] = qkv[0];
                    c.text_encoder[L + "self_attn.k_proj." + kind] = qkv[1];
                    c.text_encoder[L + "self_attn.v_proj." + kind] = qkv[2];
                } else {
                    c.text_encoder[L + replace_prefix(rest, {{"ln_1.", "layer_norm1."},
                                                             {"ln_2.", "layer_norm2."},
                                                             {"attn.out_proj.", "self_attn.out_proj."},
                                                             {"mlp.c_fc.", "mlp.fc1."},
                                                             {"mlp.c_proj.", "mlp.fc2."}})] = t;
                }
            }
        }
    }
    const torch::Tensor tok = need(c.text_encoder, "text_model.embeddings.token_embedding.weight", source);
    const int64_t hidden = tok.size(1);
    c.text_config = {{"vocab_size", tok.size(0)},
                     {"hidden_size", hidden},
                     {"intermediate_size", need(c.text_encoder, "text_model.encoder.layers.0.mlp.fc1.weight", source).size(0)},
                     {"num_hidden_layers", max_index(c.text_encoder, "text_model.encoder.layers.") + 1},
                     {"num_attention_heads", hidden / 64},
                     {"max_position_embeddings",
                      need(c.text_encoder, "text_model.embeddings.position_embedding.weight", source).size(0)},
                     {"hidden_act", sd2 ? "gelu" : "quick_gelu"},
                     {"layer_norm_eps", 1e-5},
                     {"bos_token_id", 0},
                     {"eos_token_id", 2},
                     {"pad_token_id", 1}};
    c.scheduler_config = SchedulerConfig::stable_diffusion_v1().to_json();
    if (sd2 && !base) c.scheduler_config["prediction_type"] = "v_prediction";
    return c;
}

TensorMap to_ldm_checkpoint(const TensorMap& unet, const TensorMap& vae, const TensorMap& text_encoder) {
    // Inverse of the forward maps: enumerate candidate LDM names by trying each diffusers key's
    // structure (forward map applied to every plausible LDM name would be slower; the layouts are
    // regular enough to invert directly).
    TensorMap out;
    int lpb = 0;
    for (const auto& [k, t] : unet) {
        int b = 0, l = 0;
        std::string r;
        if (starts(k, "down_blocks.") && take_index(k.substr(12), b, r) && starts(r, "resnets.") &&
            take_index(r.substr(8), l, r))
            lpb = std::max(lpb, l + 1);
    }
    const int per = lpb + 1;
    auto inv_resnet = [](const std::string& r) {
        return replace_prefix(r, {{"norm1.", "in_layers.0."},
                                  {"conv1.", "in_layers.2."},
                                  {"time_emb_proj.", "emb_layers.1."},
                                  {"norm2.", "out_layers.0."},
                                  {"conv2.", "out_layers.3."},
                                  {"conv_shortcut.", "skip_connection."}});
    };
    for (const auto& [k, t] : unet) {
        std::string n;
        int b = 0, l = 0;
        std::string r, r2;
        if (starts(k, "time_embedding.linear_1.")) n = "time_embed.0." + k.substr(24);
        else if (starts(k, "time_embedding.linear_2.")) n = "time_embed.2." + k.substr(24);
        else if (starts(k, "conv_in.")) n = "input_blocks.0.0." + k.substr(8);
        else if (starts(k, "conv_norm_out.")) n = "out.0." + k.substr(14);
        else if (starts(k, "conv_out.")) n = "out.2." + k.substr(9);
        else if (starts(k, "down_blocks.") && take_index(k.substr(12), b, r)) {
            if (starts(r, "resnets.") && take_index(r.substr(8), l, r2))
                n = "input_blocks." + std::to_string(1 + b * per + l) + ".0." + inv_resnet(r2);
            else if (starts(r, "attentions.") && take_index(r.substr(11), l, r2))
                n = "input_blocks." + std::to_string(1 + b * per + l) + ".1." + r2;
            else if (starts(r, "downsamplers.0.conv."))
                n = "input_blocks." + std::to_string(1 + b * per + lpb) + ".0.op." + r.substr(20);
        } else if (starts(k, "mid_block.resnets.") && take_index(k.substr(18), l, r)) {
            n = "middle_block." + std::to_string(2 * l) + "." + inv_resnet(r);
        } else if (starts(k, "mid_block.attentions.0.")) {
            n = "middle_block.1." + k.substr(23);
        } else if (starts(k, "up_blocks.") && take_index(k.substr(10), b, r)) {
            const bool has_attn = unet.count("up_blocks." + std::to_string(b) + ".attentions.0.proj_in.weight") > 0;
            if (starts(r, "resnets.") && take_index(r.substr(8), l, r2))
                n = "output_blocks." + std::to_string(b * per + l) + ".0." + inv_resnet(r2);
            else if (starts(r, "attentions.") && take_index(r.substr(11), l, r2))
                n = "output_blocks." + std::to_string(b * per + l) + ".1." + r2;
            else if (starts(r, "upsamplers.0.conv."))
                n = "output_blocks." + std::to_string(b * per + lpb) + (has_attn ? ".2" : ".1") + ".conv." + r.substr(18);
        }
        if (n.empty()) throw Error("to_ldm_checkpoint: no LDM name for UNet tensor '" + k + "'");
        out[kUnet + n] = t;
    }
    int levels = 0;
    for (const auto& [k, t] : vae) {
        int b = 0;
        std::string r;
        if (starts(k, "encoder.down_blocks.") && take_index(k.substr(20), b, r)) levels = std::max(levels, b + 1);
    }
    for (const auto& [k, t] : vae) {
        std::string n;
        torch::Tensor v = t;
        for (const std::string part : {"encoder.", "decoder."}) {
            if (!starts(k, part)) continue;
            const std::string s = k.substr(part.size());
            int b = 0, j = 0;
            std::string r, r2;
            auto res = [](const std::string& x) { return replace_prefix(x, {{"conv_shortcut.", "nin_shortcut."}}); };
            if (starts(s, "conv_in.") || starts(s, "conv_out.")) n = k;
            else if (starts(s, "conv_norm_out.")) n = part + "norm_out." + s.substr(14);
            else if (starts(s, "mid_block.resnets.") && take_index(s.substr(18), j, r))
                n = part + "mid.block_" + std::to_string(j + 1) + "." + res(r);
            else if (starts(s, "mid_block.attentions.0.")) {
                n = part + "mid.attn_1." +
                    replace_prefix(s.substr(23), {{"group_norm.", "norm."},
                                                  {"to_q.", "q."},
                                                  {"to_k.", "k."},
                                                  {"to_v.", "v."},
                                                  {"to_out.0.", "proj_out."}});
                if (t.dim() == 2) v = t.reshape({t.size(0), t.size(1), 1, 1});
            } else if (starts(s, "down_blocks.") && take_index(s.substr(12), b, r)) {
                if (starts(r, "resnets.") && take_index(r.substr(8), j, r2))
                    n = part + "down." + std::to_string(b) + ".block." + std::to_string(j) + "." + res(r2);
                else if (starts(r, "downsamplers.0.conv."))
                    n = part + "down." + std::to_string(b) + ".downsample.conv." + r.substr(20);
            } else if (starts(s, "up_blocks.") && take_index(s.substr(10), b, r)) {
                const int i = levels - 1 - b;
                if (starts(r, "resnets.") && take_index(r.substr(8), j, r2))
                    n = part + "up." + std::to_string(i) + ".block." + std::to_string(j) + "." + res(r2);
                else if (starts(r, "upsamplers.0.conv."))
                    n = part + "up." + std::to_string(i) + ".upsample.conv." + r.substr(18);
            }
        }
        if (starts(k, "quant_conv.") || starts(k, "post_quant_conv.")) n = k;
        if (n.empty()) throw Error("to_ldm_checkpoint: no LDM name for VAE tensor '" + k + "'");
        out[kVae + n] = v;
    }
    for (const auto& [k, t] : text_encoder) out[kClip + k] = t;
    return out;
}

ModelBundle load_single_file_checkpoint(const std::string& path, const ModelBundleOptions& options) {
    auto conv = convert_ldm_checkpoint(load_safetensors(path), path, options.config_dir.empty());
    const fs::path dir = fs::path(path).parent_path();
    std::string tok_dir = options.tokenizer_dir;
    if (tok_dir.empty() && !options.config_dir.empty()) tok_dir = (fs::path(options.config_dir) / "tokenizer").string();
    if (tok_dir.empty() && fs::is_directory(dir / "tokenizer")) tok_dir = (dir / "tokenizer").string();
    if (tok_dir.empty())
        throw Error(path + ": a single-file checkpoint holds no CLIP tokenizer; put a tokenizer/ folder "
                           "(vocab.json, merges.txt) next to it or pass its folder");
    nlohmann::json ucfg = conv.unet_config, vcfg = conv.vae_config, tcfg = conv.text_config;
    SchedulerConfig scfg = SchedulerConfig::from_json(conv.scheduler_config, path);
    if (!options.config_dir.empty()) {
        ucfg = read_json_file(component_dir(options.config_dir, "unet") + "/config.json");
        vcfg = read_json_file(component_dir(options.config_dir, "vae") + "/config.json");
        tcfg = read_json_file(component_dir(options.config_dir, "text_encoder") + "/config.json");
        scfg = SchedulerConfig::from_file(component_dir(options.config_dir, "scheduler") + "/scheduler_config.json");
    }
    ModuleOptions mo;
    mo.tensor = torch::TensorOptions().device(options.device).dtype(options.dtype);
    mo.random_init = false;
    ModelBundle b;
    b.source = path;
    b.device = options.device;
    b.dtype = options.dtype;
    b.tokenizer = std::make_shared<CLIPTokenizer>(CLIPTokenizer::from_folder(tok_dir));
    b.unet = UNet2DConditionModel(UNetConfig::from_json(ucfg), mo);
    load_state_dict_strict(*b.unet, conv.unet, path + " (UNet)");
    b.vae = AutoencoderKL(VAEConfig::from_json(vcfg), mo);
    load_state_dict_strict(*b.vae, conv.vae, path + " (VAE)");
    b.text_encoder = CLIPTextModel(CLIPTextConfig::from_json(tcfg, path));
    b.text_encoder->to(options.device, options.dtype);
    load_state_dict_strict(*b.text_encoder, conv.text_encoder, path + " (text encoder)",
                           StateDictLoadOptions{{}, {"text_model.embeddings.position_ids"}});
    b.scheduler_config = scfg;
    return b;
}

}  // namespace kto
