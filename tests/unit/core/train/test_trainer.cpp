// The step engine on the tiny-sd reference UNet with synthetic cached latents: first-step KTO loss,
// checkpoint layout, and resume equivalence (N steps + resume + M steps == N+M steps, bitwise on CPU)
// for the full UNet and for LoRA.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/io/safetensors.h"
#include "core/nn/lora.h"
#include "core/nn/unet.h"
#include "core/sampling/scheduler.h"
#include "core/sampling/scheduler_config.h"
#include "core/train/trainer.h"
#include "tests/support/error_check.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

std::string tiny() { return kto::test::reference_dir() + "/tiny-sd"; }

// 6 examples (4 liked, 2 disliked) of 4x8x8 latents, 3 captions, 32-wide text states.
kto::TrainingSet synthetic_set() {
    torch::manual_seed(1234);
    kto::TrainingSet s;
    for (int i = 0; i < 6; ++i) {
        s.latents.push_back({torch::randn({2, 4, 8, 8}), torch::rand({2, 4, 8, 8}) * 0.1});
        s.desirable.push_back(i < 4);
        s.caption_index.push_back(i % 3);
    }
    s.embeddings = torch::randn({3, 77, 32});
    s.empty_embedding = torch::randn({77, 32});
    s.pairs = {{0, 4}, {3, 5}};
    s.scaling_factor = 0.18215;
    return s;
}

struct Model {
    kto::UNet2DConditionModel unet{nullptr};
    kto::UNet2DConditionModel reference{nullptr};
    std::unique_ptr<kto::UNetLoRA> lora;
    kto::Trainer::Parts parts;
};

std::unique_ptr<Model> load(const kto::TrainOptions& o) {
    auto m = std::make_unique<Model>();
    m->unet = kto::load_unet(tiny() + "/unet");
    m->parts.unet = m->unet.ptr();
    m->parts.unet_config = m->unet->config().raw;
    auto cfg = kto::SchedulerConfig::from_file(tiny() + "/scheduler/scheduler_config.json");
    m->parts.noise_scheduler = std::shared_ptr<kto::Scheduler>(kto::make_scheduler("ddpm", cfg));
    if (o.lora.enabled) {
        kto::LoRAConfig lc;
        lc.rank = o.lora.rank;
        lc.alpha = o.lora.alpha;
        lc.targets = o.lora.targets;
        torch::manual_seed(99);  // adapter init
        m->lora = std::make_unique<kto::UNetLoRA>(m->unet, lc);
        auto* lora = m->lora.get();
        m->parts.set_adapters_enabled = [lora](bool on) { lora->set_enabled(on); };
        m->parts.save_lora = [lora](const std::string& p) { lora->save(p); };
        for (const auto& [path, ad] : lora->adapters()) {
            m->parts.lora_parameters.emplace_back("unet." + path + ".lora_A.weight", ad->A);
            m->parts.lora_parameters.emplace_back("unet." + path + ".lora_B.weight", ad->B);
        }
    } else {
        m->reference = kto::load_unet(tiny() + "/unet");
        m->parts.reference = m->reference.ptr();
    }
    return m;
}

kto::TrainOptions options(bool lora) {
    kto::TrainOptions o;
    o.steps = 4;
    o.batch_size = 2;
    o.learning_rate = 1e-3;
    o.warmup_steps = 1;
    o.seed = 5;
    o.lora.enabled = lora;
    o.lora.rank = 2;
    o.lora.alpha = 4;
    return o;
}

void expect_same_params(const kto::Trainer& a, const kto::Trainer& b) {
    QCOMPARE(a.trainable().size(), b.trainable().size());
    for (size_t i = 0; i < a.trainable().size(); ++i) {
        QCOMPARE(a.trainable()[i].first, b.trainable()[i].first);
        QVERIFY2(torch::equal(a.trainable()[i].second, b.trainable()[i].second),
                 a.trainable()[i].first.c_str());
    }
}

}  // namespace

class TestTrainer : public QObject {
    Q_OBJECT

    void resume_equivalence(bool lora) {
        QTemporaryDir tmp;
        const auto o = options(lora);
        // Straight: 4 steps.
        auto ma = load(o);
        kto::Trainer straight(ma->parts, synthetic_set(), o);
        std::vector<double> losses;
        for (int i = 0; i < 4; ++i) losses.push_back(straight.step().loss);

        // Interrupted: 2 steps, checkpoint, a fresh process (new model objects), resume, 2 steps.
        const std::string ckpt = tmp.path().toStdString() + "/step-2";
        {
            auto mb = load(o);
            kto::Trainer first(mb->parts, synthetic_set(), o);
            first.step();
            first.step();
            first.save_checkpoint(ckpt);
        }
        auto mc = load(o);
        kto::Trainer resumed(mc->parts, synthetic_set(), o);
        resumed.load_checkpoint(ckpt);
        QCOMPARE(resumed.steps_done(), int64_t(2));
        const double l3 = resumed.step().loss;
        const double l4 = resumed.step().loss;
        QCOMPARE(l3, losses[2]);
        QCOMPARE(l4, losses[3]);
        expect_same_params(straight, resumed);
        // Training moved the weights at all.
        auto fresh = load(o);
        kto::Trainer untouched(fresh->parts, synthetic_set(), o);
        bool moved = false;
        for (size_t i = 0; i < straight.trainable().size(); ++i)
            moved |= !torch::equal(straight.trainable()[i].second, untouched.trainable()[i].second);
        QVERIFY(moved);
    }

private slots:
    void firstKtoStepLossIsHalf() {
        // Model == reference at step 0: g = 0, kl = 0, h = sigmoid(0) = 1/2, loss = mean w (1 - h) = 0.5.
        auto o = options(false);
        auto m = load(o);
        kto::Trainer t(m->parts, synthetic_set(), o);
        const auto s = t.step();
        QVERIFY(std::abs(s.loss - 0.5) < 1e-6);
        QCOMPARE(s.kl, 0.0);
        QCOMPARE(s.lr, 0.0);  // warmup: the first step's LR is 0 (diffusers' schedule)
        const auto s2 = t.step();
        QVERIFY(std::isfinite(s2.grad_norm) && s2.grad_norm > 0);
        QVERIFY(std::abs(s2.lr - 1e-3) < 1e-12);
    }

    void resumeEquivalenceFullUnet() { resume_equivalence(false); }
    void resumeEquivalenceLora() { resume_equivalence(true); }

    void checkpointLayouts() {
        QTemporaryDir tmp;
        for (bool lora : {false, true}) {
            auto o = options(lora);
            auto m = load(o);
            kto::Trainer t(m->parts, synthetic_set(), o);
            t.step();
            const fs::path dir = tmp.path().toStdString() + (lora ? "/lora" : "/full");
            t.save_checkpoint(dir.string());
            QVERIFY(fs::exists(dir / "trainer_state.json"));
            QVERIFY(fs::exists(dir / "optimizer.safetensors"));
            if (lora) {
                const auto f = kto::load_safetensors((dir / "pytorch_lora_weights.safetensors").string());
                QVERIFY(!f.empty());
                for (const auto& [k, v] : f)
                    QVERIFY2(k.rfind("unet.", 0) == 0 && (k.find(".lora_A.weight") != std::string::npos ||
                                                          k.find(".lora_B.weight") != std::string::npos),
                             k.c_str());
            } else {
                QVERIFY(fs::exists(dir / "unet" / "config.json"));
                auto reloaded = kto::load_unet((dir / "unet").string());
                const auto p = reloaded->named_parameters();
                for (const auto& [n, w] : t.trainable()) QVERIFY(torch::equal(p[n], w));
            }
            QVERIFY_EXCEPTION_THROWN(t.save_checkpoint(dir.string()), kto::Error);
        }
    }

    void dpoAndSftStepsRun() {
        for (auto obj : {kto::ObjectiveKind::dpo, kto::ObjectiveKind::sft}) {
            auto o = options(false);
            o.objective = obj;
            auto m = load(o);
            kto::Trainer t(m->parts, synthetic_set(), o);
            const auto s = t.step();
            QVERIFY(std::isfinite(s.loss));
            if (obj == kto::ObjectiveKind::dpo) QVERIFY(std::abs(s.loss - std::log(2.0)) < 1e-5);
        }
    }

    // flip_probability decides which of each example's two latents (unflipped, mirrored) a draw reads:
    // at 0 the mirrored ones are never read, at 1 the unflipped ones are never read, at 0.5 both are.
    void flipProbabilityPicksTheLatents() {
        const auto trained = [](double p, int spoil) {
            auto o = options(false);
            o.flip_probability = p;
            o.steps = 3;
            auto set = synthetic_set();
            if (spoil >= 0)
                for (auto& l : set.latents) {
                    l.mean = l.mean.clone();
                    l.mean[spoil] = torch::full_like(l.mean[spoil], 7.0);
                }
            auto m = load(o);
            kto::Trainer t(m->parts, std::move(set), o);
            for (int i = 0; i < 3; ++i) t.step();
            std::vector<torch::Tensor> w;
            for (const auto& [name, param] : t.trainable()) w.push_back(param.detach().clone());
            return w;
        };
        const auto same = [](const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
            for (size_t i = 0; i < a.size(); ++i)
                if (!torch::equal(a[i], b[i])) return false;
            return true;
        };
        QVERIFY(same(trained(0.0, -1), trained(0.0, 1)));   // mirrored latents unread
        QVERIFY(same(trained(1.0, -1), trained(1.0, 0)));   // unflipped latents unread
        QVERIFY(!same(trained(0.0, -1), trained(0.0, 0)));  // ... and the spoiling is seen where read
        QVERIFY(!same(trained(0.5, -1), trained(0.5, 1)));
        QVERIFY(!same(trained(0.5, -1), trained(0.5, 0)));
    }

    // bf16 autocast on the CPU: accepted there (fp16 is not), the first step's KTO loss is still exactly
    // 1/2, and the run follows the fp32 one closely without being it (the convolutions ran in bf16).
    // Closely only where bf16 products sum in fp32 (cpu_bf16_matmul_sums_in_fp32): where they sum in
    // bf16 (libtorch 1.13 on a CPU without AVX-512) the third step's loss was 0.859 against fp32's 0.568
    // (0.752 / 0.594 at beta 500), so there the run is only checked to stay a loss in (0, 1).
    void cpuBf16MixedPrecision() {
        const bool fp32_sums = kto::cpu_bf16_matmul_sums_in_fp32();
        auto o = options(false);
        auto fp16 = o;
        fp16.mixed_precision = kto::MixedPrecision::fp16;
        kto::test::expect_error([&] { fp16.validate(); }, "mixed_precision fp16 needs a CUDA device");
        o.mixed_precision = kto::MixedPrecision::bf16;
        o.validate();
        auto mb = load(o);
        kto::Trainer bf(mb->parts, synthetic_set(), o);
        auto plain = options(false);
        auto mf = load(plain);
        kto::Trainer fp(mf->parts, synthetic_set(), plain);
        QVERIFY(std::abs(bf.step().loss - 0.5) < 1e-6);
        fp.step();
        for (int i = 0; i < 3; ++i) {
            const double a = bf.step().loss, b = fp.step().loss;
            // The implicit reward scales the model-minus-reference error by beta (here the default 5000),
            // so bf16 rounding moves the loss more than it moves either error.
            QVERIFY2(std::isfinite(a) && a > 0 && a < 1 && (!fp32_sums || std::abs(a - b) < 0.1),
                     qPrintable(QString("bf16 %1 fp32 %2").arg(a).arg(b)));
        }
        bool differs = false;
        for (size_t i = 0; i < bf.trainable().size(); ++i) {
            QCOMPARE(bf.trainable()[i].second.scalar_type(), torch::kFloat32);  // fp32 master weights
            differs |= !torch::equal(bf.trainable()[i].second, fp.trainable()[i].second);
        }
        QVERIFY(differs);
    }

    void optionsRoundTripAndValidate() {
        auto o = kto::train_preset("demo");
        o.objective = kto::ObjectiveKind::dpo;
        o.lora.enabled = true;
        o.probe_prompts = {"a red circle"};
        const auto back = kto::TrainOptions::from_json(o.to_json());
        QCOMPARE(back.to_json().dump(), o.to_json().dump());
        QCOMPARE(back.effective_beta(), 50.0);  // the demo preset's beta, for every objective
        auto unset = back;
        unset.beta.reset();
        QCOMPARE(unset.effective_beta(), 5000.0);  // DPO's default
        auto j = o.to_json();
        j["learning_rat"] = 1;
        QVERIFY_EXCEPTION_THROWN(kto::TrainOptions::from_json(j), kto::Error);
        QCOMPARE(back.flip_probability, o.flip_probability);
        auto flip = o;
        flip.flip_probability = 1.5;
        kto::test::expect_error([&] { flip.validate(); }, "flip_probability must lie in [0, 1]");
        auto no_flip = o.to_json();
        no_flip.erase("flip_probability");  // a run folder written before the option: the reference run's 0.5
        QCOMPARE(kto::TrainOptions::from_json(no_flip).flip_probability, 0.5);
        o.batch_size = 0;
        QVERIFY_EXCEPTION_THROWN(o.validate(), kto::Error);
        // LR schedule names: the config key, the CLI flag and the bench knob read them alike.
        QCOMPARE(kto::parse_lr_schedule("cosine"), kto::LrSchedule::cosine);
        QCOMPARE(kto::parse_lr_schedule("constant"), kto::LrSchedule::constant);
        auto bad_schedule = o.to_json();
        bad_schedule["lr_schedule"] = "linear";
        kto::test::expect_error([&] { kto::TrainOptions::from_json(bad_schedule); },
                                "lr_schedule: unknown LR schedule 'linear'");
    }
};

QTEST_GUILESS_MAIN(TestTrainer)
#include "test_trainer.moc"
