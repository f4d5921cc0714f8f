#pragma once
// Diffusion-KTO fine-tuning of a diffusers-layout model (shared/guide/KTO.md): the options with
// their documented defaults, the prepared training set, the step engine (Trainer) and the
// background job (TrainingJob) with per-step callbacks, previews, pause / cancel, atomic checkpoints
// and resume.
//
// Run folder (`out_dir`, e.g. <workspace>/runs/<id>/):
//   config.json                    the full configuration of the run
//   metrics.jsonl                  one JSON object per optimizer step
//   previews/step-N/pP-sS.png      probe prompt P x seed S rendered with the weights at step N
//   checkpoints/step-N/            unet/ (diffusers layout) or pytorch_lora_weights.safetensors,
//                                  optimizer.safetensors (AdamW moments), trainer_state.json
// Thread-safety: a Trainer is used from one thread; TrainingJob's control methods (pause, resume,
// cancel, state) may be called from any thread, its callbacks run on the training thread.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/train/dataset.h"
#include "core/train/latent_cache.h"
#include "core/train/objectives.h"

namespace kto {

class Scheduler;
class UNet2DConditionModelImpl;
class UNetLoRA;
class DistributedContext;
class GradientReducer;

enum class LrSchedule { constant, cosine };
// "constant" or "cosine"; anything else is an Error that names `what` (the flag or config key).
LrSchedule parse_lr_schedule(const std::string& text, const std::string& what = "LR schedule");
enum class MixedPrecision { no, fp16, bf16 };

struct LoraOptions {
    bool enabled = false;  // false: the full UNet is trained
    int rank = 4;
    double alpha = 4.0;  // scale = alpha / rank (the reference trainer uses alpha = rank)
    std::vector<std::string> targets = {"to_q", "to_k", "to_v", "to_out.0"};
};

struct TrainOptions {
    // Objective (KTO.md).
    ObjectiveKind objective = ObjectiveKind::kto;
    std::optional<double> beta;        // unset: default_beta(objective): 1000 KTO, 5000 DPO
    double lambda_desirable = 1.0;
    double lambda_undesirable = 1.0;
    ReferencePoint reference_point = ReferencePoint::batch_mean;
    Utility utility = Utility::sigmoid;
    bool allow_one_class = false;      // KTO on liked-only or disliked-only data (warned)

    // Optimisation (reference run: batch 8, constant LR 1e-7, 200 warmup steps, AdamW, clip 1.0).
    int64_t steps = 1000;              // optimizer steps
    int batch_size = 2;                // samples per micro-batch (DPO: pairs)
    int grad_accumulation = 1;         // micro-batches per optimizer step
    double learning_rate = 1e-7;       // SD 1.5 full fine-tune; the demo model wants ~1e-4
    int64_t warmup_steps = 200;        // linear warmup from 0 (diffusers' schedulers)
    LrSchedule lr_schedule = LrSchedule::constant;
    double adam_beta1 = 0.9;
    double adam_beta2 = 0.999;
    double weight_decay = 1e-2;
    double adam_epsilon = 1e-8;
    double max_grad_norm = 1.0;        // <= 0: no clipping
    uint64_t seed = 0;

    // Data (KTO.md, "Training recipe").
    int resolution = 0;                // 0: the UNet's sample_size x 8
    double caption_dropout = 0.2;      // share of captions replaced by ""
    double positive_ratio = 0.8;       // P(desirable) per draw
    double flip_probability = 0.5;     // P(horizontal flip) per draw; 0 where captions name left/right

    LoraOptions lora;

    // Device: "cpu" or "cuda[:N]". Mixed precision (CUDA only): autocast with fp32 master weights
    // and an fp32 loss; fp16 adds dynamic loss scaling.
    std::string device = "cpu";
    MixedPrecision mixed_precision = MixedPrecision::no;
    bool gradient_checkpointing = false;

    // Run folder outputs.
    int64_t checkpoint_every = 500;    // <= 0: only at the end
    int keep_last = 3;                 // checkpoints kept (the final one always is)
    int64_t preview_every = 0;         // steps; <= 0: previews off (also at step 0 when on)
    double preview_every_minutes = 0;  // > 0: also when this much time has passed since the last
    std::vector<std::string> probe_prompts;
    std::vector<int64_t> probe_seeds = {0};
    int preview_steps = 20;
    double preview_guidance = 7.5;
    std::string preview_sampler = "ddim";
    std::string cache_dir;             // latent cache; empty: <out_dir>/../latent-cache

    double effective_beta() const { return beta ? *beta : default_beta(objective); }
    nlohmann::json to_json() const;
    // Reads what to_json writes; unknown keys are errors naming the key.
    static TrainOptions from_json(const nlohmann::json& j);
    // Throws kto::Error naming the first invalid field.
    void validate() const;
};

// Starting points per model kind: "sd15" (the reference run's recipe) and "demo" (the built-in
// 64x64 demo model: higher LR, short warmup, small batches, CPU-friendly). Throws for other names.
TrainOptions train_preset(const std::string& name);

// Encoded training data, all on the CPU.
struct TrainingSet {
    std::vector<ImageLatents> latents;          // per example: mean/std [2,C,h,w] (unflipped, flipped)
    std::vector<bool> desirable;                // per example
    std::vector<int64_t> caption_index;         // per example, row of `embeddings`
    torch::Tensor embeddings;                   // [U,77,D] one per distinct caption
    torch::Tensor empty_embedding;              // [77,D] embedding of "" (caption dropout)
    std::vector<std::pair<size_t, size_t>> pairs;  // DPO (winner, loser) example indices
    double scaling_factor = 0.18215;            // VAE latent scale
    std::vector<SkippedImage> skipped;
    std::vector<std::string> warnings;
    size_t size() const { return desirable.size(); }
};

// Decodes, encodes (through the cache) and checks: missing or corrupt images are skipped and listed;
// the checks of check_records() are applied to what remains.
TrainingSet build_training_set(const std::vector<TrainRecord>& records, const TrainOptions& options,
                               int resolution, LatentCache& cache, const LatentEncoders& encoders,
                               double scaling_factor,
                               const std::function<bool(size_t, size_t)>& progress = {});

struct StepMetrics {
    int64_t step = 0;          // optimizer steps done
    int64_t total_steps = 0;
    double loss = 0;
    double reward_margin = 0;  // NaN when not defined for the step (see ObjectiveResult)
    double kl = 0;
    double grad_norm = 0;      // before clipping
    double lr = 0;
    double samples_per_second = 0;
    double eta_seconds = 0;
    double elapsed_seconds = 0;
    nlohmann::json to_json() const;
};

// One optimizer step at a time on a loaded UNet. The reference is `reference` (a frozen copy) for
// full fine-tuning, or the same UNet with its LoRA adapters disabled.
class Trainer {
public:
    struct Parts {
        std::shared_ptr<UNet2DConditionModelImpl> unet;       // trained (its adapters, with LoRA)
        std::shared_ptr<UNet2DConditionModelImpl> reference;  // frozen copy; null with LoRA
        std::shared_ptr<Scheduler> noise_scheduler;           // DDPM from the model's scheduler config
        nlohmann::json unet_config;                           // written with full checkpoints
        // LoRA only: switches the adapters, lists their parameters by PEFT name, writes the
        // diffusers-loadable LoRA file.
        std::function<void(bool)> set_adapters_enabled;
        std::vector<std::pair<std::string, torch::Tensor>> lora_parameters;
        // Data-parallel run (core/train/distributed.h); null: one worker. options.batch_size is per
        // worker: every rank draws the global batch from the shared seed and trains on its rows.
        std::shared_ptr<DistributedContext> distributed;
        std::function<void(const std::string& path)> save_lora;

        // Wires the three LoRA members above to `lora` (which must outlive the trainer).
        void use_lora(UNetLoRA& lora);
    };
    Trainer(Parts parts, TrainingSet data, TrainOptions options);
    ~Trainer();

    // Runs one optimizer step (grad_accumulation micro-batches) and returns its metrics.
    StepMetrics step();
    int64_t steps_done() const { return step_; }
    double current_lr() const;  // LR of the next step

    // Writes <dir> (must not exist) with weights, optimizer state and trainer state.
    void save_checkpoint(const std::string& dir) const;
    // Restores weights, optimizer and RNG state from a checkpoint written by save_checkpoint.
    void load_checkpoint(const std::string& dir);
    // Data-parallel: copies rank 0's weights, optimizer moments, step and random streams to every
    // rank (e.g. after rank 0 alone loaded a checkpoint). No-op on one worker.
    void sync_from_rank0();

    // Named trainable parameters (UNet state-dict names, or LoRA names).
    const std::vector<std::pair<std::string, torch::Tensor>>& trainable() const { return params_; }
    const TrainOptions& options() const { return options_; }
    torch::Device device() const { return device_; }

private:
    struct Micro;
    Micro draw_micro_batch();
    ObjectiveResult micro_step(const Micro& mb, double scale);
    torch::Tensor model_errors(UNet2DConditionModelImpl& net, const torch::Tensor& x_t, const torch::Tensor& t,
                               const torch::Tensor& context, const torch::Tensor& target);
    void adamw_update(double lr);

    Parts parts_;
    TrainingSet data_;
    TrainOptions options_;
    torch::Device device_;
    std::vector<std::pair<std::string, torch::Tensor>> params_;
    std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
    int64_t step_ = 0;
    double loss_scale_ = 65536.0;  // fp16 only
    int64_t good_steps_ = 0;       // fp16 only: steps since the last overflow
    at::Generator gen_;            // noise, timesteps, latent sampling
    std::unique_ptr<BatchSampler> sampler_;  // examples (or DPO pairs), flips, caption dropout
    std::unique_ptr<GradientReducer> reducer_;  // data-parallel only
};

struct PreviewImage {
    std::string prompt;
    int64_t seed = 0;
    std::string path;     // PNG under previews/step-N/
    torch::Tensor image;  // uint8 [H,W,3]
};

struct TrainCallbacks {
    std::function<void(const StepMetrics&)> on_step;
    std::function<void(int64_t step, const std::vector<PreviewImage>&)> on_preview;
    std::function<void(int64_t step, const std::string& dir)> on_checkpoint;
    // Phase messages, warnings and skipped images ("loading model", "encoding 120 images", ...).
    std::function<void(const std::string&)> on_message;
};

struct TrainRequest {
    std::string model_dir;             // diffusers layout (model_index.json, unet/, vae/, ...)
    std::vector<TrainRecord> records;  // the labelled images
    std::string out_dir;               // the run folder
    TrainOptions options;
    bool resume = false;               // continue from the last complete checkpoint in out_dir
    // Data-parallel run: every rank runs the job; rank 0 alone reads the checkpoint it resumes from
    // and writes config, metrics, previews and checkpoints. Null: one worker.
    std::shared_ptr<DistributedContext> distributed;
};

struct TrainResult {
    int64_t steps_done = 0;
    std::string final_checkpoint;  // checkpoints/step-N (empty if cancelled before any)
    bool cancelled = false;
    LatentCacheStats cache;
};

// The whole job: load the model, prepare data through the latent cache, train, preview,
// checkpoint. run() works on the caller's thread; start() on a background thread.
class TrainingJob {
public:
    enum class State { idle, running, paused, finished, cancelled, failed };

    TrainingJob(TrainRequest request, TrainCallbacks callbacks = {});
    ~TrainingJob();  // cancels and joins a background run
    TrainingJob(const TrainingJob&) = delete;
    TrainingJob& operator=(const TrainingJob&) = delete;

    TrainResult run();  // throws kto::Error on failure
    void start();
    // Waits for a background run; rethrows its error.
    TrainResult wait();

    void pause();   // takes effect between steps; everything stays resident
    void resume();
    void cancel();  // stops within one step (no checkpoint is written for the partial interval)
    State state() const { return state_.load(); }

private:
    TrainResult run_job();  // run() without the out-of-memory translation
    void check_control();  // blocks while paused; throws Cancelled

    TrainRequest request_;
    TrainCallbacks callbacks_;
    std::atomic<State> state_{State::idle};
    std::atomic<bool> pause_requested_{false}, cancel_requested_{false};
    std::mutex mutex_;
    std::condition_variable cv_;
    std::thread thread_;
    TrainResult result_;
    std::exception_ptr error_;
};

// The last complete checkpoint folder under <out_dir>/checkpoints (largest step-N holding a
// trainer_state.json); empty when there is none.
std::string latest_checkpoint(const std::string& out_dir);

}  // namespace kto
