// `kto-studio-cli train`: Diffusion-KTO (or SFT / Diffusion-DPO) fine-tuning from an exported dataset
// folder or a workspace's labels, with a progress line; Ctrl-C cancels within one step.
#include <unistd.h>

#include <atomic>
#include <optional>

#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "app/cli/command.h"
#include "app/cli/duration_text.h"
#include "core/common/error.h"
#include "core/io/model_folder.h"
#include "core/train/dataset.h"
#include "core/train/dist_launcher.h"
#include "core/train/distributed.h"
#include "core/train/trainer.h"
#include "storage/store/store.h"
#include "storage/store/workspace.h"
#include "app/cli/workspace_options.h"

namespace {

std::atomic<kto::TrainingJob*> g_job{nullptr};

extern "C" void on_sigint(int) {
    if (auto* job = g_job.load()) job->cancel();
}

std::string num(double v, const char* fmt) {
    if (!std::isfinite(v)) return "-";
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, v);
    return buf;
}

struct Args {
    std::string model, data, workspace, records, options_file, out, preset;
    std::string objective, reference_point, utility, schedule, mixed_precision, intersections = "like";
    kto::cli::ImageFilterArgs filters;
    std::optional<double> beta, lr, lambda_d, lambda_u, caption_dropout, positive_ratio, grad_clip, flip;
    std::optional<int64_t> steps, warmup, checkpoint_every, preview_every;
    std::optional<int> batch, accum, resolution, keep_last, lora_rank, preview_steps;
    std::optional<double> lora_alpha;
    std::optional<uint64_t> seed;
    std::vector<std::string> probe_prompts;
    std::vector<int64_t> probe_seeds;
    std::string device, cache;
    bool lora = false, resume = false, allow_one_class = false, gradient_checkpointing = false;
    int nproc = 1;
};

// This process's arguments (from /proc/self/cmdline) without `--nproc N` / `--nproc=N`.
std::vector<std::string> worker_arguments() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::vector<std::string> args;
    for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
    if (args.empty()) throw kto::Error("train --nproc: cannot read this process's arguments");
    std::vector<std::string> out{kto::current_executable()};
    for (size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--nproc") {
            ++i;
            continue;
        }
        if (args[i].rfind("--nproc=", 0) == 0) continue;
        out.push_back(args[i]);
    }
    return out;
}

// `--nproc N`: N local data-parallel workers, started as torchrun starts them (RANK, WORLD_SIZE,
// MASTER_ADDR/PORT in their environment); rank 0 writes the run folder. CPU threads are split
// between the workers unless KTO_THREADS says otherwise.
int launch_local_training(const Args& a) {
    kto::LocalLaunchOptions lo;
    lo.nproc = a.nproc;
    lo.argv = worker_arguments();
    if (!std::getenv("KTO_THREADS")) {
        const long cores = sysconf(_SC_NPROCESSORS_ONLN);
        lo.extra_env["KTO_THREADS"] = std::to_string(std::max<long>(1, cores / a.nproc));
    }
    std::cerr << "starting " << a.nproc << " local workers\n";
    const kto::LocalLaunchResult r = kto::launch_local_workers(lo);
    if (r.exit_code != 0)
        std::cerr << "worker " << r.first_failed_rank << " failed (exit status " << r.exit_code
                  << "); the run folder keeps its last complete checkpoint\n";
    return r.exit_code;
}

std::vector<kto::TrainRecord> workspace_records(const Args& a) {
    namespace st = kto::storage;
    if (!std::filesystem::exists(std::filesystem::path(a.workspace) / "studio.sqlite3"))
        throw kto::Error(a.workspace + ": not a workspace (no studio.sqlite3)");
    st::Store store{st::Workspace(a.workspace)};
    auto f = a.filters;
    if (f.label.empty() || f.label == "any") f.label = "labeled";
    if (f.label == "unlabeled") throw kto::Error("--label unlabeled: unlabeled images carry no training signal");
    const st::ImageQuery q = kto::cli::to_query(f);
    std::vector<kto::TrainRecord> out;
    for (const auto& img : store.query_images(q)) {
        if (img.label == st::Label::None) continue;
        out.push_back({img.path.string(), img.prompt, img.label == st::Label::Like});
    }
    return out;
}

int run_train(const Args& a) {
    if (a.nproc < 1) throw kto::Error("--nproc: expected a number of workers >= 1");
    const auto dist_env = kto::DistributedOptions::from_environment();
    if (a.nproc > 1 && dist_env)
        throw kto::Error("--nproc: this process is already a worker (WORLD_SIZE is set); launch with either "
                         "--nproc or torchrun-style environment variables, not both");
    if (a.nproc > 1) return launch_local_training(a);
    if (int(!a.data.empty()) + int(!a.workspace.empty()) + int(!a.records.empty()) != 1)
        throw kto::Error("train: give exactly one of --data DIR (an exported dataset folder), "
                         "--workspace DIR (train on the workspace's labels) or --records FILE (a snapshot "
                         "of labelled images)");
    if (!a.options_file.empty() && !a.preset.empty())
        throw kto::Error("train: give --options FILE or --preset NAME, not both");
    kto::TrainOptions o = !a.options_file.empty() ? kto::TrainOptions::from_json(kto::read_json_file(a.options_file))
                          : a.preset.empty()      ? kto::TrainOptions{}
                                                  : kto::train_preset(a.preset);
    if (!a.objective.empty()) o.objective = kto::parse_objective(a.objective, "--objective");
    if (a.beta) o.beta = *a.beta;
    if (a.lambda_d) o.lambda_desirable = *a.lambda_d;
    if (a.lambda_u) o.lambda_undesirable = *a.lambda_u;
    if (!a.reference_point.empty()) o.reference_point = kto::parse_reference_point(a.reference_point, "--reference-point");
    if (!a.utility.empty()) o.utility = kto::parse_utility(a.utility, "--utility");
    o.allow_one_class = o.allow_one_class || a.allow_one_class;
    if (a.steps) o.steps = *a.steps;
    if (a.batch) o.batch_size = *a.batch;
    if (a.accum) o.grad_accumulation = *a.accum;
    if (a.lr) o.learning_rate = *a.lr;
    if (a.warmup) o.warmup_steps = *a.warmup;
    if (!a.schedule.empty()) o.lr_schedule = kto::parse_lr_schedule(a.schedule, "--schedule");
    if (a.grad_clip) o.max_grad_norm = *a.grad_clip;
    if (a.seed) o.seed = *a.seed;
    if (a.resolution) o.resolution = *a.resolution;
    if (a.caption_dropout) o.caption_dropout = *a.caption_dropout;
    if (a.positive_ratio) o.positive_ratio = *a.positive_ratio;
    if (a.flip) o.flip_probability = *a.flip;
    o.lora.enabled = o.lora.enabled || a.lora;
    if (a.lora_rank) o.lora.rank = *a.lora_rank;
    if (a.lora_alpha) o.lora.alpha = *a.lora_alpha;
    else if (a.lora_rank || a.options_file.empty()) o.lora.alpha = static_cast<double>(o.lora.rank);
    if (!a.device.empty()) o.device = a.device;
    if (!a.mixed_precision.empty()) {
        if (a.mixed_precision == "no") o.mixed_precision = kto::MixedPrecision::no;
        else if (a.mixed_precision == "fp16") o.mixed_precision = kto::MixedPrecision::fp16;
        else if (a.mixed_precision == "bf16") o.mixed_precision = kto::MixedPrecision::bf16;
        else throw kto::Error("--mixed-precision: expected no, fp16 or bf16");
    }
    o.gradient_checkpointing = o.gradient_checkpointing || a.gradient_checkpointing;
    if (a.checkpoint_every) o.checkpoint_every = *a.checkpoint_every;
    if (a.keep_last) o.keep_last = *a.keep_last;
    if (!a.probe_prompts.empty()) o.probe_prompts = a.probe_prompts;
    if (!a.probe_seeds.empty()) o.probe_seeds = a.probe_seeds;
    if (a.preview_every) o.preview_every = *a.preview_every;
    if (a.preview_steps) o.preview_steps = *a.preview_steps;
    if (o.preview_every > 0 && o.probe_prompts.empty()) o.preview_every = 0;  // nothing to preview
    if (!a.cache.empty()) o.cache_dir = a.cache;

    kto::TrainRequest req;
    req.model_dir = a.model;
    req.out_dir = a.out;
    req.resume = a.resume;
    req.options = o;
    const bool main_rank = !dist_env || dist_env->rank == 0;
    if (dist_env && dist_env->world_size > 1) {
        // A worker of a data-parallel run: CUDA workers take the GPU of their local rank.
        torch::Device device = torch::kCPU;
        if (o.device.rfind("cuda", 0) == 0) {
            o.device = "cuda:" + std::to_string(dist_env->local_rank);
            device = torch::Device(o.device);
            req.options.device = o.device;
        }
        req.distributed = std::make_shared<kto::DistributedContext>(*dist_env, device);
    }
    if (!a.records.empty()) {
        req.records = kto::read_records_file(a.records);
    } else if (!a.data.empty()) {
        kto::DatasetFolderOptions fo;
        if (a.intersections == "skip") fo.intersections_desirable = false;
        else if (a.intersections != "like") throw kto::Error("--intersections: expected like or skip");
        req.records = kto::read_dataset_folder(a.data, fo);
    } else {
        req.records = workspace_records(a);
    }

    const bool tty = isatty(STDERR_FILENO);
    kto::TrainCallbacks cb;
    cb.on_message = [&](const std::string& m) { std::cerr << (tty ? "\r\033[K" : "") << m << "\n"; };
    cb.on_step = [&](const kto::StepMetrics& m) {
        const bool print =
            main_rank && (tty || m.step == m.total_steps || m.step % 10 == 0 || m.step == 1);
        if (!print) return;
        std::cerr << (tty ? "\r\033[K" : "") << "step " << m.step << "/" << m.total_steps
                  << "  loss " << num(m.loss, "%.4f") << "  margin " << num(m.reward_margin, "%+.2e")
                  << "  kl " << num(m.kl, "%.2e") << "  |g| " << num(m.grad_norm, "%.3f") << "  lr "
                  << num(m.lr, "%.1e") << "  " << num(m.samples_per_second, "%.1f") << " samples/s  ETA "
                  << kto::cli::duration_text(m.eta_seconds) << (tty ? "" : "\n") << std::flush;
    };
    cb.on_checkpoint = [&](int64_t, const std::string& dir) {
        std::cerr << (tty ? "\r\033[K" : "") << "checkpoint " << dir << "\n";
    };
    cb.on_preview = [&](int64_t step, const std::vector<kto::PreviewImage>& imgs) {
        std::cerr << (tty ? "\r\033[K" : "") << "previews at step " << step << ": " << imgs.size()
                  << " images" << (imgs.empty() ? "" : " in " + std::filesystem::path(imgs[0].path).parent_path().string())
                  << "\n";
    };
    kto::TrainingJob job(req, cb);
    g_job = &job;
    auto previous = std::signal(SIGINT, on_sigint);
    kto::TrainResult r;
    try {
        r = job.run();
    } catch (...) {
        std::signal(SIGINT, previous);
        g_job = nullptr;
        throw;
    }
    std::signal(SIGINT, previous);
    g_job = nullptr;
    if (tty) std::cerr << "\n";
    if (r.cancelled) {
        std::cout << "cancelled after " << r.steps_done << " steps"
                  << (r.final_checkpoint.empty() ? "" : "; last checkpoint " + r.final_checkpoint) << "\n";
        return 130;
    }
    if (!main_rank) {
        std::cout << "worker " << dist_env->rank << " done after " << r.steps_done << " steps\n";
        return 0;
    }
    std::cout << "trained " << r.steps_done << " steps; checkpoint " << r.final_checkpoint << "\n";
    return 0;
}

kto::cli::CommandRegistrar reg{
    {"train", "Fine-tune a model on liked/disliked images with Diffusion-KTO (or SFT / DPO)",
     [](CLI::App& sub) -> std::function<int()> {
         auto a = std::make_shared<Args>();
         sub.add_option("--model", a->model, "Base model folder (diffusers layout)")->required();
         sub.add_option("--data", a->data, "Exported dataset folder (train_processed_v3.csv + train/)");
         sub.add_option("--workspace", a->workspace, "Train on this workspace's labelled images");
         sub.add_option("--records", a->records,
                        "Train on a snapshot of labelled images: a JSON array of {image, caption, liked} "
                        "(the app writes one per multi-process run)");
         sub.add_option("--options", a->options_file,
                        "Trainer options as JSON (a run's config.json \"options\"); the flags below override");
         sub.add_option("--label", a->filters.label, "Workspace filter: liked, disliked or labeled (default)")
             ->check(CLI::IsMember({"liked", "disliked", "labeled", "any"}));
         sub.add_option("--prompt", a->filters.prompt, "Workspace filter: prompt contains this text");
         sub.add_option("--model-name", a->filters.model, "Workspace filter: images of this model name");
         sub.add_option("--since", a->filters.since, "Workspace filter: created on or after (ISO-8601)");
         sub.add_option("--until", a->filters.until, "Workspace filter: created on or before (ISO-8601)");
         sub.add_option("--limit", a->filters.limit, "Workspace filter: at most this many images");
         sub.add_option("--intersections", a->intersections, "Dataset rows labelled 'intersections': like|skip");
         sub.add_option("--out", a->out, "Run folder (config, metrics, previews, checkpoints)")->required();
         sub.add_option("--preset", a->preset, "Starting options: sd15 (the reference recipe) or demo");
         sub.add_option("--objective", a->objective, "kto (default), sft or dpo");
         sub.add_option("--beta", a->beta, "Implicit-reward scale (default 1000 for KTO, 5000 for DPO)");
         sub.add_option("--lambda-d", a->lambda_d, "KTO weight of liked images (default 1)");
         sub.add_option("--lambda-u", a->lambda_u, "KTO weight of disliked images (default 1)");
         sub.add_option("--reference-point", a->reference_point, "batch_mean (default) or class_mean");
         sub.add_option("--utility", a->utility, "sigmoid (default) or loss_averse");
         sub.add_flag("--allow-one-class", a->allow_one_class, "Allow KTO on only liked or only disliked images");
         sub.add_option("--steps", a->steps, "Optimizer steps (default 1000)");
         sub.add_option("--batch", a->batch, "Samples (DPO: pairs) per micro-batch (default 2)");
         sub.add_option("--grad-accum", a->accum, "Micro-batches per optimizer step (default 1)");
         sub.add_option("--lr", a->lr, "Learning rate (default 1e-7; demo preset 2e-4)");
         sub.add_option("--warmup", a->warmup, "Linear warmup steps (default 200)");
         sub.add_option("--schedule", a->schedule, "LR after warmup: constant (default) or cosine");
         sub.add_option("--grad-clip", a->grad_clip, "Max gradient norm (default 1.0; 0 = off)");
         sub.add_option("--seed", a->seed, "Seed of the training random streams (default 0)");
         sub.add_option("--resolution", a->resolution, "Training resolution (default: the model's)");
         sub.add_option("--caption-dropout", a->caption_dropout, "Share of empty captions (default 0.2)");
         sub.add_option("--positive-ratio", a->positive_ratio, "P(liked) per draw (default 0.8)");
         sub.add_option("--flip-probability", a->flip,
                        "P(mirror left-right) per draw (default 0.5; demo preset 0: its captions name left and right)");
         sub.add_flag("--lora", a->lora, "Train LoRA adapters instead of the full UNet");
         sub.add_option("--lora-rank", a->lora_rank, "LoRA rank (default 4)");
         sub.add_option("--lora-alpha", a->lora_alpha, "LoRA alpha (default: the rank)");
         sub.add_option("--device", a->device, "cpu (default) or cuda[:N]");
         sub.add_option("--mixed-precision", a->mixed_precision, "Autocast: no (default), fp16 (CUDA) or bf16 (CUDA, or the CPU: fast where it has AMX or AVX512-BF16)");
         sub.add_flag("--gradient-checkpointing", a->gradient_checkpointing, "Recompute UNet blocks in backward");
         sub.add_option("--checkpoint-every", a->checkpoint_every, "Checkpoint every N steps (default 500)");
         sub.add_option("--keep-last", a->keep_last, "Checkpoints kept (default 3)");
         sub.add_option("--probe-prompt", a->probe_prompts, "Preview prompt (repeatable)");
         sub.add_option("--probe-seed", a->probe_seeds, "Preview seed (repeatable; default 0)");
         sub.add_option("--preview-every", a->preview_every, "Render previews every N steps (0 = off)");
         sub.add_option("--preview-steps", a->preview_steps, "Denoising steps of a preview (default 20)");
         sub.add_option("--cache", a->cache, "Latent cache folder (default: <out>/../latent-cache)");
         sub.add_flag("--resume", a->resume, "Continue from the last complete checkpoint in --out");
         sub.add_option("--nproc", a->nproc,
                        "Data-parallel workers started on this machine (default 1; across machines: "
                        "set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT as torchrun does)");
         return [a] { return run_train(*a); };
     }}};

}  // namespace
