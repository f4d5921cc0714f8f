// TrainingJob: loads the model folder, prepares the data through the latent cache, runs the Trainer
// with previews, metrics and checkpoints, and handles pause / cancel / resume.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/nn/lora.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"
#include "core/sampling/scheduler.h"
#include "core/sampling/scheduler_config.h"
#include "core/train/distributed.h"
#include "core/train/model_encoders.h"
#include "core/train/preview.h"
#include "core/train/trainer.h"

namespace fs = std::filesystem;

namespace kto {

namespace {

void write_json_file(const fs::path& path, const nlohmann::json& j) {
    const auto tmp = path.string() + ".tmp";
    {
        std::ofstream out(tmp);
        out << j.dump(2) << "\n";
        if (!out) throw Error(tmp + ": cannot write");
    }
    fs::rename(tmp, path);
}

// Keeps the newest `keep` step-N folders (and never `protect`).
void prune_checkpoints(const fs::path& root, int keep, const fs::path& protect) {
    std::vector<std::pair<int64_t, fs::path>> found;
    if (!fs::is_directory(root)) return;
    for (const auto& e : fs::directory_iterator(root)) {
        const auto name = e.path().filename().string();
        if (name.rfind("step-", 0) != 0) continue;
        try {
            found.emplace_back(std::stoll(name.substr(5)), e.path());
        } catch (const std::exception&) {
        }
    }
    std::sort(found.begin(), found.end());
    const int64_t excess = static_cast<int64_t>(found.size()) - keep;
    for (int64_t i = 0; i < excess; ++i)
        if (found[static_cast<size_t>(i)].second != protect) fs::remove_all(found[static_cast<size_t>(i)].second);
}

// Drops metrics lines past `step` (steps after the checkpoint a resume starts from).
void truncate_metrics(const fs::path& file, int64_t step) {
    if (!fs::exists(file)) return;
    std::ifstream in(file);
    std::string line, kept;
    while (std::getline(in, line)) {
        try {
            const auto j = nlohmann::json::parse(line);
            if (j.value("step", int64_t(0)) <= step) kept += line + "\n";
        } catch (const std::exception&) {
            // A torn last line from a crash is dropped.
        }
    }
    in.close();
    std::ofstream(file, std::ios::trunc) << kept;
}

}  // namespace

TrainingJob::TrainingJob(TrainRequest request, TrainCallbacks callbacks)
    : request_(std::move(request)), callbacks_(std::move(callbacks)) {}

TrainingJob::~TrainingJob() {
    if (thread_.joinable()) {
        cancel();
        thread_.join();
    }
}

void TrainingJob::pause() {
    pause_requested_ = true;
}

void TrainingJob::resume() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        pause_requested_ = false;
    }
    cv_.notify_all();
}

void TrainingJob::cancel() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        cancel_requested_ = true;
    }
    cv_.notify_all();
}

void TrainingJob::check_control() {
    if (cancel_requested_) throw Cancelled();
    if (!pause_requested_) return;
    std::unique_lock<std::mutex> lock(mutex_);
    state_ = State::paused;
    cv_.wait(lock, [&] { return !pause_requested_ || cancel_requested_; });
    state_ = State::running;
    if (cancel_requested_) throw Cancelled();
}

void TrainingJob::start() {
    if (thread_.joinable() || state_ == State::running) throw Error("training job already started");
    state_ = State::running;
    thread_ = std::thread([this] {
        try {
            result_ = run();
        } catch (...) {
            error_ = std::current_exception();
            state_ = State::failed;
        }
    });
}

TrainResult TrainingJob::wait() {
    if (thread_.joinable()) thread_.join();
    if (error_) std::rethrow_exception(error_);
    return result_;
}

TrainResult TrainingJob::run() {
    try {
        return run_job();
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        if (!is_out_of_memory(e)) throw;
        release_cached_device_memory();
        state_ = State::failed;
        const TrainOptions& o = request_.options;
        std::ostringstream os;
        os << "out of memory while training on " << o.device << " (batch " << o.batch_size << ", "
           << (o.resolution > 0 ? std::to_string(o.resolution) + " px" : std::string("the model's resolution")) << ", "
           << (o.lora.enabled ? "LoRA rank " + std::to_string(o.lora.rank) : std::string("full fine-tuning"))
           << "): " << short_error_message(e) << ". Try a smaller batch size (raise gradient accumulation to keep "
           << "the effective batch)";
        if (!o.lora.enabled) os << ", LoRA instead of full fine-tuning";
        os << ", a lower resolution";
        if (o.device.rfind("cuda", 0) == 0) {
            if (o.mixed_precision == MixedPrecision::no) os << ", mixed precision (bf16)";
            if (!o.gradient_checkpointing) os << ", gradient checkpointing";
        }
        os << ".";
        const std::string last = latest_checkpoint(request_.out_dir);
        if (!last.empty()) os << " The last checkpoint (" << last << ") is kept: resume from it with the new settings.";
        throw OutOfMemory(os.str());
    }
}

TrainResult TrainingJob::run_job() {
    state_ = State::running;
    auto say = [&](const std::string& m) {
        if (callbacks_.on_message) callbacks_.on_message(m);
    };
    TrainOptions o = request_.options;
    o.validate();
    const fs::path out(request_.out_dir);
    const fs::path model(request_.model_dir);
    if (out.empty()) throw Error("training: no output folder given");
    const auto& dist = request_.distributed;
    const bool writer = !dist || dist->is_main();  // data-parallel: rank 0 alone writes the run folder
    if (writer) fs::create_directories(out);
    if (o.cache_dir.empty()) o.cache_dir = (fs::absolute(out).parent_path() / "latent-cache").string();

    std::string resume_from;
    if (!writer) {
        // Other ranks receive rank 0's state after it has read the checkpoint (sync_from_rank0).
    } else if (request_.resume) {
        resume_from = latest_checkpoint(out.string());
        if (resume_from.empty()) say("no complete checkpoint in " + out.string() + "; starting from step 0");
    } else if (!latest_checkpoint(out.string()).empty()) {
        throw Error(out.string() + ": holds checkpoints of an earlier run; resume it (--resume) or choose "
                                   "another output folder");
    }

    // Model.
    say("loading " + model.string());
    const torch::Device device(o.device);
    auto sched_cfg = SchedulerConfig::from_file((model / "scheduler" / "scheduler_config.json").string());
    std::shared_ptr<Scheduler> noise_scheduler(make_scheduler("ddpm", sched_cfg));
    auto unet = load_unet((model / "unet").string(), device, torch::kFloat32);
    Trainer::Parts parts;
    parts.unet = unet.ptr();
    parts.unet_config = unet->config().raw;
    parts.noise_scheduler = noise_scheduler;
    std::unique_ptr<UNetLoRA> lora;
    UNet2DConditionModel reference{nullptr};
    if (o.lora.enabled) {
        LoRAConfig lc;
        lc.rank = o.lora.rank;
        lc.alpha = o.lora.alpha;
        lc.targets = o.lora.targets;
        lc.dtype = torch::kFloat32;  // fp32 master weights for the adapters
        torch::manual_seed(o.seed);  // adapter initialisation is part of the seeded run
        lora = std::make_unique<UNetLoRA>(unet, lc);
        parts.use_lora(*lora);
    } else if (o.objective != ObjectiveKind::sft) {
        // A frozen copy of the starting UNet (KTO.md: no EMA); half precision under autocast.
        const auto ref_dtype = o.mixed_precision == MixedPrecision::bf16   ? torch::kBFloat16
                               : o.mixed_precision == MixedPrecision::fp16 ? torch::kHalf
                                                                           : torch::kFloat32;
        reference = load_unet((model / "unet").string(), device, ref_dtype);
        parts.reference = reference.ptr();
    }

    // Data.
    ModelEncoders encoders(model.string(), device);
    const int resolution =
        o.resolution > 0 ? o.resolution : static_cast<int>(unet->config().sample_size) * encoders.vae_scale_factor();
    say("preparing " + std::to_string(request_.records.size()) + " images at " + std::to_string(resolution) +
        " px (latent cache: " + o.cache_dir + ")");
    LatentCache cache(o.cache_dir);
    auto data = build_training_set(request_.records, o, resolution, cache, encoders.encoders(),
                                   encoders.scaling_factor(), [&](size_t, size_t) {
                                       return !cancel_requested_.load();
                                   });
    for (const auto& s : data.skipped) say("skipped " + s.path + ": " + s.reason);
    for (const auto& w : data.warnings) say("warning: " + w);
    encoders.release();  // the VAE and text encoder are not needed while training
    const auto stats = cache.stats();
    say("latent cache: " + std::to_string(stats.image_hits) + " images reused, " +
        std::to_string(stats.image_misses) + " encoded; " + std::to_string(stats.text_hits) +
        " captions reused, " + std::to_string(stats.text_misses) + " encoded");

    size_t liked = 0;
    for (bool d : data.desirable) liked += d ? 1 : 0;
    nlohmann::json config = {{"model", fs::absolute(model).string()},
                             {"resolution", resolution},
                             {"options", o.to_json()},
                             {"data",
                              {{"records", request_.records.size()},
                               {"used", data.size()},
                               {"liked", liked},
                               {"disliked", data.size() - liked},
                               {"captions", data.embeddings.size(0)},
                               {"dpo_pairs", data.pairs.size()},
                               {"skipped", data.skipped.size()}}},
                             {"noise_scheduler", sched_cfg.to_json()},
                             {"prediction_type", noise_scheduler->prediction_type()}};
    if (!resume_from.empty()) config["resumed_from"] = resume_from;
    if (dist && dist->distributed()) {
        config["workers"] = dist->world_size();
        config["global_batch"] = o.batch_size * dist->world_size();
        // Data preparation takes as long as each rank's cache misses: wait here without a collective
        // timeout, then check that every rank prepared the same training set.
        dist->wait_for_all("training data prepared", std::max<std::chrono::milliseconds>(dist->timeout(), std::chrono::hours(2)));
        dist->expect_same({double(data.size()), double(liked), double(data.embeddings.size(0)), double(data.pairs.size())},
                          "the training set (images, liked, captions, pairs)");
    }
    if (writer) write_json_file(out / "config.json", config);

    parts.distributed = dist;
    Trainer trainer(parts, std::move(data), o);
    if (!resume_from.empty()) {
        trainer.load_checkpoint(resume_from);
        say("resumed from " + resume_from + " at step " + std::to_string(trainer.steps_done()));
    }
    trainer.sync_from_rank0();
    if (writer) truncate_metrics(out / "metrics.jsonl", trainer.steps_done());

    // Previews render with their own generators (seeded per probe), so training draws are untouched.
    std::unique_ptr<PreviewRenderer> previews;
    if (writer && (o.preview_every > 0 || o.preview_every_minutes > 0))
        previews = std::make_unique<PreviewRenderer>(model.string(), device, o);
    auto last_preview = std::chrono::steady_clock::now();
    auto render_preview = [&](int64_t step) {
        if (!previews) return;
        const fs::path dir = out / "previews" / ("step-" + std::to_string(step));
        auto imgs = previews->render(*unet, dir.string(), [&] { return !cancel_requested_.load(); });
        last_preview = std::chrono::steady_clock::now();
        if (callbacks_.on_preview) callbacks_.on_preview(step, imgs);
    };

    TrainResult result;
    std::string last_ckpt;
    const fs::path ckpt_root = out / "checkpoints";
    auto checkpoint = [&]() {
        if (!writer) return;
        const int64_t step = trainer.steps_done();
        const fs::path final_dir = ckpt_root / ("step-" + std::to_string(step));
        if (fs::exists(final_dir / "trainer_state.json")) return;
        const fs::path tmp = ckpt_root / (".tmp-step-" + std::to_string(step));
        try {
            fs::remove_all(tmp);
            fs::create_directories(ckpt_root);
            trainer.save_checkpoint(tmp.string());
            fs::remove_all(final_dir);
            fs::rename(tmp, final_dir);  // atomic: a checkpoint is either complete or absent
        } catch (const std::exception& e) {
            // Disk full or gone: drop the partial folder (it would only take space) and say what
            // the run still has to resume from.
            std::error_code ignored;
            fs::remove_all(tmp, ignored);
            const std::string previous = latest_checkpoint(out.string());
            throw Error("writing the checkpoint of step " + std::to_string(step) + " failed: " + e.what() +
                        ". " + (previous.empty() ? std::string("No earlier checkpoint exists")
                                                 : "The last complete checkpoint is " + previous) +
                        "; free disk space and resume the run (--resume)");
        }
        last_ckpt = final_dir.string();
        prune_checkpoints(ckpt_root, o.keep_last, final_dir);
        if (callbacks_.on_checkpoint) callbacks_.on_checkpoint(step, last_ckpt);
    };

    std::ofstream metrics;
    if (writer) metrics.open(out / "metrics.jsonl", std::ios::app);
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t first_step = trainer.steps_done();
    try {
        if (first_step == 0 && o.preview_every > 0) render_preview(0);
        double rate_sum = 0;
        while (trainer.steps_done() < o.steps) {
            check_control();
            fault_point("train-step");
            auto m = trainer.step();
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const int64_t done_here = trainer.steps_done() - first_step;
            rate_sum += m.samples_per_second;
            m.samples_per_second = rate_sum / static_cast<double>(done_here);
            m.elapsed_seconds = elapsed;
            m.eta_seconds = elapsed / static_cast<double>(done_here) * static_cast<double>(o.steps - m.step);
            if (writer) metrics << m.to_json().dump() << "\n" << std::flush;
            if (callbacks_.on_step) callbacks_.on_step(m);
            const int64_t step = trainer.steps_done();
            if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0 && step < o.steps) checkpoint();
            const bool by_steps = o.preview_every > 0 && step % o.preview_every == 0;
            const bool by_time =
                o.preview_every_minutes > 0 &&
                std::chrono::duration<double>(std::chrono::steady_clock::now() - last_preview).count() >=
                    o.preview_every_minutes * 60.0;
            if (previews && (by_steps || by_time)) render_preview(step);
        }
        checkpoint();
        state_ = State::finished;
    } catch (const Cancelled&) {
        result.cancelled = true;
        state_ = State::cancelled;
        say("cancelled at step " + std::to_string(trainer.steps_done()));
    }
    result.steps_done = trainer.steps_done();
    result.final_checkpoint = last_ckpt;
    result.cache = stats;
    return result;
}

}  // namespace kto
