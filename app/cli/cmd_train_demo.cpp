// `kto-studio-cli train-demo`: rebuild the built-in demo model from scratch (deterministic on a CPU).
// `kto-studio-cli demo-eval`: measure its prompt fidelity and speed with the shapes scorer.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include "app/cli/command.h"
#include "app/cli/duration_text.h"
#include "app/cli/sampling_options.h"
#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/train/demo_model.h"
#include "storage/dataset/csv.h"
#include "storage/store/workspace.h"

namespace {

// Ctrl-C during train-demo: the run writes a checkpoint at the end of the step and stops.
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_train_demo_sigint(int) { g_interrupted = 1; }

std::string yes_no(const kto::shapes::AttributeScore& s) {
    return s.asked == 0 ? "" : s.right == s.asked ? "1" : "0";
}

// What the scorer read: "blue background; red circle large left; ...", largest shape first.
std::string describe(const kto::shapes::SceneEstimate& read) {
    using kto::shapes::name;
    std::string out = name(read.background) + " background";
    for (const auto& s : read.shapes)
        out += "; " + name(s.colour) + " " + name(s.cls) + " " + name(s.size) + " " + name(s.position);
    return out;
}

// One row per generation, so a person can see which prompts fail and what came out instead.
void write_details(const std::string& path, const kto::DemoEvalResult& r) {
    std::string csv;
    kto::storage::append_csv_record(csv, {"index", "seed", "prompt", "colour_right", "background_right",
                                          "class_right", "size_right", "position_right", "count_right",
                                          "scorer_read"});
    for (size_t i = 0; i < r.details.size(); ++i) {
        const kto::DemoEvalImage& d = r.details[i];
        const kto::shapes::Fidelity& f = d.fidelity;
        kto::storage::append_csv_record(
            csv, {std::to_string(i), std::to_string(d.seed), d.prompt, yes_no(f.colour), yes_no(f.background),
                  yes_no(f.cls), yes_no(f.size), yes_no(f.position), yes_no(f.count), describe(d.read)});
    }
    kto::storage::write_file_atomically(path, csv);
}

// The decoder validation's decision, as a sentence.
void print_decoder_decision(const kto::DemoProgress& p) {
    std::fprintf(stderr, "decoder refinement %s: validation colour + background + class %.3f refined, %.3f before\n",
                 p.phase == "decoder-kept" ? "kept" : "undone (the decoder before generates as well or better)", p.loss,
                 p.attention_loss);
}

// The end of a progress line: what the estimate says is left, named by what it covers (the phase, the UNet
// phase and its rounds, the run); blanks over an earlier one at a phase's end or while nothing is known.
void print_time_left(const kto::DemoRunEta::Estimate& left, bool phase_end) {
    using Span = kto::DemoRunEta::Span;
    const char* what = left.span == Span::kRun              ? "run ends in"
                       : left.span == Span::kUnetAndRounds ? "UNet rounds end in"
                                                            : "phase ends in";
    if (!phase_end && left.seconds >= 0)
        std::fprintf(stderr, "  %s %-7s", what, kto::cli::duration_text(left.seconds).c_str());
    else
        std::fprintf(stderr, "%28s", "");
}

// Progress of a single-phase run (--refine-decoder-only, --align-only) on stderr: every 25th step
// and each phase's last, named by its phase ("decoder-pool", "decoder", "align-render", ...), with the
// time the phase has left.
struct PhaseProgress {
    kto::DemoRunEta eta{kto::DemoTrainOptions{}};
    bool operator()(const kto::DemoProgress& p) {
        if (p.phase == "decoder-kept" || p.phase == "decoder-undone") {
            print_decoder_decision(p);
            return true;
        }
        const kto::DemoRunEta::Estimate left = eta.update(p);
        if (p.step % 25 == 0 || p.step == p.total) {
            std::fprintf(stderr, "\r%-12s %6d/%-6d loss %.4f  %6.0f s", p.phase.c_str(), p.step, p.total, p.loss,
                         p.elapsed_s);
            print_time_left(left, p.step == p.total);
            if (p.step == p.total) std::fprintf(stderr, "\n");
            std::fflush(stderr);
        }
        return true;
    }
};

kto::cli::CommandRegistrar train_reg{
    {"train-demo", "Train the built-in demo model from scratch into a diffusers folder",
     [](CLI::App& sub) -> std::function<int()> {
         auto opt = std::make_shared<kto::DemoTrainOptions>();
         sub.add_option("--out", opt->out_dir, "Output folder (diffusers layout)")->required();
         sub.add_option("--vae-steps", opt->vae_steps, "VAE training steps")->capture_default_str();
         sub.add_option("--unet-steps", opt->unet_steps, "Text encoder + UNet training steps")
             ->capture_default_str();
         sub.add_option("--vae-width", opt->vae_width, "Channels of the VAE's first block (then x2, x4)")
             ->capture_default_str();
         sub.add_option("--vae-kl-weight", opt->vae_kl_weight, "Weight of the KL term in the VAE loss")
             ->capture_default_str();
         sub.add_option("--vae-palette-weight", opt->vae_palette_weight,
                        "Weight of the term pinning each plain palette colour's latent code to its own "
                        "vertex (colours equally far apart; 0: off)")
             ->capture_default_str();
         sub.add_option("--vae-palette-radius", opt->vae_palette_radius,
                        "Distance of each palette colour's code from the origin")
             ->capture_default_str();
         sub.add_option("--vae-shape-weight", opt->vae_shape_weight,
                        "Extra loss weight of shape pixels (not the background colour) in VAE training")
             ->capture_default_str();
         sub.add_option("--unet-shape-weight", opt->unet_shape_weight,
                        "Extra diffusion-loss weight of latent cells that hold a shape")
             ->capture_default_str();
         sub.add_option("--attention-loss-weight", opt->attention_loss_weight,
                        "Weight of token-level attention supervision (TokenCompose): each named shape's size, "
                        "colour and class tokens should draw the attention of the shape's own cells (0: off)")
             ->capture_default_str();
         auto precision = std::make_shared<std::string>("auto");
         sub.add_option("--mixed-precision", *precision,
                        "Text encoder + UNet phase on the CPU: no (fp32), bf16 (autocast; several times faster "
                        "convolutions where the CPU has AMX or AVX512-BF16) or auto (bf16 where the CPU has "
                        "them, unless KTO_CPU_DTYPE=fp32; else fp32)")
             ->check(CLI::IsMember({"auto", "no", "bf16"}))
             ->capture_default_str();
         sub.add_option("--attention-words", opt->attention_words,
                        "Which of each shape's words the attention loss supervises: a comma-separated list of "
                        "size, colour and class")
             ->capture_default_str();
         sub.add_option("--vae-lr", opt->vae_lr, "VAE learning rate (cosine decay to 0)")->capture_default_str();
         sub.add_option("--unet-lr", opt->unet_lr, "Text encoder + UNet peak learning rate")->capture_default_str();
         sub.add_option("--unet-lr-floor", opt->unet_lr_floor,
                        "Share of --unet-lr the cosine schedule ends at")
             ->capture_default_str();
         sub.add_option("--unet-rounds", opt->unet_rounds,
                        "Continuation rounds after the text encoder + UNet phase, each from the weights the one "
                        "before ended with (as saved, fp16), with a fresh optimizer and EMA (0: none)")
             ->capture_default_str();
         sub.add_option("--unet-round-steps", opt->unet_round_steps, "Steps of each continuation round")
             ->capture_default_str();
         sub.add_option("--unet-round-lr", opt->unet_round_lr,
                        "Constant learning rate of the continuation rounds (after a short warm-up)")
             ->capture_default_str();
         sub.add_option("--unet-channels", opt->unet_channels,
                        "UNet block_out_channels, one resolution level each (e.g. 48,96,96)")
             ->delimiter(',')
             ->capture_default_str();
         sub.add_option("--min-snr-gamma", opt->min_snr_gamma,
                        "Min-SNR-gamma weighting of the diffusion loss (0: off)")
             ->capture_default_str();
         sub.add_option("--unet-plain-levels", opt->unet_plain_levels,
                        "UNet levels without attention, from the highest resolution down")
             ->capture_default_str();
         sub.add_option("--unet-layers", opt->unet_layers, "UNet layers_per_block")->capture_default_str();
         sub.add_option("--unet-heads", opt->unet_heads,
                        "Attention heads of the UNet (attention_head_dim in its config)")
             ->capture_default_str();
         sub.add_option("--text-width", opt->text_width,
                        "Text encoder hidden size, a multiple of 16 (also the UNet's cross_attention_dim)")
             ->capture_default_str();
         sub.add_option("--text-layers", opt->text_layers, "Text encoder layers")->capture_default_str();
         sub.add_option("--vae-batch", opt->vae_batch, "Images per VAE step")->capture_default_str();
         sub.add_option("--unet-batch", opt->unet_batch, "Latents per UNet step")->capture_default_str();
         CLI::Option* halves_on =
             sub.add_flag("--unet-batch-halves", opt->unet_batch_halves,
                          "Each text encoder + UNet step as two half-batches side by side, one per half of the "
                          "threads, gradients summed: the same step up to rounding, faster on few cores (needs 2+ "
                          "threads; the default on the CPU with 2+ threads, and a resumed run keeps its choice)");
         auto whole_batches = std::make_shared<bool>(false);
         sub.add_flag("--no-unet-batch-halves", *whole_batches,
                      "Each text encoder + UNet step as one batch over all the threads, as train-demo ran it by default "
                      "before the half-batches (it repeats runs made so)")
             ->excludes(halves_on);
         sub.add_flag("--vae-batch-halves", opt->vae_batch_halves,
                      "The same for each VAE step: two half-batches side by side, gradients summed (needs 2+ threads)");
         sub.add_option("--cache-images", opt->cache_images, "Scenes encoded once for UNet training")
             ->capture_default_str();
         sub.add_option("--two-shape-share", opt->two_shape_share,
                        "Share of two-shape scenes among the cached UNet training scenes")
             ->capture_default_str();
         sub.add_flag("--reading-order", opt->reading_order,
                      "Captions name the two shapes of a scene in reading order (the upper one first; at "
                      "one height, the left one), so the word order tells the shapes apart");
         sub.add_option("--seed", opt->seed, "Seed of every random choice")->capture_default_str();
         sub.add_option("--ema-decay", opt->ema_decay, "EMA decay of the saved UNet/text weights (0: off)")
             ->capture_default_str();
         sub.add_option("--offset-noise", opt->offset_noise,
                        "Std of a per-image, per-channel constant added to the training noise (0: off)")
             ->capture_default_str();
         sub.add_option("--prediction-type", opt->prediction_type, "What the UNet predicts: v_prediction or epsilon")
             ->capture_default_str();
         sub.add_flag("--zero-terminal-snr", opt->zero_terminal_snr,
                      "Rescale the betas so t = 999 holds pure noise (diffusers' rescale_betas_zero_snr; the "
                      "saved scheduler samples with trailing spacing); needs v_prediction");
         sub.add_option("--vae-from", opt->vae_from,
                        "Reuse the VAE of this demo model folder instead of training one (for experiments)");
         sub.add_option("--init-from", opt->init_from,
                        "Start the text encoder and UNet from this demo model folder's weights and configs "
                        "(experiments that continue a trained model; use with --vae-from the same folder)");
         sub.add_option("--decoder-steps", opt->decoder_steps,
                        "Last phase: VAE decoder refinement steps on the saved folder (encoder frozen; half of "
                        "each batch from latents the UNet re-drew at CFG 5, so that colours survive guidance; "
                        "validated; 0: none)")
             ->capture_default_str();
         sub.add_option("--decoder-shape-weight", opt->decoder_shape_weight,
                        "Decoder refinement: extra loss weight of shape pixels")
             ->capture_default_str();
         sub.add_option("--decoder-gain-jitter", opt->decoder_gain_jitter,
                        "Decoder refinement: multiply each latent's departure from the background code by "
                        "a random gain in [1, 1 + X] so that the decoder keeps colours guidance overshoots")
             ->capture_default_str();
         sub.add_option("--decoder-validation-prompts", opt->decoder_validation_prompts,
                        "Decoder refinement: keep the refined decoder only if the folder then generates these "
                        "held-out prompts better (colour + background + class, prompt seed 9001); 0: always keep it")
             ->capture_default_str();
         sub.add_option("--align-rounds", opt->align_rounds,
                        "Last phase: rounds of prompt-fidelity alignment (render prompts, label them with "
                        "the shapes scorer, fine-tune the UNet with Diffusion-KTO; 0: none)")
             ->capture_default_str();
         sub.add_option("--align-prompts", opt->align_prompts, "Alignment: images rendered and labelled per round")
             ->capture_default_str();
         sub.add_option("--align-steps", opt->align_steps, "Alignment: optimizer steps per round")
             ->capture_default_str();
         sub.add_option("--align-lr", opt->align_lr, "Alignment: peak learning rate (cosine decay)")
             ->capture_default_str();
         sub.add_option("--align-beta", opt->align_beta, "Alignment: KTO implicit-reward scale")
             ->capture_default_str();
         sub.add_option("--align-objective", opt->align_objective, "Alignment: kto, sft or dpo")
             ->capture_default_str();
         sub.add_flag("--align-judge-size", opt->align_judge_size,
                      "Alignment: a named size must also be right for an image to be liked");
         sub.add_flag("--align-judge-position", opt->align_judge_position,
                      "Alignment: a named position must also be right for an image to be liked");
         auto align_only = std::make_shared<bool>(false);
         sub.add_flag("--align-only", *align_only,
                      "Run only the alignment rounds on the model already in --out");
         sub.add_option("--decoder-generated-share", opt->decoder_generated_share,
                        "Decoder refinement: share of each batch decoded from latents the folder's UNet "
                        "re-drew (SDEdit at CFG 5) with the scene as the target (0: off)")
             ->capture_default_str();
         sub.add_option("--decoder-generated-pool", opt->decoder_generated_pool,
                        "Decoder refinement: scenes re-drawn by the UNet before training")
             ->capture_default_str();
         sub.add_option("--decoder-generated-strength", opt->decoder_generated_strength,
                        "Decoder refinement: how far up the noise schedule the re-drawing starts (0-1]")
             ->capture_default_str();
         sub.add_option("--decoder-generated-loss-pool", opt->decoder_generated_loss_pool,
                        "Decoder refinement: compare the re-drawn rows over N x N pixel blocks (1: per pixel)")
             ->capture_default_str();
         auto refine_only = std::make_shared<bool>(false);
         sub.add_flag("--refine-decoder-only", *refine_only,
                      "Run only the decoder refinement on the model already in --out");
         sub.add_option("--threads", opt->threads, "CPU threads (0: all cores)");
         auto device = std::make_shared<std::string>("cpu");
         sub.add_option("--device", *device, "Where to train: cpu, cuda or cuda:N (the shipped model: cpu)")
             ->capture_default_str();
         sub.add_option("--checkpoint-every", opt->checkpoint_every,
                        "Write the run's state to OUT/train-demo-checkpoint every N steps of the VAE and UNet "
                        "phases, at their ends and on Ctrl-C (0: never); removed when the run is complete")
             ->capture_default_str();
         sub.add_flag("--resume", opt->resume,
                      "Continue the interrupted run whose checkpoint --out holds (give the options it was "
                      "started with; the result is the folder the run would have written)");
         return [opt, refine_only, align_only, device, precision, halves_on, whole_batches] {
             if (opt->threads == 0) opt->threads = kto::cli::global_options().threads;
             opt->device = kto::cli::parse_device(*device);
             opt->mixed_precision_bf16 =
                 *precision == "bf16" || (*precision == "auto" && opt->device.is_cpu() && kto::default_cpu_dtype() == torch::kBFloat16);
             if (*align_only) {
                 kto::DemoAlignOptions a = kto::demo_alignment(*opt);
                 if (a.rounds <= 0) a.rounds = 1;
                 const auto rounds = kto::align_demo_model(a, PhaseProgress{});
                 for (size_t i = 0; i < rounds.size(); ++i)
                     std::printf("round %zu: %d of %d renders liked, shape colours right %.1f%%, %.0f s\n", i + 1,
                                 rounds[i].liked, rounds[i].images, 100 * rounds[i].colour_right, rounds[i].seconds);
                 std::cout << "aligned " << opt->out_dir << "\n";
                 return 0;
             }
             if (*refine_only) {
                 kto::DemoDecoderOptions d = kto::decoder_refinement(*opt);
                 if (d.steps <= 0) d.steps = kto::DemoDecoderOptions{}.steps;
                 const kto::DemoDecoderResult r = kto::refine_demo_decoder(d, PhaseProgress{});
                 std::cout << (r.kept ? "decoder refined in " : "decoder left as it was in ") << opt->out_dir << "\n";
                 return 0;
             }
             // Said once the run has accepted the checkpoint (its options checked), before its first report.
             std::optional<kto::DemoCheckpointInfo> resuming =
                 opt->resume ? kto::find_demo_checkpoint(opt->out_dir) : std::nullopt;
             // Half-batches unless the command says: what a resumed run was started with, else where they can run.
             if (halves_on->count() == 0 && !*whole_batches) {
                 const nlohmann::json recorded =
                     resuming ? resuming->recipe.value("unet-batch-halves", nlohmann::json()) : nlohmann::json();
                 const bool can = kto::demo_unet_batch_halves_by_default(*opt);
                 if (recorded.is_boolean() && recorded.get<bool>() && !can)
                     throw kto::Error("train-demo --resume: the run in " + opt->out_dir +
                                      " was started with its text encoder + UNet steps as half-batches side by side, "
                                      "which need 2 or more threads (--threads) here; resume it with --threads 2 or "
                                      "more");
                 opt->unet_batch_halves = recorded.is_boolean() ? recorded.get<bool>() : can;
             }
             std::string last_phase;
             kto::DemoRunEta eta(*opt);
             g_interrupted = 0;
             struct SigintScope {
                 void (*previous)(int) = std::signal(SIGINT, on_train_demo_sigint);
                 ~SigintScope() { std::signal(SIGINT, previous); }
             } sigint_scope;
             try {
                 kto::train_demo_model(*opt, [&](const kto::DemoProgress& p) {
                     if (g_interrupted) return false;
                     if (resuming) {
                         std::fprintf(stderr, "resuming from %s (%s of training so far)\n",
                                      kto::demo_checkpoint_place(*resuming).c_str(),
                                      kto::cli::duration_text(resuming->elapsed_s).c_str());
                         resuming.reset();
                     }
                     // The decoder validation's decision reads as a sentence, as in --refine-decoder-only.
                     if (p.phase == "decoder-kept" || p.phase == "decoder-undone") {
                         print_decoder_decision(p);
                         return true;
                     }
                     const kto::DemoRunEta::Estimate left = eta.update(p);
                     const bool phase_end = p.step == p.total;
                     if (p.phase != last_phase || phase_end || p.step % 25 == 0) {
                         std::fprintf(stderr, "\r%-7s %6d/%-6d loss %.4f", p.phase.c_str(), p.step, p.total, p.loss);
                         if (opt->attention_loss_weight > 0 && p.phase.rfind("unet", 0) == 0)
                             std::fprintf(stderr, " attention %.4f", p.attention_loss);
                         std::fprintf(stderr, "  %6.0f s", p.elapsed_s);
                         print_time_left(left, phase_end);
                         if (phase_end) std::fprintf(stderr, "\n");
                         std::fflush(stderr);
                     }
                     last_phase = p.phase;
                     return true;
                 });
             } catch (const kto::Cancelled&) {
                 const auto c = opt->checkpoint_every > 0 ? kto::find_demo_checkpoint(opt->out_dir) : std::nullopt;
                 if (!c) throw;
                 std::fprintf(stderr, "\nstopped at %s; checkpoint in %s: run the same command with --resume "
                                      "to continue\n",
                              kto::demo_checkpoint_place(*c).c_str(), c->folder.c_str());
                 return 130;
             }
             std::cout << "demo model written to " << opt->out_dir << "\n";
             return 0;
         };
     }}};

kto::cli::CommandRegistrar eval_reg{
    {"demo-eval", "Score the demo model's prompt fidelity (shapes scorer) and time generation",
     [](CLI::App& sub) -> std::function<int()> {
         auto opt = std::make_shared<kto::DemoEvalOptions>();
         sub.add_option("--model", opt->model_dir, "Demo model folder")->required();
         sub.add_option("--prompts", opt->prompts, "Held-out prompts")->capture_default_str();
         sub.add_option("--steps", opt->steps, "Sampling steps")->capture_default_str();
         sub.add_option("--cfg", opt->guidance, "Guidance scale")->capture_default_str();
         sub.add_option("--guidance-rescale", opt->guidance_rescale,
                        "diffusers' guidance_rescale, 0 to 1 (0: off)")
             ->capture_default_str();
         sub.add_option("--sampler", opt->sampler,
                        "Sampler: " + kto::cli::sampler_list() + " (default: the folder's, DDIM)");
         sub.add_option("--seed", opt->seed, "Prompt and noise seed")->capture_default_str();
         sub.add_flag("--reading-order", opt->reading_order,
                      "Two-shape prompts name their shapes in reading order, as a model trained with "
                      "train-demo --reading-order learned");
         sub.add_option("--grid", opt->grid_png, "Write a grid PNG of the first generations");
         auto details = std::make_shared<std::string>();
         sub.add_option("--details", *details,
                        "Write a CSV with one row per image: the prompt, which attributes were right "
                        "(1/0, empty when not asked) and what the scorer read");
         sub.add_option("--speed-runs", opt->speed_runs, "Timed single-image runs (median)")
             ->capture_default_str();
         sub.add_option("--threads", opt->threads, "CPU threads (0: all cores)");
         sub.add_flag("--reconstruct", opt->reconstruct,
                      "Score the VAE's round trip of each prompt's own rendered scene instead of a "
                      "generation: the ceiling the autoencoder sets");
         sub.add_option("--latent-gain", opt->latent_gain,
                        "With --reconstruct: multiply each latent's departure from its image's "
                        "background code by this before decoding (as strong guidance overshoots)")
             ->capture_default_str();
         sub.add_option("--latent-blur", opt->latent_blur,
                        "With --reconstruct: move the latents this far (0 to 1) towards a 3x3-blurred "
                        "copy before decoding (as a UNet that is soft at the edges leaves them)")
             ->capture_default_str();
         auto device = std::make_shared<std::string>("cpu");
         sub.add_option("--device", *device, "Where to generate: cpu, cuda or cuda:N")->capture_default_str();
         auto dtype = std::make_shared<std::string>();
         sub.add_option("--dtype", *dtype, "fp32, fp16 or bf16 (default: as generate: fp16 on CUDA; on the CPU fp32 for a small UNet such as the demo model's, else bf16 where the CPU has AMX or AVX512-BF16, else fp32)");
         auto distances = std::make_shared<bool>(false);
         sub.add_flag("--latent-distances", *distances,
                      "Only print how far apart the named colours lie in the latent space (RMS of the "
                      "scaled VAE latents of one scene per colour, on three backgrounds); no generation");
         return [opt, device, dtype, details, distances] {
             if (*distances) {
                 using namespace kto::shapes;
                 for (Colour bg : {Colour::White, Colour::Blue, Colour::Black}) {
                     const torch::Tensor d = kto::demo_colour_latent_distances(opt->model_dir, bg);
                     std::printf("latent distance, large circle on %s:\n%8s", name(bg).c_str(), "");
                     for (Colour c : kAllColours) std::printf(" %6s", name(c).c_str());
                     std::printf("\n");
                     for (size_t i = 0; i < kAllColours.size(); ++i) {
                         std::printf("%8s", name(kAllColours[i]).c_str());
                         for (size_t j = 0; j < kAllColours.size(); ++j)
                             std::printf(" %6.2f", d[int64_t(i)][int64_t(j)].item<double>());
                         std::printf("\n");
                     }
                 }
                 return 0;
             }
             if (opt->threads == 0) opt->threads = kto::cli::global_options().threads;
             opt->device = kto::cli::parse_device(*device);
             opt->dtype = kto::cli::parse_dtype(*dtype, opt->device, opt->model_dir);
             // Refuse a details path that cannot be written before minutes of generation, not after.
             const std::filesystem::path parent = std::filesystem::path(*details).parent_path();
             if (!details->empty() && !parent.empty() && !std::filesystem::is_directory(parent))
                 throw kto::Error("demo-eval: --details " + *details + ": the folder " + parent.string() +
                                  " does not exist");
             const kto::DemoEvalResult r = kto::evaluate_demo_model(*opt, [](int done, int total) {
                 std::fprintf(stderr, "\rgenerated %d/%d", done, total);
                 std::fflush(stderr);
             });
             std::fprintf(stderr, "\n");
             if (opt->reconstruct)
                 std::printf("images %d (VAE round trip of the prompts' renders)\n", r.images);
             else
                 std::printf("images %d (%d steps, CFG %.1f, %s)\n", r.images, opt->steps, opt->guidance,
                             opt->dtype == torch::kBFloat16 ? "bf16" : opt->dtype == torch::kHalf ? "fp16" : "fp32");
             std::printf("colour right      %.1f%%\n", 100 * r.colour_right);
             if (!r.colour_misses.empty()) {
                 std::printf("  misses (asked -> read):");
                 for (size_t i = 0; i < r.colour_misses.size() && i < 8; ++i)
                     std::printf("%s %s %d", i ? "," : "", r.colour_misses[i].first.c_str(), r.colour_misses[i].second);
                 std::printf("%s\n", r.colour_misses.size() > 8 ? ", ..." : "");
             }
             std::printf("background right  %.1f%%\n", 100 * r.background_right);
             std::printf("shape class right %.1f%%\n", 100 * r.class_right);
             std::printf("size right        %.1f%%\n", 100 * r.size_right);
             std::printf("position right    %.1f%%\n", 100 * r.position_right);
             if (opt->speed_runs > 0 && !opt->reconstruct)
                 std::printf("median seconds per 64x64 image: %.3f\n", r.median_seconds_per_image);
             if (!details->empty()) {
                 write_details(*details, r);
                 std::printf("details: %s\n", details->c_str());
             }
             return 0;
         };
     }}};

}  // namespace
