#include "core/train/demo_model.h"

#include <stb_image_write.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <tuple>

#include "core/common/error.h"
#include "core/common/png_text.h"
#include "core/common/runtime.h"
#include "core/io/model_folder.h"
#include "core/io/safetensors.h"
#include "core/io/state_dict.h"
#include "core/nn/autocast.h"
#include "core/nn/layers.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"
#include "core/pipeline/pipeline.h"
#include "core/sampling/scheduler.h"
#include "core/shapes/bpe_vocab.h"
#include "core/shapes/caption.h"
#include "core/shapes/renderer.h"
#include "core/shapes/scorer.h"
#include "core/text/clip_text_model.h"
#include "core/text/clip_tokenizer.h"
#include "core/train/trainer.h"

namespace kto {

namespace fs = std::filesystem;
using namespace kto::shapes;

namespace {

constexpr const char* kDiffusersVersion = "0.25.0";
constexpr int kImageSize = 64;
constexpr int kLatentSize = 16;
constexpr int kTrainTimesteps = 1000;

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// SD 1.x "scaled_linear" betas: linspace(sqrt(0.00085), sqrt(0.012), 1000)^2.
torch::Tensor sd_alphas_cumprod() {
    auto betas = torch::linspace(std::sqrt(0.00085), std::sqrt(0.012), kTrainTimesteps,
                                 torch::kFloat64)
                     .pow(2);
    return torch::cumprod(1.0 - betas, 0).to(torch::kFloat32);
}

// Shape mask [B,1,64,64] of rendered scenes `x`: 1 where a pixel differs from its scene's
// background colour (shapes and their anti-aliased edges), 0 elsewhere.
torch::Tensor shape_mask(const std::vector<Scene>& scenes, const torch::Tensor& x) {
    std::vector<float> bg;
    for (const auto& s : scenes) {
        const Rgb c = colour_rgb(s.background);
        for (uint8_t v : {c.r, c.g, c.b}) bg.push_back(float(v) / 127.5f - 1.0f);
    }
    const torch::Tensor bgt = torch::tensor(bg).view({-1, 3, 1, 1}).to(x.device());
    return ((x - bgt).abs().amax(1, /*keepdim=*/true) > 0.02).to(torch::kFloat32);
}

// Mean of `err` weighted 1 on the background and 1 + shape_weight on shape pixels, normalised by
// the mean weight (so losses stay comparable across weights).
torch::Tensor shape_weighted_mean(const torch::Tensor& err, const torch::Tensor& mask, double shape_weight) {
    if (shape_weight <= 0) return err.mean();
    const torch::Tensor w = 1.0 + shape_weight * mask;
    return (err * w).mean() / w.expand_as(err).mean();
}

// Latents `z` [B,4,16,16] with each one's departure from its image's background code (the
// per-channel median over the cells) times `gain` (broadcast to [B,1,1,1]): how classifier-free
// guidance pushes a shape's latents past the data.
torch::Tensor push_from_background(const torch::Tensor& z, const torch::Tensor& gain) {
    const torch::Tensor bg = std::get<0>(z.flatten(2).median(-1)).unsqueeze(-1).unsqueeze(-1);
    return bg + gain * (z - bg);
}

// Latents `z` [B,C,h,w] moved towards a blurred copy of themselves by `amount` (broadcast to
// [B,1,1,1]; 0: unchanged, 1: fully blurred): a 3x3 binomial blur of each channel, edges
// replicated: what the decoder draws from latents that are soft at the edges (demo-eval
// --latent-blur).
torch::Tensor blur_latents(const torch::Tensor& z, const torch::Tensor& amount) {
    const int64_t c = z.size(1);
    const torch::Tensor k1 = torch::tensor({0.25f, 0.5f, 0.25f}, z.options());
    const torch::Tensor k = torch::outer(k1, k1).view({1, 1, 3, 3}).repeat({c, 1, 1, 1});
    const torch::Tensor padded = torch::replication_pad2d(z, {1, 1, 1, 1});
    const torch::Tensor blurred = torch::conv2d(padded, k, torch::Tensor(), /*stride=*/{1, 1},
                                                /*padding=*/at::IntArrayRef{0, 0}, /*dilation=*/{1, 1}, /*groups=*/c);
    return z + amount * (blurred - z);
}

// Renders a batch of scenes as a [B,3,64,64] tensor in [-1,1].
torch::Tensor render_batch(const std::vector<Scene>& scenes) {
    std::vector<torch::Tensor> xs;
    xs.reserve(scenes.size());
    for (const auto& s : scenes) xs.push_back(image_to_tensor(render(s, kImageSize)));
    return torch::stack(xs);
}

void write_text_file(const fs::path& p, const std::string& text) {
    const fs::path tmp = p.string() + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary);
        if (!f) throw Error(p.string() + ": cannot open for writing");
        f << text;
        if (!f) throw Error(p.string() + ": write failed");
    }
    fs::rename(tmp, p);
}

// All parameters and buffers of `m` in fp16, named as in the state dict.
TensorMap fp16_state(torch::nn::Module& m) {
    TensorMap out;
    for (const auto& p : m.named_parameters(true))
        out[p.key()] = p.value().detach().to(torch::kCPU, torch::kFloat16).contiguous();
    for (const auto& b : m.named_buffers(true)) {
        auto t = b.value().detach().to(torch::kCPU);
        out[b.key()] = t.is_floating_point() ? t.to(torch::kFloat16).contiguous() : t.contiguous();
    }
    return out;
}

void save_component(torch::nn::Module& m, const nlohmann::json& config, const fs::path& dir,
                    const std::string& weights_name) {
    fs::create_directories(dir);
    write_text_file(dir / "config.json", config.dump(2) + "\n");
    write_safetensors((dir / weights_name).string(), fp16_state(m), {{"format", "pt"}});
}

// A posterior sample whose noise comes from a CPU generator, whatever the device: runs on CPU and
// CUDA then draw the same numbers.
torch::Tensor sample_latents(const LatentDist& d, at::Generator& gen) {
    return d.mean + d.std() * randn_on_cpu(d.mean.sizes(), &gen, d.mean.device(), d.mean.scalar_type());
}

// `command`'s refusal of a CUDA device this libtorch or machine does not have.
void require_device(const torch::Device& device, const std::string& command) {
    if (device.is_cuda() && !torch::cuda::is_available())
        throw Error(command + ": --device cuda, but this libtorch build has no CUDA or no GPU is visible");
}

// The attention loss reads caption word w as token w + 1: each caption must be one token per word.
void require_one_token_per_word(const std::vector<std::string>& captions, const TokenizedPrompts& tokens) {
    for (size_t i = 0; i < captions.size(); ++i) {
        const auto words = captions[i].empty() ? 0 : std::count(captions[i].begin(), captions[i].end(), ' ') + 1;
        if (tokens.num_tokens[i] != int(words) + 2)
            throw Error("train-demo: --attention-loss-weight needs one token per caption word, but \"" + captions[i] +
                        "\" tokenizes otherwise");
    }
}

// Writes 8-bit RGB pixels (rows of width * 3 bytes) as a PNG file.
void write_rgb_png(const std::string& path, const uint8_t* rgb, int width, int height) {
    if (!stbi_write_png(path.c_str(), width, height, 3, rgb, width * 3)) throw Error(path + ": cannot write the PNG");
}

// Refuses bad decoder refinement options (before any work: train-demo checks them up front too).
void check_decoder_options(const DemoDecoderOptions& opt) {
    if (opt.steps <= 0 || opt.batch <= 0) throw Error("decoder refinement: steps and batch must be > 0");
    if (opt.shape_weight < 0) throw Error("decoder refinement: --decoder-shape-weight must be >= 0");
    if (opt.gain_jitter < 0) throw Error("decoder refinement: --decoder-gain-jitter must be >= 0");
    if (opt.generated_share < 0 || opt.generated_share > 1)
        throw Error("decoder refinement: --decoder-generated-share must be in [0, 1]");
    if (opt.validation_prompts < 0)
        throw Error("decoder refinement: --decoder-validation-prompts must be >= 0 (0: keep the refined decoder)");
    if (opt.generated_loss_pool < 1 || kImageSize % opt.generated_loss_pool != 0)
        throw Error("decoder refinement: --decoder-generated-loss-pool must divide 64");
    if (opt.generated_share > 0 && (opt.generated_pool <= 0 || !(opt.generated_strength > 0) ||
                                    opt.generated_strength > 1 || !(opt.generated_guidance >= 1)))
        throw Error("decoder refinement: --decoder-generated-pool must be > 0, --decoder-generated-strength in "
                    "(0, 1] and the guidance >= 1");
}

// Refuses bad alignment options; returns the objective they name.
ObjectiveKind check_align_options(const DemoAlignOptions& opt) {
    if (opt.rounds <= 0 || opt.prompts <= 0 || opt.steps <= 0 || opt.batch <= 0 || opt.sample_steps <= 0)
        throw Error("alignment: --align-rounds, --align-prompts and --align-steps must be > 0 (and the batch and sampling steps)");
    if (!(opt.lr > 0) || !(opt.beta > 0) || !(opt.guidance >= 1))
        throw Error("alignment: --align-lr and --align-beta must be > 0 and the guidance >= 1");
    return parse_objective(opt.objective, "alignment: --align-objective");
}

// One training step's backward as two half-batches side by side: objective(0) and objective(1) (the halves'
// losses, each its share of the whole batch's) run on the pair runner's two threads with gradients on, each
// half's gradients are taken (not accumulated, so the order of the sum is fixed and the step deterministic)
// and each parameter's gradient is set to their sum: the whole batch's up to rounding.
void backward_halves_side_by_side(CpuPairRunner& pairs, const std::vector<torch::Tensor>& params,
                                  const std::function<torch::Tensor(int half)>& objective) {
    std::array<std::vector<torch::Tensor>, 2> grads;
    auto half = [&](int k) {
        torch::AutoGradMode grad_on(true);
        grads[k] = torch::autograd::grad({objective(k)}, params, {}, /*retain_graph=*/false,
                                         /*create_graph=*/false, /*allow_unused=*/true);
    };
    pairs.run([&] { half(0); }, [&] { half(1); });
    for (size_t i = 0; i < params.size(); ++i) {
        const torch::Tensor &g0 = grads[0][i], &g1 = grads[1][i];
        if (g0.defined() || g1.defined())
            params[i].mutable_grad() = g0.defined() && g1.defined() ? g0 + g1 : (g0.defined() ? g0 : g1);
    }
}

// ---- Checkpoints of a train_demo_model run (DemoTrainOptions::checkpoint_every, resume).
// OUT/train-demo-checkpoint holds state.json (written last: its presence marks a complete checkpoint),
// tensors.safetensors (fp32 weights, the EMA, the random generators' states) and optimizer.pt (the AdamW
// moments, libtorch's own format). A new checkpoint is written to train-demo-checkpoint.new and then takes
// the last one's place by renames (the last one to train-demo-checkpoint.old, removed after).
constexpr const char* kCheckpointFolder = "train-demo-checkpoint";
constexpr int kCheckpointFormat = 1;

fs::path checkpoint_folder(const std::string& out_dir) { return fs::path(out_dir) / kCheckpointFolder; }
fs::path pending_checkpoint_folder(const std::string& out_dir) {
    return fs::path(out_dir) / (std::string(kCheckpointFolder) + ".new");
}
fs::path replaced_checkpoint_folder(const std::string& out_dir) {
    return fs::path(out_dir) / (std::string(kCheckpointFolder) + ".old");
}

// Where a run stands, in order: the VAE phase 0, the text encoder + UNet phase 1, its round K 1 + K,
// the folder written, the refinement done.
constexpr int kSavedStage = 1 << 20;
int stage_of(const std::string& phase) {
    if (phase == "vae") return 0;
    if (phase == "unet") return 1;
    if (phase.rfind("unet+", 0) == 0) return 1 + std::atoi(phase.c_str() + 5);
    if (phase == "saved") return kSavedStage;
    if (phase == "refined") return kSavedStage + 1;
    throw Error("train-demo: unknown checkpoint phase '" + phase + "'");
}

// A checkpoint as read back: its state.json, its tensors, and where its optimizer state lies.
struct RunCheckpoint {
    DemoCheckpointInfo info;
    nlohmann::json state;
    TensorMap tensors;
    fs::path optimizer_file;
    int stage() const { return stage_of(info.phase); }
    const torch::Tensor& tensor(const std::string& key) const {
        const auto it = tensors.find(key);
        if (it == tensors.end())
            throw Error(info.folder + "/tensors.safetensors: no tensor '" + key + "' (a damaged checkpoint)");
        return it->second;
    }
    // Copies the checkpoint's tensor `key` into `dest` (same shape), in place.
    void load_into(const torch::Tensor& dest, const std::string& key) const {
        const torch::Tensor& t = tensor(key);
        if (t.sizes() != dest.sizes())
            throw Error(info.folder + "/tensors.safetensors: tensor '" + key + "' has the wrong shape");
        torch::NoGradGuard no_grad;
        torch::Tensor d = dest;
        d.copy_(t);
    }
    void load_module(torch::nn::Module& m, const std::string& prefix) const {
        for (const auto& p : m.named_parameters(true)) load_into(p.value(), prefix + p.key());
    }
    // The phase's optimizer and its generator, and the global generator: what with_generators and the
    // optimizer file hold.
    void load_optimizer_and_generators(torch::optim::Optimizer& adam, at::Generator& phase_gen) const {
        try {
            torch::load(adam, optimizer_file.string());
        } catch (const c10::Error& e) {
            throw Error(optimizer_file.string() + ": cannot read the optimizer state (" + e.what_without_backtrace() + ")");
        }
        phase_gen.set_state(tensor("generator").contiguous());
        at::Generator global = at::detail::getDefaultCPUGenerator();
        global.set_state(tensor("global_generator").contiguous());
    }
};

// The run's state at one step, written as the checkpoint of `out_dir`.
struct CheckpointWriter {
    std::string out_dir;
    nlohmann::json recipe;

    // `folder_file` (relative to out_dir): a file of the written folder that the phase to come rewrites in
    // place, kept as it is now, so that a resumed run starts that phase from it again.
    void write(const std::string& phase, int step, int total, double elapsed_s, const nlohmann::json& extra,
               const TensorMap& tensors, const torch::optim::Optimizer* adam,
               const std::string& folder_file = {}) const {
        const fs::path dir = checkpoint_folder(out_dir), next = pending_checkpoint_folder(out_dir);
        if (!fs::exists(dir / "state.json") && fs::exists(next / "state.json")) {
            // The last switch was cut between its renames: the complete one is next; it becomes dir first.
            fs::remove_all(dir);
            fs::rename(next, dir);
        }
        fs::remove_all(next);
        fs::create_directories(next);
        if (!tensors.empty()) write_safetensors((next / "tensors.safetensors").string(), tensors, {{"format", "pt"}});
        if (adam) torch::save(*adam, (next / "optimizer.pt").string());
        if (!folder_file.empty()) fs::copy_file(fs::path(out_dir) / folder_file, next / "folder-file");
        nlohmann::json state = {{"format", kCheckpointFormat}, {"phase", phase},       {"step", step},
                                {"total", total},              {"elapsed_s", elapsed_s}, {"recipe", recipe}};
        if (!folder_file.empty()) state["folder_file"] = folder_file;
        if (extra.is_object()) state.update(extra);
        write_text_file(next / "state.json", state.dump(2) + "\n");
        // Renames only, so that at every moment one complete checkpoint is there to read: the last one in dir,
        // or (between the two renames) the new one in next.
        const fs::path old = replaced_checkpoint_folder(out_dir);
        fs::remove_all(old);
        if (fs::exists(dir)) fs::rename(dir, old);
        fs::rename(next, dir);
        fs::remove_all(old);
    }
    // No checkpoint left: the run is complete.
    void remove() const {
        fs::remove_all(pending_checkpoint_folder(out_dir));
        fs::remove_all(checkpoint_folder(out_dir));
        fs::remove_all(replaced_checkpoint_folder(out_dir));
    }
};

std::optional<fs::path> complete_checkpoint_folder(const std::string& out_dir) {
    for (const fs::path& d : {checkpoint_folder(out_dir), pending_checkpoint_folder(out_dir)})
        if (fs::exists(d / "state.json")) return d;
    return std::nullopt;
}

nlohmann::json read_checkpoint_state(const fs::path& dir) {
    const fs::path file = dir / "state.json";
    nlohmann::json state;
    try {
        state = read_json_file(file.string());
    } catch (const std::exception& e) {
        throw Error(file.string() + ": " + e.what() + " (a damaged checkpoint; delete " + dir.string() +
                    " to start the run over)");
    }
    if (!state.is_object() || state.value("format", 0) != kCheckpointFormat)
        throw Error(file.string() + ": not a train-demo checkpoint of format " + std::to_string(kCheckpointFormat));
    return state;
}

DemoCheckpointInfo checkpoint_info(const fs::path& dir, const nlohmann::json& state) {
    DemoCheckpointInfo info;
    info.folder = dir.string();
    try {
        info.phase = state.at("phase").get<std::string>();
        info.step = state.at("step").get<int>();
        info.total = state.at("total").get<int>();
        info.elapsed_s = state.at("elapsed_s").get<double>();
        info.recipe = state.value("recipe", nlohmann::json::object());
        if (!info.recipe.is_object()) throw Error((dir / "state.json").string() + ": its recipe is not an object");
        stage_of(info.phase);
    } catch (const nlohmann::json::exception& e) {
        throw Error((dir / "state.json").string() + ": " + e.what());
    }
    return info;
}

// The checkpoint of `opt.out_dir`, which a resumed run with `opt` continues: its recipe must be opt's.
RunCheckpoint read_run_checkpoint(const fs::path& dir, const DemoTrainOptions& opt) {
    RunCheckpoint c;
    c.state = read_checkpoint_state(dir);
    c.info = checkpoint_info(dir, c.state);
    const nlohmann::json recipe = demo_recipe_json(opt);
    const nlohmann::json& saved = c.info.recipe;
    std::string differences;
    for (const auto& [key, value] : recipe.items())
        if (!saved.contains(key) || saved[key] != value)
            differences += (differences.empty() ? "" : ", ") + std::string("--") + key + " " +
                           (saved.contains(key) ? saved[key].dump() : "(not recorded)") + " (now " + value.dump() + ")";
    for (const auto& [key, value] : saved.items())
        if (!recipe.contains(key)) differences += (differences.empty() ? "" : ", ") + key + " " + value.dump();
    if (!differences.empty())
        throw Error("train-demo --resume: the run in " + opt.out_dir + " was started with other options: " + differences +
                    ". Resume with the options it was started with (--threads and --device may differ)");
    if (fs::exists(dir / "tensors.safetensors")) c.tensors = load_safetensors((dir / "tensors.safetensors").string());
    c.optimizer_file = dir / "optimizer.pt";
    if (c.stage() < kSavedStage && (c.tensors.empty() || !fs::exists(c.optimizer_file)))
        throw Error(dir.string() + ": tensors.safetensors or optimizer.pt is missing (a damaged checkpoint; delete " +
                    dir.string() + " to start the run over)");
    return c;
}

TensorMap with_generators(TensorMap t, at::Generator& phase_gen) {
    t["generator"] = phase_gen.get_state();
    t["global_generator"] = at::detail::getDefaultCPUGenerator().get_state();
    return t;
}

TensorMap fp32_parameters(torch::nn::Module& m, const std::string& prefix) {
    TensorMap out;
    for (const auto& p : m.named_parameters(true))
        out[prefix + p.key()] = p.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
    return out;
}

}  // namespace

DemoRunEta::DemoRunEta(const DemoTrainOptions& opt)
    : rounds_(std::max(0, opt.unet_rounds)),
      round_steps_(std::max(0, opt.unet_round_steps)),
      more_after_(opt.decoder_steps > 0 || opt.align_rounds > 0) {}

DemoRunEta::Estimate DemoRunEta::update(const DemoProgress& p) {
    if (p.phase != phase_) {
        phase_ = p.phase;
        first_step_ = p.step;
        first_s_ = p.elapsed_s;
    }
    // "unet" is the phase, "unet+K" its K-th round.
    const bool unet = p.phase.rfind("unet", 0) == 0;
    const int round = unet && p.phase.size() > 5 && p.phase[4] == '+' ? std::atoi(p.phase.c_str() + 5) : 0;
    double pace = -1;
    if (p.step - first_step_ >= 5) pace = (p.elapsed_s - first_s_) / double(p.step - first_step_);
    if (unet && pace > 0) unet_pace_ = pace;
    if (unet && pace < 0 && round > 0) pace = unet_pace_;
    Estimate e;
    if (pace < 0 || p.phase == "save") return e;
    double steps_left = std::max(0, p.total - p.step);
    if (unet) steps_left += double(std::max(0, rounds_ - round)) * round_steps_;
    e.seconds = steps_left * pace;
    if (unet) e.span = more_after_ ? Span::kUnetAndRounds : Span::kRun;
    return e;
}

nlohmann::json demo_recipe_json(const DemoTrainOptions& o) {
    return {{"vae-steps", o.vae_steps},
            {"vae-batch", o.vae_batch},
            {"unet-steps", o.unet_steps},
            {"unet-batch", o.unet_batch},
            {"cache-images", o.cache_images},
            {"two-shape-share", o.two_shape_share},
            {"reading-order", o.reading_order},
            {"vae-lr", o.vae_lr},
            {"vae-kl-weight", o.vae_kl_weight},
            {"vae-shape-weight", o.vae_shape_weight},
            {"vae-width", o.vae_width},
            {"vae-palette-weight", o.vae_palette_weight},
            {"vae-palette-radius", o.vae_palette_radius},
            {"unet-lr", o.unet_lr},
            {"unet-lr-floor", o.unet_lr_floor},
            {"unet-rounds", o.unet_rounds},
            {"unet-round-steps", o.unet_round_steps},
            {"unet-round-lr", o.unet_round_lr},
            {"unet-channels", o.unet_channels},
            {"unet-layers", o.unet_layers},
            {"unet-plain-levels", o.unet_plain_levels},
            {"unet-heads", o.unet_heads},
            {"text-width", o.text_width},
            {"text-layers", o.text_layers},
            {"unet-shape-weight", o.unet_shape_weight},
            {"attention-loss-weight", o.attention_loss_weight},
            {"attention-words", o.attention_words},
            {"mixed-precision", o.mixed_precision_bf16 ? "bf16" : "no"},
            {"unet-batch-halves", o.unet_batch_halves},
            {"vae-batch-halves", o.vae_batch_halves},
            {"min-snr-gamma", o.min_snr_gamma},
            {"ema-decay", o.ema_decay},
            {"caption-dropout", o.caption_dropout},
            {"offset-noise", o.offset_noise},
            {"prediction-type", o.prediction_type},
            {"zero-terminal-snr", o.zero_terminal_snr},
            {"vae-from", o.vae_from},
            {"init-from", o.init_from},
            {"decoder-steps", o.decoder_steps},
            {"decoder-shape-weight", o.decoder_shape_weight},
            {"decoder-gain-jitter", o.decoder_gain_jitter},
            {"decoder-validation-prompts", o.decoder_validation_prompts},
            {"decoder-generated-share", o.decoder_generated_share},
            {"decoder-generated-pool", o.decoder_generated_pool},
            {"decoder-generated-strength", o.decoder_generated_strength},
            {"decoder-generated-loss-pool", o.decoder_generated_loss_pool},
            {"align-rounds", o.align_rounds},
            {"align-prompts", o.align_prompts},
            {"align-steps", o.align_steps},
            {"align-lr", o.align_lr},
            {"align-beta", o.align_beta},
            {"align-objective", o.align_objective},
            {"align-judge-size", o.align_judge_size},
            {"align-judge-position", o.align_judge_position},
            {"seed", o.seed}};
}

std::string demo_checkpoint_place(const DemoCheckpointInfo& c) {
    if (c.total > 0) return c.phase + " step " + std::to_string(c.step) + "/" + std::to_string(c.total);
    return c.phase + " (the folder is written)";
}

bool demo_unet_batch_halves_by_default(const DemoTrainOptions& o) {
    if (!o.device.is_cpu() || o.unet_batch < 2) return false;
    configure_torch_threads(o.threads);
    return CpuPairRunner::available();
}

std::optional<DemoCheckpointInfo> find_demo_checkpoint(const std::string& out_dir) {
    const std::optional<fs::path> dir = complete_checkpoint_folder(out_dir);
    if (!dir) return std::nullopt;
    return checkpoint_info(*dir, read_checkpoint_state(*dir));
}

torch::Tensor shape_cells(const Shape& shape, int r) {
    if (r <= 0) throw Error("shape_cells: the grid needs at least one cell");
    constexpr int kSub = 4;
    std::vector<float> cells(size_t(r) * size_t(r), 0.0f);
    for (int i = 0; i < r; ++i)
        for (int j = 0; j < r; ++j) {
            bool touched = false;
            for (int sy = 0; sy < kSub && !touched; ++sy)
                for (int sx = 0; sx < kSub && !touched; ++sx)
                    touched = shape_contains(shape, (j + (sx + 0.5) / kSub) / r, (i + (sy + 0.5) / kSub) / r);
            cells[size_t(i) * size_t(r) + size_t(j)] = touched ? 1.0f : 0.0f;
        }
    return torch::tensor(cells);
}

AttributeWordKinds parse_shape_word_kinds(const std::string& list) {
    AttributeWordKinds k{false, false, false};
    std::istringstream in(list);
    for (std::string w; std::getline(in, w, ',');) {
        if (w == "size") k.size = true;
        else if (w == "colour") k.colour = true;
        else if (w == "class") k.cls = true;
        else
            throw Error("train-demo: --attention-words takes a comma-separated list of size, colour and class, not \"" +
                        w + "\"");
    }
    if (!k.size && !k.colour && !k.cls) throw Error("train-demo: --attention-words names no word kind");
    return k;
}

int64_t shape_token_attention_triples(const std::vector<std::optional<PromptRequest>>& requests,
                                      const AttributeWordKinds& words) {
    int64_t n = 0;
    for (const auto& r : requests)
        if (r)
            for (const auto& span : shape_attribute_words(*r, words)) n += int64_t(span.size());
    return n;
}

torch::Tensor shape_token_attention_loss(const std::vector<torch::Tensor>& maps, const std::vector<Scene>& scenes,
                                         const std::vector<std::optional<PromptRequest>>& requests,
                                         const AttributeWordKinds& words, int64_t batch_triples) {
    if (scenes.size() != requests.size())
        throw Error("shape_token_attention_loss: " + std::to_string(scenes.size()) + " scenes but " +
                    std::to_string(requests.size()) + " requests");
    // Every supervised (row, shape, token).
    std::vector<int64_t> rows, tokens;
    std::vector<const Shape*> shapes_of;
    for (size_t b = 0; b < requests.size(); ++b) {
        if (!requests[b]) continue;
        const auto spans = shape_attribute_words(*requests[b], words);
        if (spans.size() != scenes[b].shapes.size())
            throw Error("shape_token_attention_loss: row " + std::to_string(b) + " names " +
                        std::to_string(spans.size()) + " shapes, its scene has " +
                        std::to_string(scenes[b].shapes.size()));
        for (size_t i = 0; i < spans.size(); ++i)
            for (int w : spans[i]) {
                rows.push_back(int64_t(b));
                tokens.push_back(w + 1);
                shapes_of.push_back(&scenes[b].shapes[i]);
            }
    }
    if (maps.empty()) throw Error("shape_token_attention_loss: no attention maps (is the probe attached?)");
    if (rows.empty()) return torch::zeros({}, maps.front().options());
    std::map<int64_t, torch::Tensor> masks;  // per grid side: [n, r*r]
    torch::Tensor total;
    for (const auto& a : maps) {
        const int64_t batch = a.size(0), q = a.size(1), k = a.size(2);
        const auto r = int64_t(std::lround(std::sqrt(double(q))));
        if (a.dim() != 3 || batch != int64_t(requests.size()) || r * r != q)
            throw Error("shape_token_attention_loss: an attention map of shape " + std::string(c10::str(a.sizes())) +
                        " is not [" + std::to_string(requests.size()) + ", r*r, tokens]");
        auto& mask = masks[r];
        if (!mask.defined()) {
            std::vector<torch::Tensor> m;
            for (const Shape* s : shapes_of) m.push_back(shape_cells(*s, int(r)));
            mask = torch::stack(m).to(a.device());
        }
        for (int64_t t : tokens)
            if (t >= k) throw Error("shape_token_attention_loss: a caption is longer than the attention's " +
                                    std::to_string(k) + " tokens");
        const torch::Tensor flat = torch::tensor(rows) * k + torch::tensor(tokens);
        const torch::Tensor sel = a.transpose(1, 2).reshape({batch * k, q}).index_select(0, flat.to(a.device()));
        const torch::Tensor share = (sel * mask).sum(1) / sel.sum(1).clamp_min(1e-12);
        const torch::Tensor l =
            batch_triples > 0 ? (1.0 - share).pow(2).sum() / double(batch_triples) : (1.0 - share).pow(2).mean();
        total = total.defined() ? total + l : l;
    }
    return total / double(maps.size());
}

torch::Tensor demo_palette_codes(double radius) {
    // Axis and sign per colour, in kAllColours order (red, orange, yellow, green, blue, purple,
    // white, black).
    static constexpr std::array<std::pair<int, float>, 8> kVertex{
        std::pair{2, 1.0f}, std::pair{3, 1.0f}, std::pair{1, 1.0f}, std::pair{2, -1.0f},
        std::pair{1, -1.0f}, std::pair{3, -1.0f}, std::pair{0, 1.0f}, std::pair{0, -1.0f}};
    torch::Tensor codes = torch::zeros({8, 4});
    for (size_t k = 0; k < kVertex.size(); ++k)
        codes[int64_t(k)][kVertex[k].first] = kVertex[k].second * float(radius);
    return codes;
}

std::pair<torch::Tensor, torch::Tensor> demo_palette_targets(const torch::Tensor& x, double radius) {
    std::vector<float> rgb;
    for (Colour c : kAllColours) {
        const Rgb v = colour_rgb(c);
        for (uint8_t u : {v.r, v.g, v.b}) rgb.push_back(float(u) / 127.5f - 1.0f);
    }
    const torch::Tensor palette = torch::tensor(rgb).view({1, 8, 3, 1, 1}).to(x.device(), x.scalar_type());
    // [B,8,64,64]: 1 where a pixel is exactly that colour (renders are exact but for anti-aliasing).
    const torch::Tensor is_colour = ((x.unsqueeze(1) - palette).abs().amax(2) < 0.02).to(x.scalar_type());
    const int cell = kImageSize / kLatentSize;
    const torch::Tensor filled = (torch::avg_pool2d(is_colour, cell) > 0.999).to(x.scalar_type());  // [B,8,16,16]
    const torch::Tensor codes = demo_palette_codes(radius).to(x.device(), x.scalar_type());
    const torch::Tensor target = torch::einsum("bkhw,kc->bchw", {filled, codes});
    return {target, filled.sum(1, /*keepdim=*/true).clamp_max(1.0)};
}

nlohmann::json demo_vae_config(double scaling_factor, int width) {
    return {{"_class_name", "AutoencoderKL"},
            {"_diffusers_version", kDiffusersVersion},
            {"act_fn", "silu"},
            {"block_out_channels", {width, 2 * width, 4 * width}},
            {"down_block_types", {"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"}},
            {"force_upcast", true},
            {"in_channels", 3},
            {"latent_channels", 4},
            {"latents_mean", nullptr},
            {"latents_std", nullptr},
            {"layers_per_block", 1},
            {"norm_num_groups", 8},
            {"out_channels", 3},
            {"sample_size", kImageSize},
            {"scaling_factor", scaling_factor},
            {"up_block_types", {"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}}};
}

nlohmann::json demo_unet_config(const std::vector<int>& channels, int layers_per_block, int plain_levels, int heads,
                                int cross_attention_dim) {
    std::vector<std::string> down, up;
    for (size_t i = 0; i < channels.size(); ++i)
        down.push_back(int(i) < plain_levels ? "DownBlock2D" : "CrossAttnDownBlock2D");
    up.assign(down.rbegin(), down.rend());
    for (auto& u : up) u = u == "DownBlock2D" ? "UpBlock2D" : "CrossAttnUpBlock2D";
    return {{"_class_name", "UNet2DConditionModel"},
            {"_diffusers_version", kDiffusersVersion},
            {"act_fn", "silu"},
            {"addition_embed_type", nullptr},
            {"addition_embed_type_num_heads", 64},
            {"addition_time_embed_dim", nullptr},
            {"attention_head_dim", heads},
            {"attention_type", "default"},
            {"block_out_channels", channels},
            {"center_input_sample", false},
            {"class_embed_type", nullptr},
            {"class_embeddings_concat", false},
            {"conv_in_kernel", 3},
            {"conv_out_kernel", 3},
            {"cross_attention_dim", cross_attention_dim},
            {"cross_attention_norm", nullptr},
            {"down_block_types", down},
            {"downsample_padding", 1},
            {"dropout", 0.0},
            {"dual_cross_attention", false},
            {"encoder_hid_dim", nullptr},
            {"encoder_hid_dim_type", nullptr},
            {"flip_sin_to_cos", true},
            {"freq_shift", 0},
            {"in_channels", 4},
            {"layers_per_block", layers_per_block},
            {"mid_block_only_cross_attention", nullptr},
            {"mid_block_scale_factor", 1},
            {"mid_block_type", "UNetMidBlock2DCrossAttn"},
            {"norm_eps", 1e-05},
            {"norm_num_groups", 16},
            {"num_attention_heads", nullptr},
            {"num_class_embeds", nullptr},
            {"only_cross_attention", false},
            {"out_channels", 4},
            {"projection_class_embeddings_input_dim", nullptr},
            {"resnet_out_scale_factor", 1.0},
            {"resnet_skip_time_act", false},
            {"resnet_time_scale_shift", "default"},
            {"reverse_transformer_layers_per_block", nullptr},
            {"sample_size", kLatentSize},
            {"time_cond_proj_dim", nullptr},
            {"time_embedding_act_fn", nullptr},
            {"time_embedding_dim", nullptr},
            {"time_embedding_type", "positional"},
            {"timestep_post_act", nullptr},
            {"transformer_layers_per_block", 1},
            {"up_block_types", up},
            {"upcast_attention", false},
            {"use_linear_projection", false}};
}

nlohmann::json demo_text_encoder_config(int64_t vocab_size, int width, int layers) {
    return {{"architectures", {"CLIPTextModel"}},
            {"attention_dropout", 0.0},
            {"bos_token_id", vocab_size - 2},
            {"dropout", 0.0},
            {"eos_token_id", vocab_size - 1},
            {"hidden_act", "quick_gelu"},
            {"hidden_size", width},
            {"initializer_factor", 1.0},
            {"initializer_range", 0.02},
            {"intermediate_size", 4 * width},
            {"layer_norm_eps", 1e-05},
            {"max_position_embeddings", 77},
            {"model_type", "clip_text_model"},
            {"num_attention_heads", width / 16},
            {"num_hidden_layers", layers},
            {"pad_token_id", vocab_size - 1},
            {"projection_dim", width},
            {"torch_dtype", "float16"},
            {"transformers_version", "4.36.2"},
            {"vocab_size", vocab_size}};
}

nlohmann::json demo_scheduler_config(const std::string& prediction_type, bool zero_terminal_snr) {
    return {{"_class_name", "DDIMScheduler"},
            {"_diffusers_version", kDiffusersVersion},
            {"beta_end", 0.012},
            {"beta_schedule", "scaled_linear"},
            {"beta_start", 0.00085},
            {"clip_sample", false},
            {"clip_sample_range", 1.0},
            {"dynamic_thresholding_ratio", 0.995},
            {"num_train_timesteps", kTrainTimesteps},
            {"prediction_type", prediction_type},
            {"rescale_betas_zero_snr", zero_terminal_snr},
            {"sample_max_value", 1.0},
            {"set_alpha_to_one", false},
            {"steps_offset", 1},
            {"thresholding", false},
            {"timestep_spacing", zero_terminal_snr ? "trailing" : "leading"},
            {"trained_betas", nullptr}};
}

nlohmann::json demo_model_index() {
    return {{"_class_name", "StableDiffusionPipeline"},
            {"_diffusers_version", kDiffusersVersion},
            {"feature_extractor", {nullptr, nullptr}},
            {"image_encoder", {nullptr, nullptr}},
            {"requires_safety_checker", false},
            {"safety_checker", {nullptr, nullptr}},
            {"scheduler", {"diffusers", "DDIMScheduler"}},
            {"text_encoder", {"transformers", "CLIPTextModel"}},
            {"tokenizer", {"transformers", "CLIPTokenizer"}},
            {"unet", {"diffusers", "UNet2DConditionModel"}},
            {"vae", {"diffusers", "AutoencoderKL"}}};
}

void train_demo_model(const DemoTrainOptions& opt,
                      const std::function<bool(const DemoProgress&)>& progress) {
    if (opt.out_dir.empty()) throw Error("train-demo: an output folder is required");
    if (opt.offset_noise < 0) throw Error("train-demo: --offset-noise must be >= 0");
    if (opt.prediction_type != "epsilon" && opt.prediction_type != "v_prediction")
        throw Error("train-demo: --prediction-type must be epsilon or v_prediction, not '" + opt.prediction_type + "'");
    const bool v_prediction = opt.prediction_type == "v_prediction";
    if (opt.zero_terminal_snr && !v_prediction)
        throw Error("train-demo: --zero-terminal-snr needs --prediction-type v_prediction (at zero SNR the noise "
                    "tells nothing of the image, so epsilon prediction cannot give it)");
    if (opt.vae_steps < 0 || opt.unet_steps < 0 || opt.vae_batch <= 0 || opt.unet_batch <= 0 ||
        opt.cache_images <= 0)
        throw Error("train-demo: step counts must be >= 0 and batch sizes / cache size > 0");
    if (opt.vae_width < 8 || opt.vae_width % 8 != 0)
        throw Error("train-demo: --vae-width must be a positive multiple of 8 (the VAE's group norm has 8 groups)");
    if (opt.vae_kl_weight < 0) throw Error("train-demo: --vae-kl-weight must be >= 0");
    if (opt.vae_shape_weight < 0) throw Error("train-demo: --vae-shape-weight must be >= 0");
    if (opt.vae_palette_weight < 0) throw Error("train-demo: --vae-palette-weight must be >= 0");
    if (!(opt.vae_palette_radius > 0)) throw Error("train-demo: --vae-palette-radius must be > 0");
    if (opt.unet_shape_weight < 0) throw Error("train-demo: --unet-shape-weight must be >= 0");
    if (opt.attention_loss_weight < 0) throw Error("train-demo: --attention-loss-weight must be >= 0 (0: off)");
    const AttributeWordKinds attention_words = parse_shape_word_kinds(opt.attention_words);
    if (!(opt.two_shape_share >= 0 && opt.two_shape_share <= 1))
        throw Error("train-demo: --two-shape-share must be in [0, 1]");
    if (opt.unet_channels.empty() || opt.unet_channels.size() > 3 ||
        std::any_of(opt.unet_channels.begin(), opt.unet_channels.end(), [](int c) { return c <= 0 || c % 16 != 0; }))
        throw Error("train-demo: --unet-channels needs 1 to 3 positive multiples of 16 (the UNet's group norm has 16 groups; "
                    "16x16 latents allow at most 3 levels)");
    if (opt.min_snr_gamma < 0) throw Error("train-demo: --min-snr-gamma must be >= 0 (0: off)");
    if (opt.unet_plain_levels < 0 || opt.unet_plain_levels >= int(opt.unet_channels.size()))
        throw Error("train-demo: --unet-plain-levels must leave at least the lowest UNet level with attention");
    if (opt.unet_layers < 1) throw Error("train-demo: --unet-layers must be >= 1");
    if (opt.unet_heads < 1 ||
        std::any_of(opt.unet_channels.begin() + opt.unet_plain_levels, opt.unet_channels.end(),
                    [&](int c) { return c % opt.unet_heads != 0; }))
        throw Error("train-demo: --unet-heads must be >= 1 and divide the channels of every UNet level with attention");
    if (opt.text_width < 16 || opt.text_width % 16 != 0)
        throw Error("train-demo: --text-width must be a positive multiple of 16 (one attention head per 16 channels)");
    if (opt.text_layers < 1) throw Error("train-demo: --text-layers must be >= 1");
    if (!(opt.unet_lr_floor >= 0 && opt.unet_lr_floor <= 1)) throw Error("train-demo: --unet-lr-floor must be in [0, 1]");
    if (opt.unet_rounds < 0 || opt.unet_round_steps < 0)
        throw Error("train-demo: --unet-rounds and --unet-round-steps must be >= 0 (0 rounds: none)");
    if (opt.unet_rounds > 0 && !(opt.unet_round_lr > 0)) throw Error("train-demo: --unet-round-lr must be > 0");
    if (opt.decoder_steps > 0) check_decoder_options(decoder_refinement(opt));
    if (opt.align_rounds < 0) throw Error("train-demo: --align-rounds must be >= 0");
    if (opt.align_rounds > 0) check_align_options(demo_alignment(opt));
    require_device(opt.device, "train-demo");
    if (!opt.vae_from.empty() && !fs::exists(fs::path(opt.vae_from) / "vae" / "config.json"))
        throw Error("train-demo: --vae-from " + opt.vae_from + " has no vae/config.json (expected a demo model folder)");
    if (!opt.init_from.empty())
        for (const char* part : {"unet", "text_encoder"})
            if (!fs::exists(fs::path(opt.init_from) / part / "config.json"))
                throw Error("train-demo: --init-from " + opt.init_from + " has no " + part +
                            "/config.json (expected a demo model folder)");
    configure_torch_threads(opt.threads);
    if (opt.unet_batch_halves && (opt.unet_batch < 2 || !CpuPairRunner::available()))
        throw Error("train-demo: --unet-batch-halves needs a --unet-batch of 2 or more, 2 or more threads (--threads) "
                    "and libtorch's OpenMP runtime (and KTO_CPU_PAIRS not 0)");
    if (opt.vae_batch_halves && opt.vae_from.empty() && opt.vae_steps > 0) {
        if (opt.vae_batch < 2 || !CpuPairRunner::available())
            throw Error("train-demo: --vae-batch-halves needs a --vae-batch of 2 or more, 2 or more threads (--threads) "
                        "and libtorch's OpenMP runtime (and KTO_CPU_PAIRS not 0)");
        if (opt.vae_palette_weight > 0)
            throw Error("train-demo: --vae-batch-halves does not take --vae-palette-weight; leave one of them out");
    }
    if (opt.checkpoint_every < 0) throw Error("train-demo: --checkpoint-every must be >= 0 (0: no checkpoints)");
    // An interrupted run's checkpoint: continued with resume, never overwritten without it.
    std::optional<RunCheckpoint> resumed;
    if (const std::optional<fs::path> found = complete_checkpoint_folder(opt.out_dir)) {
        if (!opt.resume) {
            const DemoCheckpointInfo i = checkpoint_info(*found, read_checkpoint_state(*found));
            throw Error("train-demo: " + opt.out_dir + " holds the checkpoint of an interrupted run (" +
                        demo_checkpoint_place(i) + "): add --resume to continue it with the options it was started with, or delete " +
                        found->string() + " to start over");
        }
        resumed = read_run_checkpoint(*found, opt);
    } else if (opt.resume) {
        throw Error("train-demo --resume: " + opt.out_dir + " holds no checkpoint to continue (no " +
                    checkpoint_folder(opt.out_dir).string() + "/state.json); leave --resume out to start a run");
    }
    const CheckpointWriter checkpoints{opt.out_dir, demo_recipe_json(opt)};
    const double elapsed_before = resumed ? resumed->info.elapsed_s : 0.0;
    torch::manual_seed(opt.seed);
    const auto t0 = Clock::now();
    auto elapsed = [&] { return elapsed_before + seconds_since(t0); };
    auto keep_going = [&](const std::string& phase, int step, int total, double loss, double attention_loss) {
        return !progress || progress({phase, step, total, loss, elapsed(), attention_loss});
    };
    auto report = [&](const std::string& phase, int step, int total, double loss, double attention_loss = 0) {
        if (!keep_going(phase, step, total, loss, attention_loss)) throw Cancelled();
    };
    // At the end of a step of a phase with checkpoints: reports it, and writes a checkpoint (`save`) every
    // checkpoint_every steps, at the phase's end, and before the run stops when `progress` cancels it.
    auto report_step = [&](const std::string& phase, int step, int total, double loss, double attention_loss,
                           const std::function<void()>& save) {
        const bool go = keep_going(phase, step, total, loss, attention_loss);
        if (opt.checkpoint_every > 0 && (!go || step % opt.checkpoint_every == 0 || step == total)) save();
        if (!go) throw Cancelled();
    };
    // The phases after the folder is written: the decoder refinement, the alignment rounds. Each starts from
    // a checkpoint that keeps the folder file it rewrites; the checkpoint goes when the run is complete.
    auto finish = [&](int stage_done) {
        if (opt.decoder_steps > 0 && stage_done < kSavedStage + 1) {
            if (opt.checkpoint_every > 0)
                checkpoints.write("saved", 0, 0, elapsed(), {}, {}, nullptr, "vae/diffusion_pytorch_model.safetensors");
            refine_demo_decoder(decoder_refinement(opt), progress);  // on the fp16 weights just written
        }
        if (opt.align_rounds > 0) {
            if (opt.checkpoint_every > 0)
                checkpoints.write("refined", 0, 0, elapsed(), {}, {}, nullptr,
                                  "unet/diffusion_pytorch_model.safetensors");
            align_demo_model(demo_alignment(opt), progress);
        }
        checkpoints.remove();
    };
    if (resumed && resumed->stage() >= kSavedStage) {
        // The folder is written: put back the file the cut-short phase was rewriting, and go on from there.
        const std::string file = resumed->state.value("folder_file", "");
        if (!fs::exists(fs::path(opt.out_dir) / "model_index.json") || file.empty() ||
            !fs::exists(fs::path(resumed->info.folder) / "folder-file"))
            throw Error("train-demo --resume: " + resumed->info.folder + " says the folder was written, but " +
                        opt.out_dir + " has no model_index.json or the checkpoint lacks its folder-file; delete " +
                        resumed->info.folder + " and start the run over");
        const fs::path target = fs::path(opt.out_dir) / file, tmp = target.string() + ".resume";
        fs::copy_file(fs::path(resumed->info.folder) / "folder-file", tmp, fs::copy_options::overwrite_existing);
        fs::rename(tmp, target);
        finish(resumed->stage());
        return;
    }
    const fs::path out(opt.out_dir);
    fs::create_directories(out);

    // Tokenizer first: the text encoder's vocabulary size follows from it.
    const BpeVocab vocab = build_caption_vocab(opt.seed, 20000);
    write_clip_tokenizer(vocab, (out / "tokenizer").string());
    CLIPTokenizer tokenizer = CLIPTokenizer::from_folder((out / "tokenizer").string());

    const uint64_t scene_stream = opt.seed;  // training scenes; evaluation uses other seeds
    const torch::Device dev = opt.device;

    // ---- VAE: reconstruction (L1 + L2) plus a small KL term (or an existing demo model's VAE).
    int vae_width = opt.vae_width;
    AutoencoderKL vae(VAEConfig::from_json(demo_vae_config(1.0, vae_width)));
    if (!opt.vae_from.empty()) {
        const fs::path from = fs::path(opt.vae_from) / "vae";
        vae = load_vae(from.string());
        vae->to(dev, torch::kFloat32);
        vae_width = read_json_file((from / "config.json").string())["block_out_channels"][0].get<int>();
    } else if (resumed && resumed->stage() > 0) {
        vae->to(dev);
        resumed->load_module(*vae, "vae.");  // the phase is done: its VAE, as the checkpoint holds it
    } else {
        vae->to(dev);
        torch::optim::AdamW adam(vae->parameters(),
                                 torch::optim::AdamWOptions(opt.vae_lr).weight_decay(1e-4));
        auto gen = at::detail::createCPUGenerator(opt.seed + 1);
        double ema = 0;
        const std::unique_ptr<CpuPairRunner> pairs =
            opt.vae_batch_halves ? std::make_unique<CpuPairRunner>() : nullptr;
        const std::vector<torch::Tensor> vae_params = vae->parameters();
        int first_step = 0;
        if (resumed) {  // cut short in this phase
            resumed->load_module(*vae, "vae.");
            resumed->load_optimizer_and_generators(adam, gen);
            ema = resumed->state.value("loss", 0.0);
            first_step = resumed->info.step;
        }
        for (int step = first_step; step < opt.vae_steps; ++step) {
            std::vector<Scene> scenes;
            for (int i = 0; i < opt.vae_batch; ++i)
                scenes.push_back(scene_for_index(scene_stream + 1, uint64_t(step) * opt.vae_batch + i));
            const torch::Tensor x = render_batch(scenes).to(dev);
            adam.zero_grad();
            double now = 0;
            if (pairs) {
                // Two half-batches side by side. Every draw and every normaliser is the whole batch's: the
                // posterior noise (what sample_latents draws), the shape weights' sum, the KL term's count;
                // each half's loss is its share, so the two gradients add up to the whole batch's.
                const int64_t batch = x.size(0), mid = batch / 2;
                const VAEConfig& vc = vae->config();
                const int64_t down = int64_t(1) << (vc.block_out_channels.size() - 1);
                const torch::Tensor eps = randn_on_cpu({batch, vc.latent_channels, x.size(2) / down, x.size(3) / down},
                                                       &gen, dev, torch::kFloat32);
                const torch::Tensor weights = opt.vae_shape_weight > 0
                                                  ? (1.0 + opt.vae_shape_weight * shape_mask(scenes, x)).expand_as(x)
                                                  : torch::ones_like(x);
                const double weight_total = weights.sum().item<double>();
                std::array<torch::Tensor, 2> part;
                backward_halves_side_by_side(*pairs, vae_params, [&](int k) {
                    const int64_t lo = k == 0 ? 0 : mid, hi = k == 0 ? mid : batch;
                    const torch::Tensor xk = x.slice(0, lo, hi);
                    const LatentDist dk = vae->encode(xk);
                    const torch::Tensor zk = dk.mean + dk.std() * eps.slice(0, lo, hi);
                    const torch::Tensor yk = vae->decode(zk);
                    const torch::Tensor errk = (yk - xk).abs() + (yk - xk).pow(2);
                    const torch::Tensor klk =
                        0.5 * (dk.mean.pow(2) + dk.logvar.exp() - 1.0 - dk.logvar).sum() / double(eps.numel());
                    part[k] = (errk * weights.slice(0, lo, hi)).sum() / weight_total + opt.vae_kl_weight * klk;
                    return part[k];
                });
                now = part[0].item<double>() + part[1].item<double>();
            } else {
                const LatentDist d = vae->encode(x);
                const torch::Tensor z = sample_latents(d, gen);
                const torch::Tensor y = vae->decode(z);
                const torch::Tensor kl = 0.5 * (d.mean.pow(2) + d.logvar.exp() - 1.0 - d.logvar).mean();
                const torch::Tensor err = (y - x).abs() + (y - x).pow(2);
                const torch::Tensor rec =
                    opt.vae_shape_weight > 0 ? shape_weighted_mean(err, shape_mask(scenes, x), opt.vae_shape_weight)
                                             : err.mean();
                torch::Tensor loss = rec + opt.vae_kl_weight * kl;
                if (opt.vae_palette_weight > 0) {
                    const auto [target, cells] = demo_palette_targets(x, opt.vae_palette_radius);
                    const torch::Tensor miss = ((d.mean - target).pow(2) * cells).sum() /
                                               (cells.sum() * double(target.size(1))).clamp_min(1.0);
                    loss = loss + opt.vae_palette_weight * miss;
                }
                loss.backward();
                now = loss.item<double>();
            }
            torch::nn::utils::clip_grad_norm_(vae_params, 1.0);
            // Cosine decay keeps the last steps gentle.
            const double lr = opt.vae_lr * 0.5 * (1.0 + std::cos(M_PI * step / std::max(1, opt.vae_steps)));
            for (auto& g : adam.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
            adam.step();
            ema = step == 0 ? now : 0.98 * ema + 0.02 * now;
            report_step("vae", step + 1, opt.vae_steps, ema, 0, [&] {
                checkpoints.write("vae", step + 1, opt.vae_steps, elapsed(), {{"loss", ema}},
                                  with_generators(fp32_parameters(*vae, "vae."), gen), &adam);
            });
        }
    }
    vae->eval();

    // ---- Latent cache: encode the UNet training scenes once; scaling factor = 1 / latent std.
    std::vector<Scene> cache_scenes;
    SceneOptions cache_scene_options;
    cache_scene_options.two_shape_probability = opt.two_shape_share;
    cache_scene_options.reading_order = opt.reading_order;
    torch::Tensor latents;
    torch::Tensor latent_masks;  // [N,1,16,16]: share of shape pixels under each latent cell
    {
        torch::NoGradGuard no_grad;
        auto gen = at::detail::createCPUGenerator(opt.seed + 2);
        std::vector<torch::Tensor> parts, masks;
        const int chunk = 64;
        for (int i = 0; i < opt.cache_images; i += chunk) {
            std::vector<Scene> scenes;
            for (int k = i; k < std::min(opt.cache_images, i + chunk); ++k) {
                cache_scenes.push_back(scene_for_index(scene_stream + 2, uint64_t(k), cache_scene_options));
                scenes.push_back(cache_scenes.back());
            }
            const torch::Tensor x = render_batch(scenes).to(dev);
            parts.push_back(sample_latents(vae->encode(x), gen));
            masks.push_back(torch::avg_pool2d(shape_mask(scenes, x), kImageSize / kLatentSize));
            report("latents", int(cache_scenes.size()), opt.cache_images, 0);
        }
        latents = torch::cat(parts);
        latent_masks = torch::cat(masks);
    }
    // A reused VAE keeps its folder's factor: a UNet started from that folder (--init-from) learned
    // latents at that scale, and the factor belongs to the autoencoder, not to this run's scenes.
    const double scaling_factor = opt.vae_from.empty() ? 1.0 / latents.std().item<double>() : vae->scaling_factor();
    latents = latents * scaling_factor;

    // ---- Text encoder + UNet together: v (or epsilon) loss with offset noise, 10% empty captions.
    nlohmann::json text_cfg_json = demo_text_encoder_config(int64_t(vocab.tokens.size()), opt.text_width, opt.text_layers);
    CLIPTextModel text(CLIPTextConfig::from_json(text_cfg_json));
    nlohmann::json unet_cfg_json = demo_unet_config(opt.unet_channels, opt.unet_layers, opt.unet_plain_levels,
                                                    opt.unet_heads, opt.text_width);
    UNet2DConditionModel unet(UNetConfig::from_json(unet_cfg_json));
    if (!opt.init_from.empty()) {
        // The folder's own configs replace the UNet and text encoder options. Its tokenizer must be this run's, so
        // that token ids mean what they meant when the folder was trained.
        const fs::path from(opt.init_from);
        auto slurp = [](const fs::path& f) {
            std::ifstream in(f, std::ios::binary);
            return std::string(std::istreambuf_iterator<char>(in), {});
        };
        for (const char* f : {"vocab.json", "merges.txt"})
            if (slurp(from / "tokenizer" / f) != slurp(out / "tokenizer" / f))
                throw Error("train-demo: --init-from " + opt.init_from + ": its tokenizer/" + f +
                            " differs from the caption vocabulary of seed " + std::to_string(opt.seed) +
                            " (train with the seed the folder was made with)");
        text_cfg_json = read_json_file((from / "text_encoder" / "config.json").string());
        unet_cfg_json = read_json_file((from / "unet" / "config.json").string());
        text = load_text_encoder(from.string(), dev, torch::kFloat32);
        unet = load_unet((from / "unet").string(), dev, torch::kFloat32);
        text->train();
        unet->train();
        for (auto& p : text->parameters()) p.set_requires_grad(true);
        for (auto& p : unet->parameters()) p.set_requires_grad(true);
    }
    text->to(dev);
    unet->to(dev);
    std::vector<torch::Tensor> params = unet->parameters();
    for (auto& p : text->parameters()) params.push_back(p);
    // With zero terminal SNR, the table the saved scheduler config gives at sampling time (the
    // app's own DDIM built from it), so training and sampling agree on every timestep.
    const torch::Tensor acp =
        (opt.zero_terminal_snr
             ? make_scheduler("ddim", SchedulerConfig::from_json(demo_scheduler_config(opt.prediction_type, true),
                                                                 "demo scheduler"))
                   ->alphas_cumprod()
                   .clone()
             : sd_alphas_cumprod())
            .to(dev);
    // One run of text encoder + UNet training: `steps` steps from the weights as they are, a fresh
    // AdamW and EMA, the LR warmed up linearly and then cosine-decayed from `lr` to `lr * lr_floor`;
    // the EMA weights replace the trained ones at the end. Every run draws the same batch and noise
    // streams (as a new train-demo --init-from run does).
    auto train_text_unet = [&](const std::string& phase, int steps, double lr_peak, double lr_floor) {
        torch::optim::AdamW adam(params, torch::optim::AdamWOptions(lr_peak).weight_decay(1e-2));
        // Exponential moving average of the weights (what is saved): smoother samples than the
        // last optimiser step. Decay warms up as min(ema_decay, (1 + step) / (10 + step)).
        std::vector<torch::Tensor> ema_params;
        {
            torch::NoGradGuard no_grad;
            for (const auto& p : params) ema_params.push_back(p.detach().clone());
        }
        auto gen = at::detail::createCPUGenerator(opt.seed + 3);
        Rng rng(opt.seed, 3);
        double ema = 0;
        const int warmup = std::min(200, std::max(1, steps / 10));
        const bool attend = opt.attention_loss_weight > 0;
        AttentionProbe attention_maps;
        if (attend) unet->set_attention_probe(&attention_maps);
        double attention_ema = 0;
        const std::unique_ptr<CpuPairRunner> pairs =
            opt.unet_batch_halves ? std::make_unique<CpuPairRunner>() : nullptr;
        int first_step = 0;
        if (resumed && resumed->info.phase == phase) {  // cut short in this phase
            for (size_t i = 0; i < params.size(); ++i) {
                resumed->load_into(params[i], "param." + std::to_string(i));
                resumed->load_into(ema_params[i], "ema." + std::to_string(i));
            }
            resumed->load_optimizer_and_generators(adam, gen);
            try {
                rng.set_state({resumed->state.at("rng_state").get<uint64_t>(), resumed->state.at("rng_inc").get<uint64_t>()});
            } catch (const nlohmann::json::exception& e) {
                throw Error(resumed->info.folder + "/state.json: " + e.what());
            }
            ema = resumed->state.value("loss", 0.0);
            attention_ema = resumed->state.value("attention_loss", 0.0);
            first_step = resumed->info.step;
        }
        for (int step = first_step; step < steps; ++step) {
            std::vector<int64_t> idx;
            std::vector<std::string> captions;
            std::vector<Scene> batch_scenes;
            std::vector<std::optional<PromptRequest>> requests;
            for (int i = 0; i < opt.unet_batch; ++i) {
                const uint32_t k = rng.below(uint32_t(cache_scenes.size()));
                idx.push_back(k);
                // sample_caption's draws exactly, keeping the request for the attention loss.
                if (rng.chance(opt.caption_dropout)) {
                    captions.emplace_back();
                    requests.emplace_back();
                } else {
                    requests.push_back(sample_request(cache_scenes[k], rng));
                    captions.push_back(format_caption(*requests.back()));
                }
                if (attend) batch_scenes.push_back(cache_scenes[k]);
            }
            const torch::Tensor rows = torch::tensor(idx).to(dev);
            const torch::Tensor x0 = latents.index_select(0, rows);
            const torch::Tensor t = torch::randint(0, kTrainTimesteps, {opt.unet_batch}, gen, torch::kInt64).to(dev);
            torch::Tensor noise = torch::randn(x0.sizes(), gen);
            if (opt.offset_noise > 0)
                noise = noise + opt.offset_noise * torch::randn({x0.size(0), x0.size(1), 1, 1}, gen);
            noise = noise.to(dev);
            const torch::Tensor a = acp.index_select(0, t).view({-1, 1, 1, 1});
            const torch::Tensor xt = a.sqrt() * x0 + (1.0 - a).sqrt() * noise;
            const TokenizedPrompts tokens = tokenizer.encode(captions);
            if (attend) require_one_token_per_word(captions, tokens);
            const torch::Tensor target =
                v_prediction ? a.sqrt() * noise - (1.0 - a).sqrt() * x0 : noise;
            const torch::Tensor masks = latent_masks.index_select(0, rows);
            const int64_t batch = opt.unet_batch;
            // What a half's losses are shares of (with pairs): the whole batch's loss weight, as
            // shape_weighted_mean(err, masks, w) = sum(err * weights) / sum(weights) sums it, and its triple count.
            const torch::Tensor weights = 1.0 + opt.unet_shape_weight * masks;
            const double weight_total = !pairs                        ? 0.0
                                        : opt.unet_shape_weight > 0 ? weights.expand(x0.sizes()).sum().item<double>()
                                                                    : double(x0.numel());
            const int64_t batch_triples = pairs && attend ? shape_token_attention_triples(requests, attention_words) : 0;
            // The diffusion and attention losses of rows [lo, hi): for the whole batch the plain means; for a
            // part, its share of them (the part's weighted sums over the whole batch's weight and triple counts),
            // so that the parts' losses, and so their gradients, add up to the whole batch's.
            auto losses_of_rows = [&](int64_t lo, int64_t hi, AttentionProbe& maps) {
                const bool whole = lo == 0 && hi == batch;
                auto rows_of = [&](const torch::Tensor& x) { return whole ? x : x.slice(0, lo, hi); };
                const torch::Tensor ctx = text->forward(rows_of(tokens.input_ids).to(dev)).last_hidden_state;
                torch::Tensor pred;
                {
                    AutocastScope autocast(opt.mixed_precision_bf16 && dev.is_cpu(), torch::kBFloat16, /*cpu=*/true);
                    pred = unet->forward(rows_of(xt), rows_of(t), ctx).to(torch::kFloat32);
                }
                torch::Tensor err = (pred - rows_of(target)).pow(2);
                if (opt.min_snr_gamma > 0) {
                    const torch::Tensor snr = rows_of(a) / (1.0 - rows_of(a));
                    err = err * (snr.clamp_max(opt.min_snr_gamma) / (v_prediction ? snr + 1.0 : snr));
                }
                std::pair<torch::Tensor, torch::Tensor> out;
                if (whole) {
                    out.first = shape_weighted_mean(err, masks, opt.unet_shape_weight);
                } else {
                    const torch::Tensor sum = opt.unet_shape_weight > 0 ? (err * rows_of(weights)).sum() : err.sum();
                    out.first = sum / weight_total;
                }
                if (attend) {
                    if (whole) {
                        out.second = shape_token_attention_loss(maps, batch_scenes, requests, attention_words);
                    } else {
                        const std::vector<Scene> part_scenes(batch_scenes.begin() + lo, batch_scenes.begin() + hi);
                        const std::vector<std::optional<PromptRequest>> part_requests(requests.begin() + lo,
                                                                                       requests.begin() + hi);
                        out.second =
                            shape_token_attention_loss(maps, part_scenes, part_requests, attention_words, batch_triples);
                    }
                }
                return out;
            };
            adam.zero_grad();
            torch::Tensor loss, attention_loss;
            if (!pairs) {
                attention_maps.clear();
                std::tie(loss, attention_loss) = losses_of_rows(0, batch, attention_maps);
                (attend ? loss + opt.attention_loss_weight * attention_loss : loss).backward();
            } else {
                // Two half-batches side by side, each recording its own attention maps.
                std::array<std::pair<torch::Tensor, torch::Tensor>, 2> part;
                backward_halves_side_by_side(*pairs, params, [&](int k) {
                    AttentionProbe maps;
                    struct ProbeScope {
                        explicit ProbeScope(AttentionProbe* p) { thread_attention_probe() = p; }
                        ~ProbeScope() { thread_attention_probe() = nullptr; }
                    } scope(&maps);
                    part[k] = k == 0 ? losses_of_rows(0, batch / 2, maps) : losses_of_rows(batch / 2, batch, maps);
                    return attend ? part[k].first + opt.attention_loss_weight * part[k].second : part[k].first;
                });
                loss = part[0].first.detach() + part[1].first.detach();
                if (attend) attention_loss = part[0].second.detach() + part[1].second.detach();
            }
            if (attend) {
                const double a_now = attention_loss.item<double>();
                attention_ema = step == 0 ? a_now : 0.98 * attention_ema + 0.02 * a_now;
            }
            torch::nn::utils::clip_grad_norm_(params, 1.0);
            const double warm = std::min(1.0, double(step + 1) / warmup);
            const double cosine = 0.5 * (1.0 + std::cos(M_PI * step / std::max(1, steps)));
            const double lr = lr_peak * warm * (lr_floor + (1.0 - lr_floor) * cosine);
            for (auto& g : adam.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
            adam.step();
            {
                torch::NoGradGuard no_grad;
                const double d = std::min(opt.ema_decay, (1.0 + step) / (10.0 + step));
                for (size_t i = 0; i < params.size(); ++i) ema_params[i].mul_(d).add_(params[i].detach(), 1.0 - d);
            }
            ema = step == 0 ? loss.item<double>() : 0.98 * ema + 0.02 * loss.item<double>();
            report_step(phase, step + 1, steps, ema, attention_ema, [&] {
                TensorMap t = fp32_parameters(*vae, "vae.");
                for (size_t i = 0; i < params.size(); ++i) {
                    t["param." + std::to_string(i)] = params[i].detach().to(torch::kCPU).contiguous();
                    t["ema." + std::to_string(i)] = ema_params[i].to(torch::kCPU).contiguous();
                }
                const Rng::State r = rng.state();
                checkpoints.write(phase, step + 1, steps, elapsed(),
                                  {{"loss", ema}, {"attention_loss", attention_ema}, {"rng_state", r.state},
                                   {"rng_inc", r.inc}},
                                  with_generators(std::move(t), gen), &adam);
            });
        }
        attention_maps.clear();
        unet->set_attention_probe(nullptr);
        torch::NoGradGuard no_grad;
        if (opt.ema_decay > 0)
            for (size_t i = 0; i < params.size(); ++i) params[i].copy_(ema_params[i]);
    };
    // A resumed run starts with the phase it was cut short in (whose checkpoint holds the weights).
    const int resume_stage = resumed ? resumed->stage() : 1;
    if (resume_stage <= 1) train_text_unet("unet", opt.unet_steps, opt.unet_lr, opt.unet_lr_floor);
    for (int round = 1; round <= opt.unet_rounds; ++round) {
        if (resume_stage > 1 + round) continue;
        if (resume_stage < 1 + round) {
            // The weights a saved folder would hold, as the round's --init-from equivalent loads them.
            torch::NoGradGuard no_grad;
            for (auto& p : params) p.copy_(p.to(torch::kHalf).to(p.scalar_type()));
        }
        train_text_unet("unet+" + std::to_string(round), opt.unet_round_steps, opt.unet_round_lr, 1.0);
    }

    // ---- Write the diffusers folder (fp16 weights).
    report("save", 0, 1, 0);
    write_text_file(out / "model_index.json", demo_model_index().dump(2) + "\n");
    fs::create_directories(out / "scheduler");
    write_text_file(out / "scheduler" / "scheduler_config.json", demo_scheduler_config(opt.prediction_type, opt.zero_terminal_snr).dump(2) + "\n");
    save_component(*vae, demo_vae_config(scaling_factor, vae_width), out / "vae", "diffusion_pytorch_model.safetensors");
    save_component(*unet, unet_cfg_json, out / "unet", "diffusion_pytorch_model.safetensors");
    save_component(*text, text_cfg_json, out / "text_encoder", "model.safetensors");
    report("save", 1, 1, 0);
    finish(kSavedStage);
}

DemoAlignOptions demo_alignment(const DemoTrainOptions& opt) {
    DemoAlignOptions a;
    a.model_dir = opt.out_dir;
    a.rounds = opt.align_rounds;
    a.prompts = opt.align_prompts;
    a.steps = opt.align_steps;
    a.lr = opt.align_lr;
    a.beta = opt.align_beta;
    a.objective = opt.align_objective;
    a.judge_size = opt.align_judge_size;
    a.judge_position = opt.align_judge_position;
    a.seed = opt.seed;
    a.threads = opt.threads;
    return a;
}

DemoDecoderOptions decoder_refinement(const DemoTrainOptions& opt) {
    DemoDecoderOptions d;
    d.model_dir = opt.out_dir;
    d.steps = opt.decoder_steps;
    d.shape_weight = opt.decoder_shape_weight;
    d.gain_jitter = opt.decoder_gain_jitter;
    d.generated_share = opt.decoder_generated_share;
    d.generated_pool = opt.decoder_generated_pool;
    d.reading_order = opt.reading_order;
    d.generated_strength = opt.decoder_generated_strength;
    d.generated_loss_pool = opt.decoder_generated_loss_pool;
    d.batch = opt.vae_batch;
    d.validation_prompts = opt.decoder_validation_prompts;
    d.seed = opt.seed;
    d.threads = opt.threads;
    return d;
}

DemoDecoderResult refine_demo_decoder(const DemoDecoderOptions& opt, const std::function<bool(const DemoProgress&)>& progress) {
    check_decoder_options(opt);
    configure_torch_threads(opt.threads);
    const auto t0 = Clock::now();
    auto report = [&](int step, double loss) {
        if (progress && !progress({"decoder", step, opt.steps, loss, seconds_since(t0)})) throw Cancelled();
    };
    const fs::path vae_dir = fs::path(opt.model_dir) / "vae";
    const fs::path weights_file = vae_dir / "diffusion_pytorch_model.safetensors";
    DemoDecoderResult result;
    // Validation: the folder's generations scored with its decoder as it is, and again after training.
    int checked = 0;
    auto validate = [&] {
        DemoEvalOptions e;
        e.model_dir = opt.model_dir;
        e.prompts = opt.validation_prompts;
        e.seed = opt.validation_seed;
        e.speed_runs = 0;
        e.threads = opt.threads;
        e.reading_order = opt.reading_order;
        const DemoEvalResult r = evaluate_demo_model(e, [&](int done, int) {
            if (progress && !progress({"decoder-check", checked + done, 2 * opt.validation_prompts, 0.0, seconds_since(t0)}))
                throw Cancelled();
        });
        checked += opt.validation_prompts;
        return r.colour_right + r.background_right + r.class_right;
    };
    std::vector<uint8_t> weights_before;
    if (opt.validation_prompts > 0) {
        weights_before = read_file_bytes(weights_file.string());
        result.validated = true;
        result.score_before = validate();
    }
    AutoencoderKL vae = load_vae(vae_dir.string());
    const nlohmann::json config = read_json_file((vae_dir / "config.json").string());
    std::vector<torch::Tensor> trained;
    for (auto& p : vae->parameters()) p.set_requires_grad(false);
    for (auto* m : {static_cast<torch::nn::Module*>(vae->decoder.get()), static_cast<torch::nn::Module*>(vae->post_quant_conv.get())})
        for (auto& p : m->parameters()) {
            p.set_requires_grad(true);
            trained.push_back(p);
        }
    torch::manual_seed(opt.seed + 5);
    torch::optim::AdamW adam(trained, torch::optim::AdamWOptions(opt.lr).weight_decay(1e-4));
    auto gen = at::detail::createCPUGenerator(opt.seed + 5);
    const uint64_t stream = opt.seed + 5;  // scenes of their own, as every phase
    const int generated_per_batch =
        opt.generated_share > 0 ? std::max(1, int(std::lround(opt.batch * opt.generated_share))) : 0;
    std::vector<Scene> pool_scenes;
    torch::Tensor pool_latents;  // [N,4,16,16] unscaled, as the decoder reads them
    if (generated_per_batch > 0) {
        torch::NoGradGuard ng;
        ModelBundle bundle = ModelBundle::load(opt.model_dir);
        const double sf = vae->scaling_factor();
        auto pool_gen = at::detail::createCPUGenerator(opt.seed + 6);
        CaptionOptions named;
        named.p_colour = 1.0;
        named.p_background = 1.0;
        Rng caption_rng(opt.seed + 6, 1);
        SceneOptions pool_scene_options;
        pool_scene_options.reading_order = opt.reading_order;
        std::vector<torch::Tensor> parts;
        constexpr int kChunk = 16;
        for (int i = 0; i < opt.generated_pool; i += kChunk) {
            std::vector<Scene> scenes;
            GenerateOptions g;  // the folder's sampler (DDIM), 20 steps, entered at the strength
            for (int k = i; k < std::min(opt.generated_pool, i + kChunk); ++k) {
                scenes.push_back(scene_for_index(opt.seed + 6, uint64_t(k), pool_scene_options));
                g.prompts.push_back(sample_caption(scenes.back(), caption_rng, named));
            }
            g.steps = 20;
            g.cfg = opt.generated_guidance;
            g.width = g.height = kImageSize;
            g.image_latents = vae->encode(render_batch(scenes)).mean * sf;
            g.strength = opt.generated_strength;
            g.init_latents = torch::randn(g.image_latents.sizes(), pool_gen);
            g.decode = false;
            parts.push_back(generate(bundle, g).latents / sf);
            pool_scenes.insert(pool_scenes.end(), scenes.begin(), scenes.end());
            if (progress && !progress({"decoder-pool", int(pool_scenes.size()), opt.generated_pool, 0.0, seconds_since(t0)}))
                throw Cancelled();
        }
        pool_latents = torch::cat(parts);
    }
    double ema = 0;
    for (int step = 0; step < opt.steps; ++step) {
        std::vector<Scene> scenes;
        for (int i = 0; i < opt.batch - generated_per_batch; ++i)
            scenes.push_back(scene_for_index(stream, uint64_t(step) * opt.batch + i));
        torch::Tensor z;
        if (!scenes.empty()) {
            torch::NoGradGuard ng;
            z = vae->encode(render_batch(scenes)).sample(gen);
            if (opt.gain_jitter > 0)
                z = push_from_background(z, 1.0 + opt.gain_jitter * torch::rand({z.size(0), 1, 1, 1}, gen));
        }
        if (generated_per_batch > 0) {
            std::vector<int64_t> rows;
            for (int i = 0; i < generated_per_batch; ++i) {
                const int64_t k = (int64_t(step) * generated_per_batch + i) % pool_latents.size(0);
                rows.push_back(k);
                scenes.push_back(pool_scenes[size_t(k)]);
            }
            const torch::Tensor zg = pool_latents.index_select(0, torch::tensor(rows));
            z = z.defined() ? torch::cat({z, zg}) : zg;
        }
        const torch::Tensor x = render_batch(scenes);
        const torch::Tensor y = vae->decode(z);
        const torch::Tensor mask = shape_mask(scenes, x);
        auto weighted_error = [&](torch::Tensor yy, torch::Tensor xx, torch::Tensor mm, int pool) {
            if (pool > 1) {
                yy = torch::avg_pool2d(yy, pool), xx = torch::avg_pool2d(xx, pool), mm = torch::avg_pool2d(mm, pool);
            }
            return shape_weighted_mean((yy - xx).abs() + (yy - xx).pow(2), mm, opt.shape_weight);
        };
        torch::Tensor loss;
        const int64_t fresh = int64_t(scenes.size()) - generated_per_batch;
        if (generated_per_batch == 0 || opt.generated_loss_pool <= 1) {
            loss = weighted_error(y, x, mask, 1);
        } else {
            // The re-drawn scene can sit a few pixels off its source: compare those rows' colours
            // over pool x pool blocks, so that they teach colour, not edges.
            const torch::Tensor g = weighted_error(y.narrow(0, fresh, generated_per_batch), x.narrow(0, fresh, generated_per_batch),
                                                   mask.narrow(0, fresh, generated_per_batch), opt.generated_loss_pool);
            loss = fresh == 0 ? g
                              : (double(fresh) * weighted_error(y.narrow(0, 0, fresh), x.narrow(0, 0, fresh), mask.narrow(0, 0, fresh), 1) +
                                 double(generated_per_batch) * g) / double(fresh + generated_per_batch);
        }
        adam.zero_grad();
        loss.backward();
        torch::nn::utils::clip_grad_norm_(trained, 1.0);
        const double lr = opt.lr * 0.5 * (1.0 + std::cos(M_PI * step / std::max(1, opt.steps)));
        for (auto& g : adam.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
        adam.step();
        ema = step == 0 ? loss.item<double>() : 0.98 * ema + 0.02 * loss.item<double>();
        report(step + 1, ema);
    }
    save_component(*vae, config, vae_dir, weights_file.filename().string());
    if (result.validated) {
        vae = nullptr;  // the evaluation loads the folder's VAE anew
        try {
            result.score_after = validate();
        } catch (...) {
            // Cancelled or failed before the refined decoder proved itself: the folder's decoder stays.
            write_file_atomic(weights_file.string(), weights_before);
            throw;
        }
        result.kept = result.score_after > result.score_before;
        if (!result.kept) write_file_atomic(weights_file.string(), weights_before);
        if (progress && !progress({result.kept ? "decoder-kept" : "decoder-undone", 1, 1, result.score_after,
                                   seconds_since(t0), result.score_before}))
            throw Cancelled();
    }
    return result;
}

namespace {

// The demo folder loaded for generation through the app's own text-to-image pipeline
// (core/pipeline: the folder's scheduler, DDIM with "leading" spacing, classifier-free guidance),
// so the evaluation measures what a user of `generate` gets. Each image starts from its own
// seed's noise, drawn as the pipeline draws a batch of one.
struct DemoBundle {
    ModelBundle bundle;

    DemoBundle(const std::string& dir, const torch::Device& device, torch::ScalarType dtype = torch::kFloat32)
        : bundle(ModelBundle::load(dir, on(device, dtype))) {}

    static ModelBundleOptions on(const torch::Device& device, torch::ScalarType dtype) {
        ModelBundleOptions o;
        o.device = device;
        o.dtype = dtype;
        return o;
    }

    torch::Tensor generate(const std::vector<std::string>& prompts, const std::vector<uint64_t>& seeds,
                           int steps, double guidance, double guidance_rescale = 0.0,
                           const std::string& sampler = {}) {
        std::vector<torch::Tensor> noise;
        for (uint64_t s : seeds) {
            auto g = at::detail::createCPUGenerator(s);
            noise.push_back(torch::randn({1, 4, kLatentSize, kLatentSize}, g));
        }
        GenerateOptions o;
        o.prompts = prompts;
        o.steps = steps;
        o.cfg = guidance;
        o.guidance_rescale = guidance_rescale;
        o.sampler = sampler;
        o.width = o.height = kImageSize;
        o.init_latents = torch::cat(noise);
        return kto::generate(bundle, o).images * 2.0 - 1.0;  // [0,1] -> [-1,1]
    }
};

// Held-out prompts and the scenes they were written from. Every prompt names the shape's colour
// and the background (what is measured); size and position are named half of the time. Scenes
// come from their own seed stream.
std::vector<std::string> eval_prompts(uint64_t seed, int n, bool reading_order, std::vector<Scene>* scenes = nullptr) {
    CaptionOptions o;
    o.p_colour = 1.0;
    o.p_background = 1.0;
    SceneOptions so;
    so.reading_order = reading_order;
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
        Rng rng(seed ^ 0xE7A1ULL, uint64_t(i));
        const Scene scene = sample_scene(rng, so);
        out.push_back(sample_caption(scene, rng, o));
        if (scenes) scenes->push_back(scene);
    }
    return out;
}

void write_grid_png(const std::string& path, const torch::Tensor& images, int cols, int rows) {
    const int64_t n = std::min<int64_t>(images.size(0), int64_t(cols) * rows);
    const int pad = 2, cell = kImageSize + pad;
    const int w = cols * cell + pad, h = rows * cell + pad;
    std::vector<uint8_t> px(size_t(w) * h * 3, 40);
    for (int64_t k = 0; k < n; ++k) {
        const Image img = tensor_to_image(images[k]);
        const int ox = pad + int(k % cols) * cell, oy = pad + int(k / cols) * cell;
        for (int y = 0; y < kImageSize; ++y)
            std::copy_n(&img.rgb[size_t(y) * kImageSize * 3], kImageSize * 3,
                        &px[(size_t(oy + y) * w + ox) * 3]);
    }
    write_rgb_png(path, px.data(), w, h);
}

}  // namespace

torch::Tensor demo_generate(const std::string& model_dir, const std::vector<std::string>& prompts,
                            const std::vector<uint64_t>& seeds, int steps, double guidance) {
    if (prompts.size() != seeds.size() || prompts.empty())
        throw Error("demo_generate: need one seed per prompt and at least one prompt");
    if (steps <= 0 || steps > kTrainTimesteps) throw Error("demo_generate: steps must be in 1..1000");
    DemoBundle bundle(model_dir, torch::kCPU);
    return bundle.generate(prompts, seeds, steps, guidance);
}

torch::Tensor demo_colour_latent_distances(const std::string& model_dir, Colour background) {
    torch::NoGradGuard no_grad;
    AutoencoderKL vae = load_vae((fs::path(model_dir) / "vae").string());
    std::vector<torch::Tensor> z;
    for (Colour c : kAllColours) {
        Scene scene;
        scene.background = background;
        Shape shape;
        shape.colour = c;
        shape.size = Size::Large;
        shape.extent = nominal_extent(Size::Large);
        scene.shapes.push_back(shape);
        z.push_back(vae->encode(image_to_tensor(render(scene)).unsqueeze(0)).mean * vae->scaling_factor());
    }
    torch::Tensor d = torch::zeros({int64_t(z.size()), int64_t(z.size())}, torch::kFloat64);
    for (size_t i = 0; i < z.size(); ++i)
        for (size_t j = 0; j < z.size(); ++j)
            d[int64_t(i)][int64_t(j)] = (z[i] - z[j]).pow(2).mean().sqrt().item<double>();
    return d;
}

DemoEvalResult evaluate_demo_model(const DemoEvalOptions& opt,
                                   const std::function<void(int, int)>& progress) {
    if (opt.prompts <= 0 || opt.batch <= 0) throw Error("demo-eval: prompts and batch must be positive");
    if (!(opt.latent_gain > 0)) throw Error("demo-eval: --latent-gain must be > 0");
    if (opt.latent_gain != 1.0 && !opt.reconstruct)
        throw Error("demo-eval: --latent-gain applies to the VAE round trip: add --reconstruct");
    if (!(opt.latent_blur >= 0 && opt.latent_blur <= 1)) throw Error("demo-eval: --latent-blur must be in [0, 1]");
    if (opt.latent_blur != 0 && !opt.reconstruct)
        throw Error("demo-eval: --latent-blur applies to the VAE round trip: add --reconstruct");
    configure_torch_threads(opt.threads);
    require_device(opt.device, "demo-eval");
    DemoBundle bundle(opt.model_dir, opt.device, opt.dtype);
    DemoEvalResult r;
    std::vector<Scene> scenes;
    r.prompts = eval_prompts(opt.seed, opt.prompts, opt.reading_order, &scenes);
    AttributeScore colour, background, cls, size, position;
    std::map<std::string, int> misses;
    std::vector<torch::Tensor> images;
    for (int i = 0; i < opt.prompts; i += opt.batch) {
        const int end = std::min(opt.prompts, i + opt.batch);
        std::vector<std::string> prompts(r.prompts.begin() + i, r.prompts.begin() + end);
        std::vector<uint64_t> seeds;
        for (int k = i; k < end; ++k) seeds.push_back(opt.seed * 1000 + uint64_t(k));
        torch::Tensor batch;
        if (opt.reconstruct) {
            // The prompts' own scenes through the VAE (posterior mean) and back: the ceiling the
            // autoencoder sets on what generation can score.
            torch::NoGradGuard no_grad;
            const std::vector<Scene> part(scenes.begin() + i, scenes.begin() + end);
            AutoencoderKL& vae = bundle.bundle.vae;
            torch::Tensor z = vae->encode(render_batch(part).to(bundle.bundle.device, bundle.bundle.dtype)).mean;
            if (opt.latent_gain != 1.0) z = push_from_background(z, torch::full({1}, opt.latent_gain, z.options()));
            if (opt.latent_blur != 0) z = blur_latents(z, torch::full({1}, opt.latent_blur, z.options()));
            batch = vae->decode(z)
                        .to(torch::kCPU, torch::kFloat32)
                        .clamp(-1.0, 1.0);
        } else {
            batch = bundle.generate(prompts, seeds, opt.steps, opt.guidance, opt.guidance_rescale, opt.sampler);
        }
        for (int k = 0; k < end - i; ++k) {
            SceneEstimate read = estimate_scene(tensor_to_image(batch[k]));
            const PromptRequest request = parse_caption(prompts[size_t(k)]);
            const Fidelity f = fidelity(read, request);
            for (size_t s = 0; s < request.shapes.size(); ++s) {
                const std::optional<Colour>& asked = request.shapes[s].colour;
                const int blob = f.matched[s];
                if (asked && (blob < 0 || read.shapes[size_t(blob)].colour != *asked))
                    ++misses[name(*asked) + " -> " + (blob < 0 ? "none" : name(read.shapes[size_t(blob)].colour))];
            }
            r.details.push_back({prompts[size_t(k)], seeds[size_t(k)], f, std::move(read)});
            colour.asked += f.colour.asked, colour.right += f.colour.right;
            background.asked += f.background.asked, background.right += f.background.right;
            cls.asked += f.cls.asked, cls.right += f.cls.right;
            size.asked += f.size.asked, size.right += f.size.right;
            position.asked += f.position.asked, position.right += f.position.right;
        }
        if (int(images.size()) * opt.batch < opt.grid_columns * opt.grid_rows) images.push_back(batch);
        if (progress) progress(end, opt.prompts);
    }
    r.images = opt.prompts;
    r.colour_misses.assign(misses.begin(), misses.end());
    std::stable_sort(r.colour_misses.begin(), r.colour_misses.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    r.colour_right = colour.rate();
    r.background_right = background.rate();
    r.class_right = cls.rate();
    r.size_right = size.rate();
    r.position_right = position.rate();
    if (!opt.grid_png.empty()) write_grid_png(opt.grid_png, torch::cat(images), opt.grid_columns, opt.grid_rows);
    if (opt.speed_runs > 0 && !opt.reconstruct) {
        std::vector<double> times;
        for (int k = 0; k < opt.speed_runs; ++k) {
            const auto t0 = Clock::now();
            bundle.generate({r.prompts[size_t(k) % r.prompts.size()]}, {uint64_t(k)}, opt.steps, opt.guidance,
                            opt.guidance_rescale, opt.sampler);
            times.push_back(seconds_since(t0));
        }
        std::sort(times.begin(), times.end());
        r.median_seconds_per_image = times[times.size() / 2];
    }
    return r;
}

std::vector<DemoAlignRound> align_demo_model(const DemoAlignOptions& opt,
                                             const std::function<bool(const DemoProgress&)>& progress) {
    const ObjectiveKind objective = check_align_options(opt);
    const fs::path model(opt.model_dir);
    if (!fs::exists(model / "unet" / "config.json"))
        throw Error("alignment: " + opt.model_dir + " is not a demo model folder (no unet/config.json)");
    configure_torch_threads(opt.threads);
    const fs::path work = opt.work_dir.empty() ? fs::path(opt.model_dir + ".align-work") : fs::path(opt.work_dir);
    // The default scratch folder goes when the call ends, also on an error or a cancel.
    struct RemoveWork {
        fs::path dir;
        ~RemoveWork() {
            std::error_code ec;
            if (!dir.empty()) fs::remove_all(dir, ec);
        }
    } remove_work{opt.work_dir.empty() ? work : fs::path()};
    const auto t0 = Clock::now();
    std::vector<DemoAlignRound> rounds;
    for (int round = 0; round < opt.rounds; ++round) {
        const auto r0 = Clock::now();
        const fs::path dir = work / ("round-" + std::to_string(round + 1));
        fs::remove_all(dir);
        fs::create_directories(dir / "images");
        // Prompts and noise of this round: a stream of their own (demo-eval's is seed 777).
        const uint64_t stream = (opt.seed ^ 0xA116ULL) * 1000003ULL + uint64_t(round);
        const std::vector<std::string> prompts = eval_prompts(stream, opt.prompts, false);
        std::vector<TrainRecord> records;
        DemoAlignRound stats;
        AttributeScore colour;
        {
            DemoBundle bundle(opt.model_dir, torch::kCPU);
            constexpr int kBatch = 8;
            for (int i = 0; i < opt.prompts; i += kBatch) {
                const int end = std::min(opt.prompts, i + kBatch);
                std::vector<std::string> part(prompts.begin() + i, prompts.begin() + end);
                std::vector<uint64_t> seeds;
                for (int k = i; k < end; ++k) seeds.push_back(stream * 7919ULL + uint64_t(k));
                const torch::Tensor images = bundle.generate(part, seeds, opt.sample_steps, opt.guidance);
                for (int k = 0; k < end - i; ++k) {
                    const Image img = tensor_to_image(images[k]);
                    const Fidelity f = fidelity(img, part[size_t(k)]);
                    const bool liked = f.right(opt.judge_size, opt.judge_position);
                    colour.asked += f.colour.asked, colour.right += f.colour.right;
                    const fs::path png = dir / "images" / (std::to_string(i + k) + ".png");
                    write_rgb_png(png.string(), img.rgb.data(), img.width, img.height);
                    records.push_back({png.string(), part[size_t(k)], liked});
                    stats.liked += liked ? 1 : 0;
                }
                if (progress && !progress({"align-render", end, opt.prompts, 0.0, seconds_since(t0)})) throw Cancelled();
            }
        }
        stats.images = opt.prompts;
        stats.colour_right = colour.rate();
        if (stats.liked == 0 || stats.liked == stats.images)
            throw Error("alignment round " + std::to_string(round + 1) + ": all " + std::to_string(stats.images) +
                        " images were " + (stats.liked ? "liked" : "disliked") +
                        "; KTO needs both (judge fewer attributes, or render more prompts)");

        TrainRequest req;
        req.model_dir = opt.model_dir;
        req.records = std::move(records);
        req.out_dir = (dir / "run").string();
        // The demo preset's data options: no mirroring (the captions name left and right) and, since
        // session 17, no caption dropout; session 12's figures (MODEL_CARD.md) had mirroring p=0.5 and
        // dropout 0.2.
        req.options = train_preset("demo");
        // fp32 on every machine, as the rest of the recipe (the preset picks bf16 where the CPU has
        // bf16 matrix units).
        req.options.mixed_precision = MixedPrecision::no;
        req.options.objective = objective;
        req.options.steps = opt.steps;
        req.options.batch_size = opt.batch;
        req.options.learning_rate = opt.lr;
        req.options.beta = opt.beta;
        req.options.seed = opt.seed + uint64_t(round);
        req.options.checkpoint_every = 0;
        req.options.preview_every = 0;
        req.options.cache_dir = (dir / "cache").string();
        bool cancelled = false;
        TrainCallbacks cb;
        TrainingJob* job_ptr = nullptr;
        cb.on_step = [&](const StepMetrics& m) {
            if (progress && !progress({"align-train", int(m.step), opt.steps, m.loss, seconds_since(t0)}) && job_ptr) {
                cancelled = true;
                job_ptr->cancel();
            }
        };
        TrainingJob job(req, cb);
        job_ptr = &job;
        const TrainResult res = job.run();
        if (cancelled || res.cancelled) throw Cancelled();
        if (res.final_checkpoint.empty()) throw Error("alignment: the training run wrote no checkpoint");
        UNet2DConditionModel tuned = load_unet((fs::path(res.final_checkpoint) / "unet").string());
        const nlohmann::json config = read_json_file((model / "unet" / "config.json").string());
        save_component(*tuned, config, model / "unet", "diffusion_pytorch_model.safetensors");
        stats.seconds = seconds_since(r0);
        rounds.push_back(stats);
    }
    return rounds;
}

}  // namespace kto
