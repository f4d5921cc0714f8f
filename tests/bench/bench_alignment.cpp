// Alignment benchmark on the built-in demo model (issue 6): render held-out prompts x fixed seeds,
// label them with the "likes large shapes" taste, fine-tune with KTO, SFT and Diffusion-DPO on
// those labels (CPU), re-render the same prompts and seeds, and report like-rate and colour
// fidelity before and after, plus CPU training throughput.
//
// Knobs (environment): KTO_THREADS (default: every core), KTO_BENCH_STEPS (default: the demo preset's), KTO_BENCH_PROMPTS (50), KTO_BENCH_SEEDS (4),
// KTO_BENCH_LR (demo preset), KTO_BENCH_BETA (objective default), KTO_BENCH_BATCH (demo preset), KTO_BENCH_SCHEDULE (constant or cosine; demo preset), KTO_BENCH_FLIP (flip probability; demo preset), KTO_BENCH_MODEL (default: the demo model; tiny-sd for throughput only),
// (the demo preset trains in bf16 where the CPU has AMX or AVX512-BF16: KTO_BENCH_SET='{"mixed_precision": "no"}' for fp32)
// KTO_BENCH_OBJECTIVES (default "kto,sft,dpo"), KTO_BENCH_SET (a JSON object of training-config fields laid over
// the options of every objective, e.g. '{"lambda_undesirable": 0.5, "lora": {"enabled": true}}'), KTO_BENCH_KEEP (a folder: keeps the images there, with a
// details CSV per set: prompt, seed, liked, colours asked / right).
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <stb/stb_image_write.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/nn/lora.h"
#include "core/nn/unet.h"
#include "core/shapes/caption.h"
#include "core/shapes/scorer.h"
#include "core/shapes/taste.h"
#include "core/train/preview.h"
#include "core/train/trainer.h"
#include "storage/dataset/csv.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

int env_int(const char* name, int fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : fallback;
}

kto::shapes::Image to_shapes_image(const torch::Tensor& u8) {
    kto::shapes::Image img;
    img.height = static_cast<int>(u8.size(0));
    img.width = static_cast<int>(u8.size(1));
    const auto c = u8.contiguous();
    img.rgb.assign(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
    return img;
}

struct Scores {
    double like_rate = 0;
    double colour_fidelity = 0;
    double position_fidelity = 0;  // of the shapes whose position the prompt names
    double background_fidelity = 0;  // of the prompts that name one: guidance still follows the caption
    int n = 0;
};

// `details`: where to write one CSV row per image (empty: nowhere).
Scores score(const std::vector<kto::PreviewImage>& imgs, const std::string& details = {}) {
    kto::shapes::LikesLargeShapes taste;
    Scores s;
    int liked = 0;
    kto::shapes::AttributeScore colour, position, background;  // summed over the images
    const auto add = [](kto::shapes::AttributeScore& sum, const kto::shapes::AttributeScore& one) {
        sum.asked += one.asked;
        sum.right += one.right;
    };
    std::string csv;
    if (!details.empty())
        kto::storage::append_csv_record(csv, {"path", "seed", "liked", "colours_asked", "colours_right", "class_right",
                                              "positions_asked", "positions_right", "background_right", "prompt"});
    for (const auto& p : imgs) {
        const auto img = to_shapes_image(p.image);
        const bool likes = taste.likes(img, p.prompt);
        liked += likes ? 1 : 0;
        const auto f = kto::shapes::fidelity(img, p.prompt);
        if (!details.empty())
            kto::storage::append_csv_record(
                csv, {p.path, std::to_string(p.seed), std::to_string(int(likes)), std::to_string(f.colour.asked),
                      std::to_string(f.colour.right), std::to_string(f.cls.right), std::to_string(f.position.asked),
                      std::to_string(f.position.right), std::to_string(f.background.right), p.prompt});
        add(colour, f.colour);
        add(position, f.position);
        add(background, f.background);
    }
    if (!details.empty()) {
        std::ofstream out(details, std::ios::binary);
        out << csv;
        if (!out) throw kto::Error("bench_alignment: cannot write " + details);
    }
    s.n = static_cast<int>(imgs.size());
    s.like_rate = s.n ? 100.0 * liked / s.n : 0;
    s.colour_fidelity = 100.0 * colour.rate();
    s.position_fidelity = 100.0 * position.rate();
    s.background_fidelity = 100.0 * background.rate();
    return s;
}

}  // namespace

class BenchAlignment : public QObject {
    Q_OBJECT

private slots:
    void alignment() {
        // As the app and the CLI do: every core (KTO_THREADS to choose). Debian's libtorch starts with one thread,
        // and until session 28 this bench ran on it, so its throughput was a one-core figure.
        const int threads = kto::configure_torch_threads();
        std::printf("FIGURE threads=%d\n", threads);
        const char* override_model = std::getenv("KTO_BENCH_MODEL");
        const std::string model = override_model && *override_model ? override_model : kto::test::demo_model_dir();
        if (!fs::exists(fs::path(model) / "unet" / "config.json"))
            QSKIP(qPrintable(QString::fromStdString("no model at " + model + " (set KTO_BENCH_MODEL)")));
        const int n_prompts = env_int("KTO_BENCH_PROMPTS", 50);
        const int n_seeds = env_int("KTO_BENCH_SEEDS", 4);
        QTemporaryDir tmp;
        const char* keep = std::getenv("KTO_BENCH_KEEP");
        const fs::path root(keep && *keep ? std::string(keep) : tmp.path().toStdString());
        fs::create_directories(root);
        const auto details = [&](const std::string& set) {
            return keep && *keep ? (root / (set + ".csv")).string() : std::string();
        };

        // Held-out prompts: a scene stream the demo model was not trained on, captions that never
        // name the size (so the taste is free to move it without breaking the prompt).
        kto::TrainOptions gen = kto::train_preset("demo");
        kto::shapes::CaptionOptions co;
        co.p_size = 0.0;
        for (int i = 0; i < n_prompts; ++i) {
            kto::shapes::Rng rng(424242, static_cast<uint64_t>(i));
            gen.probe_prompts.push_back(
                kto::shapes::sample_caption(kto::shapes::scene_for_index(9001, static_cast<uint64_t>(i)), rng, co));
        }
        gen.probe_seeds.clear();
        for (int s = 0; s < n_seeds; ++s) gen.probe_seeds.push_back(100000 + s);

        kto::PreviewRenderer renderer(model, torch::kCPU, gen);
        auto base_unet = kto::load_unet(model + "/unet");
        const auto t0 = std::chrono::steady_clock::now();
        const auto before = renderer.render(*base_unet, (root / "before").string());
        const double gen_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto base = score(before, details("before"));
        std::printf("FIGURE images=%d generation_seconds=%.1f\n", base.n, gen_secs);
        std::printf("FIGURE base like_rate=%.1f%% colour_fidelity=%.1f%% position_fidelity=%.1f%% "
                    "background_fidelity=%.1f%%\n",
                    base.like_rate, base.colour_fidelity, base.position_fidelity, base.background_fidelity);

        // Label with the taste; the PNGs are the training images.
        kto::shapes::LikesLargeShapes taste;
        std::vector<kto::TrainRecord> records;
        for (const auto& p : before)
            records.push_back({p.path, p.prompt, taste.likes(to_shapes_image(p.image), p.prompt)});

        std::string objectives = std::getenv("KTO_BENCH_OBJECTIVES") ? std::getenv("KTO_BENCH_OBJECTIVES") : "kto,sft,dpo";
        std::map<std::string, Scores> after;
        for (const std::string obj : {"kto", "sft", "dpo"}) {
            if (objectives.find(obj) == std::string::npos) continue;
            kto::TrainRequest req;
            req.model_dir = model;
            req.records = records;
            req.out_dir = (root / ("run-" + obj)).string();
            req.options = kto::train_preset("demo");
            req.options.objective = kto::parse_objective(obj);
            req.options.steps = env_int("KTO_BENCH_STEPS", req.options.steps);  // default: the preset's
            req.options.checkpoint_every = 0;
            req.options.preview_every = 0;
            req.options.cache_dir = (root / "cache").string();
            if (const char* lr = std::getenv("KTO_BENCH_LR")) req.options.learning_rate = std::atof(lr);
            if (const char* b = std::getenv("KTO_BENCH_BETA")) req.options.beta = std::atof(b);
            if (const char* bs = std::getenv("KTO_BENCH_BATCH")) req.options.batch_size = std::atoi(bs);
            if (const char* fp = std::getenv("KTO_BENCH_FLIP")) req.options.flip_probability = std::atof(fp);
            if (const char* sc = std::getenv("KTO_BENCH_SCHEDULE"))
                req.options.lr_schedule = kto::parse_lr_schedule(sc, "KTO_BENCH_SCHEDULE");
            if (const char* set = std::getenv("KTO_BENCH_SET")) {
                // Any training-config field: a JSON object merged over the options (run-folder config.json keys).
                auto j = req.options.to_json();
                j.merge_patch(nlohmann::json::parse(set));
                req.options = kto::TrainOptions::from_json(j);
            }
            double sps = 0;
            int64_t steps = 0;
            kto::TrainCallbacks cb;
            cb.on_step = [&](const kto::StepMetrics& m) {
                sps = m.samples_per_second;
                steps = m.step;
                // A figure the objective does not define (SFT has no reward margin) prints "-", as the CLI does.
                auto fig = [](double v) {
                    return std::isfinite(v) ? QString::number(v, 'g', 3).toStdString() : std::string("-");
                };
                if (m.step % 50 == 0)
                    std::printf("  %s step %lld loss %.4f margin %s kl %s\n", obj.c_str(), (long long)m.step, m.loss,
                                fig(m.reward_margin).c_str(), fig(m.kl).c_str());
            };
            cb.on_message = [](const std::string& m) { std::printf("  %s\n", m.c_str()); };
            const auto t1 = std::chrono::steady_clock::now();
            kto::TrainingJob job(req, cb);
            const auto res = job.run();
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
            // A LoRA run's checkpoint holds the adapters only: they ride on a fresh copy of the base UNet.
            const bool lora = req.options.lora.enabled;
            auto tuned = kto::load_unet(lora ? model + "/unet" : res.final_checkpoint + "/unet");
            std::unique_ptr<kto::UNetLoRA> adapters;
            if (lora) adapters = kto::UNetLoRA::load(tuned, res.final_checkpoint + "/pytorch_lora_weights.safetensors");
            const auto imgs = renderer.render(*tuned, (root / ("after-" + obj)).string());
            after[obj] = score(imgs, details("after-" + obj));
            std::printf("FIGURE %s mixed_precision=%s\n", obj.c_str(),
                        req.options.mixed_precision == kto::MixedPrecision::bf16 ? "bf16 (CPU autocast)" : "no (fp32)");
            std::printf("FIGURE %s steps=%lld train_seconds=%.1f samples_per_second=%.1f like_rate=%.1f%% "
                        "(%+.1f) colour_fidelity=%.1f%% (%+.1f) position_fidelity=%.1f%% (%+.1f) "
                        "background_fidelity=%.1f%% (%+.1f)\n",
                        obj.c_str(), (long long)steps, secs, sps, after[obj].like_rate,
                        after[obj].like_rate - base.like_rate, after[obj].colour_fidelity,
                        after[obj].colour_fidelity - base.colour_fidelity, after[obj].position_fidelity,
                        after[obj].position_fidelity - base.position_fidelity, after[obj].background_fidelity,
                        after[obj].background_fidelity - base.background_fidelity);
        }
        if (after.count("kto")) {
            std::printf("GOAL kto like-rate gain >= 25 points: %s\n",
                        after["kto"].like_rate - base.like_rate >= 25 ? "met" : "NOT met");
            if (after.count("sft"))
                std::printf("GOAL kto beats sft: %s\n", after["kto"].like_rate > after["sft"].like_rate ? "met" : "NOT met");
            std::printf("GOAL colour fidelity within 5 points: %s\n",
                        std::abs(after["kto"].colour_fidelity - base.colour_fidelity) <= 5 ? "met" : "NOT met");
        }
    }
};

QTEST_GUILESS_MAIN(BenchAlignment)
#include "bench_alignment.moc"
