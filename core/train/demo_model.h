#pragma once
// The built-in demo model: tiny configs of the real classes (AutoencoderKL, CLIPTextModel,
// UNet2DConditionModel) trained from scratch on the shapes world, deterministically on a CPU,
// written as a diffusers-layout folder with fp16 safetensors weights.
// Thread-safety: each call owns its models; run one training at a time per output folder.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/shapes/caption.h"
#include "core/shapes/scorer.h"

namespace kto {

struct DemoTrainOptions {
    std::string out_dir;            // folder written in diffusers layout (created)
    // VAE reconstruction steps. 4500 since session 22: the phase's result spreads less over seeds and
    // CPUs (H200, session 21: loss 0.028 to 0.035 against 0.041 to 0.065 after 3000), and on this
    // project's 2-core VM it reached loss 0.0275 and a round trip of colour 99.6%, class 92.7%.
    int vae_steps = 4500;
    int vae_batch = 16;
    int unet_steps = 9500;          // text encoder + UNet steps (diffusion loss)
    int unet_batch = 32;
    int cache_images = 32000;       // distinct scenes encoded once into latents for UNet training
    double two_shape_share = 0.25;  // share of two-shape scenes among them (SceneOptions)
    // Captions name the two shapes of a scene in reading order (SceneOptions::reading_order), so the
    // word order tells which shape is which; otherwise in random order.
    bool reading_order = false;
    double vae_lr = 1e-3;
    double vae_kl_weight = 1e-4;    // weight of the KL term in the VAE loss
    // Extra weight of shape pixels (those not of the background colour) in the VAE loss: shapes
    // cover a few percent of an image, so an unweighted loss is mostly about the background.
    double vae_shape_weight = 10;
    int vae_width = 16;             // channels of the VAE's first block (then x2, x4)
    // Weight of the palette anchor in the VAE loss: the encoder's posterior mean of every latent
    // cell that covers one plain palette colour is pulled to that colour's fixed code, a vertex of
    // the 4-D cross-polytope (+-radius e_i; demo_palette_codes). Every colour is then an extreme
    // point of the set of colour codes and they lie equally far apart. Trained freely, the codes
    // follow RGB: orange lies between red and yellow, purple between red and blue, so guidance
    // (which extrapolates from the unconditional prediction, a mix of colours) carries a middle
    // colour past itself into its neighbour. 0: off (session 9: the geometry came out as meant,
    // but the UNet learned much worse on it; MODEL_CARD.md).
    double vae_palette_weight = 0;
    double vae_palette_radius = 2.0;  // distance of each colour's code from the origin (unscaled latents)
    double unet_lr = 1e-3;
    double unet_lr_floor = 0.1;     // the cosine schedule ends at this share of unet_lr
    // Continuation rounds after the text encoder + UNet phase: each starts from the weights the
    // phase (or the round before) ends with, rounded to fp16 as a saved folder holds them, with a
    // fresh AdamW and EMA, and trains unet_round_steps more steps with the phase's losses at a
    // constant unet_round_lr (after a linear warm-up of a tenth of the round, at most 200 steps),
    // drawing the same batches and noise as the phase's first steps. Each is what a
    // `train-demo --init-from` run of that many steps at `--unet-lr X --unet-lr-floor 1` does; the
    // shipped model was made so (session 16: three rounds of 1000 lifted class fidelity from 74.3%
    // to 82.9%). 0: none.
    int unet_rounds = 3;
    int unet_round_steps = 1000;
    double unet_round_lr = 1e-4;
    std::vector<int> unet_channels{48, 96, 96};  // UNet block_out_channels, one level each
    int unet_layers = 1;            // UNet layers_per_block
    // How many of the UNet's highest-resolution levels have no attention (DownBlock2D /
    // UpBlock2D, as SD's lowest level): attention over 16x16 cells is the costliest part on a CPU.
    int unet_plain_levels = 1;
    // Attention heads of the UNet's transformer blocks (diffusers' attention_head_dim, which SD 1.x
    // configs use as the head count); every attention level's channels must divide by it.
    int unet_heads = 4;
    // Text encoder (CLIPTextModel) size: hidden width (a multiple of 16: one head per 16 channels,
    // MLP 4x; also the UNet's cross_attention_dim) and number of layers.
    int text_width = 64;
    int text_layers = 2;
    // Extra weight of the latent cells that hold a shape in the diffusion loss (as vae_shape_weight).
    double unet_shape_weight = 0;
    // Weight of token-level attention supervision in the text encoder + UNet phase
    // (shape_token_attention_loss): each named shape's size, colour and class tokens should draw the
    // cross-attention of the shape's own cells, so that in a two-shape caption each shape takes its
    // own colour. 0: off (the diffusion loss alone). Session 15: colour 81% -> 97%, positions 15% -> 100%
    // (MODEL_CARD.md).
    double attention_loss_weight = 0.3;
    // Which of each shape's words the attention loss supervises: a comma-separated list of "size",
    // "colour" and "class".
    std::string attention_words = "size,colour,class";
    // The text encoder + UNet phase's (and its rounds') forward passes under bf16 autocast on the CPU
    // (convolutions and matmuls in bf16 on AMX / AVX512-BF16; fp32 weights, optimiser and EMA).
    // `train-demo` turns it on where the CPU has bf16 matrix units (--mixed-precision auto).
    bool mixed_precision_bf16 = false;
    // Each text encoder + UNet step as two half-batches side by side, each on half the threads
    // (CpuPairRunner), their gradients summed: the same loss and gradient as the whole batch up to
    // rounding, about a fifth faster on 2 cores, where one batch's operators leave a thread waiting.
    // Needs 2 or more threads. Off here; `train-demo` turns it on where it can run (CPU, 2 or more
    // threads: demo_unet_batch_halves_by_default) unless --no-unet-batch-halves, since session 29.
    bool unet_batch_halves = false;
    // The same for each VAE step: its two half-batches (scenes, posterior noise and loss weights drawn
    // for the whole batch, as without it) encoded, decoded and differentiated side by side, each half's
    // loss its share of the whole batch's. Not with vae_palette_weight. Off by default, as above.
    bool vae_batch_halves = false;
    // Min-SNR-gamma loss weighting (Hang et al. 2023): each sample's loss times
    // min(SNR, gamma) / (SNR + 1) for v (/ SNR for epsilon), so the easy low-noise steps do not
    // dominate. 0: off (every timestep weighs 1).
    double min_snr_gamma = 0;
    double ema_decay = 0.999;       // EMA of text encoder + UNet weights (saved); 0: last step
    double caption_dropout = 0.1;   // share of empty captions, so classifier-free guidance works
    // Offset noise: each training noise gets a per-image, per-channel constant of this std added.
    // The scaled-linear schedule never reaches zero signal, so without it the model learns to read
    // the background colour off the mean of x_t (which at sampling time is the seed's noise, not
    // the prompt) instead of off the caption.
    double offset_noise = 0.1;
    // What the UNet predicts: "v_prediction" (as SD 2.x-v models) or "epsilon" (as SD 1.x). With
    // epsilon, the loss hardly rewards getting the background colour right from the caption (at
    // the noise levels where only the caption can tell it, the colour is a few percent of the
    // target), and the model drew the background the seed's noise suggested; v weights those
    // noise levels as an x0 loss does.
    std::string prediction_type = "v_prediction";
    // Zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
    // Flawed"): the betas rescaled so that x_t at t = 999 holds no trace of the image, as diffusers'
    // rescale_betas_zero_snr. The scaled-linear schedule leaves 6.8% of the image there, so the
    // model learns to read where the shape is and what colour it has off x_t at the first sampling
    // steps, where at sampling time there is only the seed's noise. Needs v_prediction; the saved
    // scheduler config then states rescale_betas_zero_snr and "trailing" spacing (sampling starts
    // at t = 999).
    bool zero_terminal_snr = false;
    std::string vae_from;           // if set: load this demo folder's VAE (and its scaling factor) instead of training one
    // If set: start the text encoder and UNet from this demo folder's weights (and configs) instead
    // of from scratch; for experiments that continue a trained model (with --vae-from the same folder).
    std::string init_from;
    // Last phase: VAE decoder refinement on the saved folder (refine_demo_decoder), the encoder and
    // so the UNet's latent space frozen. Half of each batch is decoded from latents the folder's own UNet
    // re-drew at CFG 5 (SDEdit from 0.85 of the way up, loss on 8x8-pooled colours), the other half from
    // encoder latents pushed by a random gain: the decoder learns to read a shape's colour where guidance
    // pushes its latents past the data. 0 steps: no refinement. On since session 26: the session-25 recipe
    // folder drew colour right in 97.1% of demo-eval's images at CFG 2 but 86.5% at CFG 5 (guidance
    // overshoot); this refinement lifted it to 95.1% (400 other prompts: 86.3% -> 92.2%), where the gain
    // augmentation alone (sessions 22 and 26) made it worse and was undone by the validation. Off from
    // session 23 to 25 (the gain augmentation alone then). MODEL_CARD.md has the figures.
    int decoder_steps = 1000;
    double decoder_shape_weight = 10;    // its extra weight of shape pixels (DemoDecoderOptions::shape_weight)
    double decoder_gain_jitter = 0.25;   // its latent gain augmentation (DemoDecoderOptions::gain_jitter)
    // Its validation (DemoDecoderOptions::validation_prompts): the refined decoder is kept only if it
    // generates better than the one before (prompt seed 9001, not demo-eval's prompts). Session 22: the gain
    // augmentation alone lifted colour 89.0% -> 97.1% on the shipped VAE, dropped it 91.0% -> 80.8% on a
    // 4500-step VAE of this CPU (MODEL_CARD.md).
    int decoder_validation_prompts = 200;
    // Its share of latents the UNet re-drew (DemoDecoderOptions::generated_share), how many scenes it
    // re-draws, from how far up, and the pooling of their loss. Session 12, on the session-9 model: +2 to 3
    // points of colour on demo-eval's prompts, 0 to 1 on 400 others; session 26, on a recipe folder whose
    // misses were guidance overshoot: +8.6 and +5.9 (MODEL_CARD.md).
    double decoder_generated_share = 0.5;
    int decoder_generated_pool = 1024;
    double decoder_generated_strength = 0.85;
    int decoder_generated_loss_pool = 8;
    // Very last phase: prompt-fidelity alignment with Diffusion-KTO on the model's own renders
    // (align_demo_model). 0 rounds: none (session 12: every setting tried lowered the held-out
    // fidelity, MODEL_CARD.md).
    int align_rounds = 0;
    int align_prompts = 400;
    int align_steps = 250;
    double align_lr = 2e-4;
    double align_beta = 50;
    std::string align_objective = "kto";
    bool align_judge_size = false;
    bool align_judge_position = false;
    uint64_t seed = 20261125;       // every random choice derives from it
    int threads = 0;                // 0: KTO_THREADS or all cores
    // Checkpoints: every this many steps of the VAE phase and of the text encoder + UNet phase and its
    // rounds, at each of those phases' ends, and when `progress` cancels the run, the run's whole state goes
    // to OUT/train-demo-checkpoint (fp32 weights, the optimiser's moments, the EMA, every random stream; the
    // new one written beside the last and then put in its place), and, while a decoder refinement or
    // alignment rounds follow, that the folder is written. The folder goes when the run ends. 0: none.
    int checkpoint_every = 500;
    // Continue the interrupted run whose checkpoint OUT holds, with the options it was started with
    // (demo_recipe_json; --threads and --device may differ). With the same threads and device it writes the
    // folder, byte for byte, that the run would have written had it not stopped. Without it, a run into a
    // folder that holds a checkpoint is refused, so that the interrupted run is not overwritten.
    bool resume = false;
    // Where to train. Every random draw is made on the CPU and moved, so a CUDA run draws the
    // same noise as a CPU run (its numbers still differ in rounding).
    torch::Device device = torch::kCPU;
};

struct DemoProgress {
    std::string phase;  // "vae", "latents", "unet", "save"
    int step = 0;
    int total = 0;
    double loss = 0;
    double elapsed_s = 0;
    // "unet" phase with DemoTrainOptions::attention_loss_weight > 0: the attention loss (an EMA as
    // `loss`, which stays the diffusion loss alone).
    double attention_loss = 0;
};

// How long a train_demo_model run has left, from its progress reports as they come: the current phase's
// remaining steps at the pace its own steps have kept (from its 5th step on), plus, in the text encoder +
// UNet phase and its rounds, the rounds still to come at that pace (a round's step costs the phase's; a
// round's first steps use it too). Before that phase the estimate is the phase's alone (the UNet's pace is
// not known yet), and it never covers what follows the rounds: a decoder refinement (decoder_steps > 0), the
// alignment rounds (align_rounds > 0), saving.
class DemoRunEta {
public:
    explicit DemoRunEta(const DemoTrainOptions& opt);
    // What an estimate covers: the current phase; the text encoder + UNet phase and the rounds to come, when a
    // decoder refinement or alignment rounds follow them; the whole run.
    enum class Span { kPhase, kUnetAndRounds, kRun };
    struct Estimate {
        double seconds = -1;  // negative: not known yet
        Span span = Span::kPhase;
    };
    Estimate update(const DemoProgress& p);

private:
    int rounds_, round_steps_;
    bool more_after_;  // a decoder refinement or alignment rounds follow the UNet rounds
    std::string phase_;
    int first_step_ = 0;
    double first_s_ = 0;
    double unet_pace_ = -1;  // seconds a text encoder + UNet step, once measured
};

// Which of an r x r grid's cells (row-major, y down, as a UNet flattens a feature map for attention)
// the shape touches: 1 where any of 4x4 sub-samples per cell lies inside it, else 0. [r * r] float32.
torch::Tensor shape_cells(const shapes::Shape& shape, int r);

// Token-level attention supervision (TokenCompose: Wang et al. 2024, "TokenCompose: Text-to-Image
// Diffusion with Token-level Supervision"), with the renderer's exact shapes as the masks. For each
// cross-attention map [B, r*r, K] in `maps` (AttentionProbe), each batch row b with a request, each
// shape i of that request and each of its attribute words w (shapes::shape_attribute_words, token
// w + 1): the share of token w + 1's attention mass, summed over the cells, that lies on the cells
// shape i touches (shape_cells) should be 1. Returns the mean of (1 - share)^2 over all of them, a
// scalar that is differentiable in the maps; 0 when no row has a request. requests[b] empty: row b
// is not supervised (a dropped caption). Row b's request names the shapes of scenes[b] in order.
// `words` picks which of each shape's attribute words are supervised (default: all three).
// `batch_triples` > 0: these rows are part of a larger batch with that many supervised (row, shape,
// word) triples in all, and each map's term is this part's sum over that count, so the parts' losses
// add up to the whole batch's (train-demo --unet-batch-halves).
torch::Tensor shape_token_attention_loss(const std::vector<torch::Tensor>& maps,
                                         const std::vector<shapes::Scene>& scenes,
                                         const std::vector<std::optional<shapes::PromptRequest>>& requests,
                                         const shapes::AttributeWordKinds& words = {}, int64_t batch_triples = 0);
// The number of supervised (row, shape, word) triples those requests hold.
int64_t shape_token_attention_triples(const std::vector<std::optional<shapes::PromptRequest>>& requests,
                                      const shapes::AttributeWordKinds& words = {});
// Reads a comma-separated list of "size", "colour" and "class" (train-demo --attention-words).
shapes::AttributeWordKinds parse_shape_word_kinds(const std::string& list);

// The fixed latent codes of the palette's plain colours, [8, 4] in kAllColours order, for
// DemoTrainOptions::vae_palette_weight: white / black +-e0, yellow / blue +-e1, red / green +-e2,
// orange / purple +-e3 (opponent pairs share an axis), times `radius`.
torch::Tensor demo_palette_codes(double radius);
// Per latent cell of rendered scenes `x` ([B,3,64,64] in [-1,1]): the code of the one palette
// colour that fills all of the cell's pixels, and a [B,1,16,16] mask of the cells that have one.
std::pair<torch::Tensor, torch::Tensor> demo_palette_targets(const torch::Tensor& x, double radius);

// Configs (complete diffusers / transformers config.json contents) of the demo model.
nlohmann::json demo_vae_config(double scaling_factor, int width = 16);
nlohmann::json demo_unet_config(const std::vector<int>& channels = {48, 96, 96}, int layers_per_block = 1,
                                int plain_levels = 1, int heads = 4, int cross_attention_dim = 64);
nlohmann::json demo_text_encoder_config(int64_t vocab_size, int width = 64, int layers = 2);
nlohmann::json demo_scheduler_config(const std::string& prediction_type = "v_prediction", bool zero_terminal_snr = false);
nlohmann::json demo_model_index();

// Trains and writes the demo model. Throws kto::Error on I/O failure; kto::Cancelled when
// `progress` returns false (after writing a checkpoint, when the run writes them).
void train_demo_model(const DemoTrainOptions& options,
                      const std::function<bool(const DemoProgress&)>& progress = {});

// Every option of a train_demo_model run that shapes what it writes, keyed by its train-demo flag (without
// the dashes): what a checkpoint records and a resumed run must repeat. Not out_dir, threads, device,
// checkpoint_every, resume.
nlohmann::json demo_recipe_json(const DemoTrainOptions& options);

// Whether `train-demo` runs the text encoder + UNet steps as half-batches side by side when the command
// chooses neither way: where they can run (the CPU, a --unet-batch of 2 or more, 2 or more threads after
// configure_torch_threads(options.threads), which this calls, and KTO_CPU_PAIRS not 0). On the 2-core
// Zen 3 VM a whole run's UNet step took 0.67 s against 0.78 s as one batch; the recipe's folder
// made so meets issue 5's fidelity goals (resources/models/kto-demo/MODEL_CARD.md, session 26).
bool demo_unet_batch_halves_by_default(const DemoTrainOptions& options);

// The checkpoint of an interrupted train_demo_model run in `out_dir`, if it holds a complete one.
struct DemoCheckpointInfo {
    std::string folder;  // OUT/train-demo-checkpoint (or the .new one beside it, if the switch was cut short)
    std::string phase;   // "vae", "unet", "unet+K" (round K), "saved" (the folder written), "refined"
    int step = 0;        // steps of `phase` done (vae, unet, unet+K)
    int total = 0;       // its steps
    double elapsed_s = 0;  // the run's training time until then, over all its sittings
    nlohmann::json recipe;  // the options it was started with (demo_recipe_json), an object
};
std::optional<DemoCheckpointInfo> find_demo_checkpoint(const std::string& out_dir);
// Where it stands, for messages: "vae step 623/4500", or "saved (the folder is written)".
std::string demo_checkpoint_place(const DemoCheckpointInfo& checkpoint);

// VAE decoder refinement: the encoder (and so the latent space the UNet learned) stays frozen and
// the decoder learns to reproduce the rendered scenes from the encoder's latent samples (L1 + L2),
// on the folder's fp16 weights, written back in place. Deterministic for a seed and thread count.
struct DemoDecoderOptions {
    std::string model_dir;
    int steps = 1000;
    int batch = 16;
    double lr = 3e-4;
    double shape_weight = 0;  // extra loss weight of shape pixels (as DemoTrainOptions::vae_shape_weight)
    // Each latent's departure from its image's background code (DemoEvalOptions::latent_gain) is
    // multiplied by a gain drawn uniformly from [1, 1 + gain_jitter] per image, and the decoder
    // must still draw the scene: it learns to keep a shape's colour when guidance pushes its
    // latents past the data. 0: off.
    double gain_jitter = 0;
    // Latents the folder's own UNet made: before training, `generated_pool` scenes are re-drawn
    // by the UNet from their noised latents (SDEdit: the 20-step DDIM grid entered at
    // `generated_strength` of the way up, CFG `generated_guidance`, each scene's caption naming
    // its colours), and this share of every batch decodes those latents with the scene as the
    // target. The decoder then learns the latents generation really produces (guidance
    // overshoot included), not a model of them. 0: off.
    double generated_share = 0;
    int generated_pool = 1024;
    double generated_strength = 0.7;
    double generated_guidance = 5.0;
    // The loss of those rows compares pool x pool block means (the re-drawn shapes can sit a few
    // pixels off their source scene's); 1: per pixel.
    int generated_loss_pool = 1;
    bool reading_order = false;  // the re-drawn scenes' captions name two shapes in reading order
    // Validation: before and after training, the folder generates this many held-out prompts
    // (evaluate_demo_model: 20 DDIM steps, CFG 5, prompt and noise seed `validation_seed`, never
    // demo-eval's 777 or 4242) and the shapes scorer reads them; the refined decoder is kept only if
    // its colour + background + class shares sum higher than the decoder's before, otherwise the
    // folder's VAE file is put back byte for byte. 0: no validation, the refined decoder is kept.
    int validation_prompts = 0;
    uint64_t validation_seed = 9001;
    uint64_t seed = 20261125;
    int threads = 0;
};

// What a refinement did. With validation: the two decoders' validation scores (colour + background
// + class shares, each in [0, 1]) and whether the refined one was kept.
struct DemoDecoderResult {
    bool validated = false;
    double score_before = 0, score_after = 0;
    bool kept = true;
};

// The refinement phase of a train-demo run: its folder, decoder_steps, vae_batch, validation prompts,
// seed, threads.
DemoDecoderOptions decoder_refinement(const DemoTrainOptions& options);
// With validation it reports "decoder-check" progress (images generated of both evaluations) and
// then one "decoder-kept" or "decoder-undone" report whose `loss` is the refined decoder's score and
// `attention_loss` the score before.
DemoDecoderResult refine_demo_decoder(const DemoDecoderOptions& options,
                                      const std::function<bool(const DemoProgress&)>& progress = {});

// Prompt-fidelity alignment: the project's own method on its own model. Each round renders
// prompts from the caption grammar (a seed stream of its own, never demo-eval's) with the folder's
// model, labels each image liked when the shapes scorer finds every judged attribute right and
// disliked otherwise (a scripted "dislikes images that do not match their prompt" rater), and
// fine-tunes the UNet on those labels with Diffusion-KTO (the training job the app runs). The
// UNet is written back to the folder (fp16) after each round, so the next round samples the
// tuned model and uses it as its reference.
struct DemoAlignOptions {
    std::string model_dir;
    int rounds = 1;
    int prompts = 400;            // images rendered and labelled per round (one seed each)
    int sample_steps = 20;        // DDIM steps of those renders
    double guidance = 5.0;        // their CFG: the setting the model is judged at
    // Attributes an image must get right to be liked; colour, class, background and shape count
    // always are. Size and position are judged only when these say so.
    bool judge_size = false;
    bool judge_position = false;
    std::string objective = "kto";  // kto, sft or dpo (the trainer's objectives)
    int steps = 250;              // optimizer steps per round
    int batch = 8;
    double lr = 2e-4;             // peak; warmup 10 steps, cosine decay (the demo preset)
    double beta = 50;             // the demo preset's implicit-reward scale
    std::string work_dir;         // renders and training runs; empty: <model_dir>.align-work (removed after)
    uint64_t seed = 20261125;
    int threads = 0;
};

struct DemoAlignRound {
    int images = 0, liked = 0;
    double colour_right = 0;      // share of the round's named shape colours the scorer read right
    double seconds = 0;
};

// The alignment phase of a train-demo run: its folder, align_* options, seed, threads.
DemoAlignOptions demo_alignment(const DemoTrainOptions& options);
// Runs the rounds on the folder in place. kto::Cancelled when `progress` returns false.
std::vector<DemoAlignRound> align_demo_model(const DemoAlignOptions& options,
                                             const std::function<bool(const DemoProgress&)>& progress = {});

struct DemoEvalOptions {
    std::string model_dir;
    int prompts = 200;       // held-out prompts (their own seed stream, never the training one)
    int steps = 20;          // sampling steps (DDIM unless `sampler` says otherwise)
    double guidance = 5.0;   // classifier-free guidance scale
    double guidance_rescale = 0.0;  // diffusers' guidance_rescale (0: off, the measure)
    std::string sampler;     // a sampler_names() entry; empty: the folder's scheduler (DDIM)
    uint64_t seed = 777;     // prompt and noise seeds
    // Two-shape prompts name their shapes in reading order (as a model trained with
    // DemoTrainOptions::reading_order learned); otherwise in random order.
    bool reading_order = false;
    int batch = 8;
    std::string grid_png;    // if set, a grid of the first images with their prompts' order
    int grid_columns = 8;
    int grid_rows = 6;
    int speed_runs = 7;      // timed single-image generations (median reported); 0 = skip
    int threads = 0;
    bool reconstruct = false;  // score the VAE round trip of the prompts' own renders instead
    // With reconstruct: each latent's departure from its image's background code (the per-channel
    // median over the cells) times this before decoding. Strong guidance pushes a shape's latents
    // past the data in just this way; > 1 shows whether the decoder keeps their colour.
    double latent_gain = 1.0;
    // With reconstruct: move the latents this far (0 to 1) towards a 3x3-blurred copy before
    // decoding, as a UNet that cannot place an edge to within a cell leaves them.
    double latent_blur = 0;
    torch::Device device = torch::kCPU;  // generation runs here; noise is drawn on the CPU
    torch::ScalarType dtype = torch::kFloat32;  // weights and activations (bf16: see default_dtype)
};

// One scored generation: what the prompt asked and what the scorer read from the pixels.
struct DemoEvalImage {
    std::string prompt;
    uint64_t seed = 0;
    shapes::Fidelity fidelity;
    shapes::SceneEstimate read;
};

struct DemoEvalResult {
    int images = 0;
    double colour_right = 0, background_right = 0, class_right = 0;  // shares in [0, 1]
    double size_right = 0, position_right = 0;
    double median_seconds_per_image = 0;  // 64x64, `steps` steps, CFG, batch 1
    std::vector<std::string> prompts;
    std::vector<DemoEvalImage> details;  // one per image, in prompt order
    // Shape colours read wrong, as ("asked -> read", count), most frequent first; "none" when the
    // image has no blob for the shape.
    std::vector<std::pair<std::string, int>> colour_misses;
};

// Generates one image per held-out prompt (20 DDIM steps, CFG) and scores it with the shapes
// scorer; optionally writes a grid PNG and times single-image generation.
DemoEvalResult evaluate_demo_model(const DemoEvalOptions& options,
                                   const std::function<void(int done, int total)>& progress = {});

// How far apart the named colours lie in the diffusion's latent space: RMS difference of the
// scaled latents (VAE posterior mean x scaling_factor) of one scene, a large circle at the centre
// on `background`, drawn in each named colour. [8,8] float64, rows and columns in kAllColours
// order. The closest pairs are the ones generation confuses most.
torch::Tensor demo_colour_latent_distances(const std::string& model_dir, shapes::Colour background);

// Generates images for `prompts` (one seed each) with the model in `model_dir`:
// DDIM (eta 0, the folder's scheduler config), classifier-free guidance. Returns [N,3,64,64] in [-1,1].
torch::Tensor demo_generate(const std::string& model_dir, const std::vector<std::string>& prompts,
                            const std::vector<uint64_t>& seeds, int steps = 20, double guidance = 5.0);

}  // namespace kto
