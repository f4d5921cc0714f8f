// Decoder refinement of the demo model (train-demo --decoder-steps / --refine-decoder-only): only
// the decoder side of the VAE changes (the encoder, hence the UNet's latent space, is frozen), the
// folder stays loadable, and the same seed gives the same weights; its latent gain augmentation
// and shape weighting.
#include <QtTest>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/common/png_text.h"
#include "core/io/safetensors.h"
#include "core/train/demo_model.h"
#include "tests/support/error_check.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

const char* kVaeWeights = "vae/diffusion_pytorch_model.safetensors";

// Copies the shipped model to `dir`, refines its decoder for two steps of batch 2 with the options
// of `o` (its folder, steps, batch and threads are set here), and returns the VAE weights it wrote.
kto::TensorMap refine_copy(const fs::path& dir, kto::DemoDecoderOptions o,
                           const std::function<bool(const kto::DemoProgress&)>& progress = {}) {
    fs::copy(kto::test::demo_model_dir(), dir, fs::copy_options::recursive);
    o.model_dir = dir.string();
    o.steps = 2;
    o.batch = 2;
    o.threads = 1;
    kto::refine_demo_decoder(o, progress);
    return kto::load_safetensors((dir / kVaeWeights).string());
}

kto::TensorMap refine_copy(const fs::path& dir, double gain_jitter, double shape_weight,
                           const std::function<bool(const kto::DemoProgress&)>& progress = {}) {
    kto::DemoDecoderOptions o;
    o.gain_jitter = gain_jitter;
    o.shape_weight = shape_weight;
    return refine_copy(dir, o, progress);
}

}  // namespace

class TestDemoDecoder : public QObject {
    Q_OBJECT
private slots:
    void refinesOnlyTheDecoderDeterministically() {
        QTemporaryDir tmp;
        const auto before = kto::load_safetensors((fs::path(kto::test::demo_model_dir()) / kVaeWeights).string());
        std::vector<kto::TensorMap> after;
        for (const char* copy : {"a", "b"}) {
            int reports = 0;
            after.push_back(refine_copy(fs::path(tmp.path().toStdString()) / copy, 0, 0, [&](const kto::DemoProgress& p) {
                ++reports;
                return p.phase == "decoder";
            }));
            QCOMPARE(reports, 2);
        }
        QCOMPARE(after[0].size(), before.size());
        int decoder_changed = 0;
        for (const auto& [name, t] : before) {
            const bool decoder_side = name.rfind("decoder.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0;
            if (!decoder_side) QVERIFY2(torch::equal(after[0].at(name), t), name.c_str());
            else if (!torch::equal(after[0].at(name), t)) ++decoder_changed;
            QVERIFY2(torch::equal(after[0].at(name), after[1].at(name)), name.c_str());  // deterministic
        }
        QVERIFY(decoder_changed > 0);
        kto::DemoDecoderOptions bad;
        bad.model_dir = tmp.path().toStdString();
        bad.steps = 0;
        QVERIFY_THROWS_EXCEPTION(kto::Error, kto::refine_demo_decoder(bad));
    }

    // With validation the folder generates held-out prompts with its decoder before and after the
    // refinement; the refined decoder stays only if it scores higher, else the VAE file is put back
    // byte for byte. Validation never changes what the refinement trains.
    void validationKeepsTheBetterDecoder() {
        QTemporaryDir tmp;
        const fs::path root(tmp.path().toStdString());
        auto bytes = [](const fs::path& f) { return kto::read_file_bytes(f.string()); };
        const std::vector<uint8_t> shipped = bytes(fs::path(kto::test::demo_model_dir()) / kVaeWeights);
        const kto::TensorMap plain = refine_copy(root / "plain", 0.25, 10);  // no validation
        kto::DemoDecoderOptions o;
        o.gain_jitter = 0.25;
        o.shape_weight = 10;
        o.validation_prompts = 4;
        fs::copy(kto::test::demo_model_dir(), root / "v", fs::copy_options::recursive);
        o.model_dir = (root / "v").string();
        o.steps = 2;
        o.batch = 2;
        o.threads = 1;
        int last_check = 0, check_total = 0, decisions = 0;
        double reported_after = -1, reported_before = -1;
        std::string decision;
        const kto::DemoDecoderResult r = kto::refine_demo_decoder(o, [&](const kto::DemoProgress& p) -> bool {
            if (p.phase == "decoder-check") {
                check_total = p.total;
                last_check = p.step;
            } else if (p.phase == "decoder-kept" || p.phase == "decoder-undone") {
                ++decisions;
                decision = p.phase;
                reported_after = p.loss;
                reported_before = p.attention_loss;
            }
            return true;
        });
        QCOMPARE(check_total, 8);
        QCOMPARE(last_check, 8);
        QCOMPARE(decisions, 1);
        QVERIFY(r.validated);
        QVERIFY(r.score_before >= 0 && r.score_before <= 3 && r.score_after >= 0 && r.score_after <= 3);
        QCOMPARE(reported_after, r.score_after);
        QCOMPARE(reported_before, r.score_before);
        QCOMPARE(r.kept, r.score_after > r.score_before);
        QCOMPARE(decision, std::string(r.kept ? "decoder-kept" : "decoder-undone"));
        if (r.kept) {
            const kto::TensorMap kept = kto::load_safetensors((root / "v" / kVaeWeights).string());
            for (const auto& [name, t] : plain) QVERIFY2(torch::equal(kept.at(name), t), name.c_str());
        } else {
            QVERIFY(bytes(root / "v" / kVaeWeights) == shipped);
        }
        // Cancelled while the refined decoder is being validated: the folder keeps the decoder it had.
        fs::remove_all(root / "v");
        fs::copy(kto::test::demo_model_dir(), root / "v", fs::copy_options::recursive);
        QVERIFY_THROWS_EXCEPTION(kto::Cancelled, kto::refine_demo_decoder(o, [](const kto::DemoProgress& p) {
            return !(p.phase == "decoder-check" && p.step > 4);
        }));
        QVERIFY(bytes(root / "v" / kVaeWeights) == shipped);
        o.validation_prompts = -1;
        QVERIFY_THROWS_EXCEPTION(kto::Error, kto::refine_demo_decoder(o));
    }

    // The latent gain augmentation and the shape weighting change what the decoder learns (other
    // weights than a plain run of the same seed), stay deterministic, and refuse negative values.
    void gainJitterAndShapeWeight() {
        QTemporaryDir tmp;
        auto refined = [&](const char* copy, double jitter, double shape_weight) {
            return refine_copy(fs::path(tmp.path().toStdString()) / copy, jitter, shape_weight);
        };
        const auto plain = refined("plain", 0, 0), a = refined("a", 1.0, 10), b = refined("b", 1.0, 10);
        const auto jitter_only = refined("j", 1.0, 0);
        int differs = 0, differs_jitter = 0;
        for (const auto& [name, t] : plain) {
            QVERIFY2(torch::equal(a.at(name), b.at(name)), name.c_str());
            differs += !torch::equal(a.at(name), t);
            differs_jitter += !torch::equal(jitter_only.at(name), t);
        }
        QVERIFY(differs > 0);
        QVERIFY(differs_jitter > 0);
        for (auto [jitter, shape_weight] : {std::pair{-0.5, 0.0}, std::pair{0.0, -1.0}}) {
            kto::DemoDecoderOptions bad;
            bad.model_dir = (fs::path(tmp.path().toStdString()) / "plain").string();
            bad.gain_jitter = jitter;
            bad.shape_weight = shape_weight;
            kto::test::expect_error([&] { kto::refine_demo_decoder(bad); },
                                    jitter < 0 ? "--decoder-gain-jitter" : "--decoder-shape-weight");
        }
    }

    // Latents the folder's UNet re-drew (SDEdit at CFG 5) make part of every batch: other weights
    // than a run of fresh scenes only, the same weights again for the same seed, and a progress
    // phase of their own; out-of-range values are refused.
    void generatedLatentsJoinTheBatch() {
        QTemporaryDir tmp;
        const fs::path root(tmp.path().toStdString());
        auto refined = [&](const char* copy, double share, std::vector<std::string>* phases = nullptr, int loss_pool = 1) {
            kto::DemoDecoderOptions o;
            o.generated_share = share;
            o.generated_pool = 3;  // fewer than the steps draw: the pool is reused in turn
            o.generated_loss_pool = loss_pool;
            return refine_copy(root / copy, o, [&](const kto::DemoProgress& p) {
                if (phases && (phases->empty() || phases->back() != p.phase)) phases->push_back(p.phase);
                return true;
            });
        };
        std::vector<std::string> phases;
        const auto plain = refined("plain", 0), a = refined("a", 0.5, &phases), b = refined("b", 0.5);
        const auto all = refined("all", 1.0);
        const auto pooled = refined("pooled", 0.5, nullptr, 4);  // the re-drawn rows compared over 4x4 blocks
        QCOMPARE(phases, (std::vector<std::string>{"decoder-pool", "decoder"}));
        int differs = 0, differs_all = 0, differs_pooled = 0;
        for (const auto& [name, t] : plain) {
            QVERIFY2(torch::equal(a.at(name), b.at(name)), name.c_str());
            differs += !torch::equal(a.at(name), t);
            differs_all += !torch::equal(all.at(name), a.at(name));
            differs_pooled += !torch::equal(pooled.at(name), a.at(name));
        }
        QVERIFY(differs > 0);
        QVERIFY(differs_all > 0);
        QVERIFY(differs_pooled > 0);
        for (auto [share, strength] : {std::pair{-0.1, 0.7}, std::pair{1.5, 0.7}, std::pair{0.5, 0.0}, std::pair{0.5, 1.2}}) {
            kto::DemoDecoderOptions bad;
            bad.model_dir = (root / "plain").string();
            bad.generated_share = share;
            bad.generated_strength = strength;
            kto::test::expect_error([&] { kto::refine_demo_decoder(bad); },
                                    share < 0 || share > 1 ? "--decoder-generated-share" : "--decoder-generated-strength");
        }
        kto::DemoDecoderOptions bad;
        bad.model_dir = (root / "plain").string();
        bad.generated_loss_pool = 3;
        kto::test::expect_error([&] { kto::refine_demo_decoder(bad); }, "--decoder-generated-loss-pool");
    }
};

QTEST_GUILESS_MAIN(TestDemoDecoder)
#include "test_demo_decoder.moc"
