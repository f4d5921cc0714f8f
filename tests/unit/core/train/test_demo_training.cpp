// train-demo at toy scale: every phase runs, the folder it writes loads as a diffusers model, the
// same options give the same weights, the UNet options shape what is saved, bad options are
// refused before any work. And demo-eval's VAE round trip (--reconstruct) on the shipped model:
// what the autoencoder lets generation score.
#include <QtTest>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <optional>
#include <set>

#include "core/common/error.h"
#include "core/io/model_folder.h"
#include "core/io/safetensors.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"
#include "core/sampling/scheduler.h"
#include "core/sampling/scheduler_config.h"
#include "core/shapes/renderer.h"
#include "core/train/demo_model.h"
#include "tests/support/error_check.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

kto::DemoTrainOptions toy_options(const std::string& out) {
    kto::DemoTrainOptions o;
    o.out_dir = out;
    o.vae_steps = 2;
    o.vae_batch = 2;
    o.unet_steps = 2;
    o.unet_batch = 2;
    o.cache_images = 4;
    o.vae_shape_weight = 10;
    o.unet_shape_weight = 4;
    o.decoder_steps = 2;
    o.decoder_validation_prompts = 0;
    o.decoder_generated_share = 0;  // the recipe's re-drawn latents take 1024 renders; test_demo_decoder covers them
    o.unet_rounds = 0;
    o.threads = 1;
    return o;
}

// A toy run that trains only the text encoder and UNet, on the shipped model's VAE.
kto::DemoTrainOptions toy_options_on_shipped_vae(const std::string& out) {
    kto::DemoTrainOptions o = toy_options(out);
    o.vae_steps = 0;
    o.vae_from = kto::test::demo_model_dir();
    o.decoder_steps = 0;
    return o;
}

// True when some tensor of `a` differs from the same-named tensor of `b`.
bool any_tensor_differs(const kto::TensorMap& a, const kto::TensorMap& b) {
    for (const auto& [key, t] : a)
        if (!torch::equal(t, b.at(key))) return true;
    return false;
}

// The bytes of a file ("" when it cannot be read).
std::string file_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), {});
}

// demo-eval's VAE round trip (--reconstruct) of the shipped model on `prompts` prompts, untimed.
kto::DemoEvalOptions shipped_round_trip(int prompts) {
    kto::DemoEvalOptions o;
    o.model_dir = kto::test::demo_model_dir();
    o.prompts = prompts;
    o.reconstruct = true;
    o.speed_runs = 0;
    o.threads = 1;
    return o;
}

// What the scorer read of each evaluated image: the share of its pixels not of the background.
std::vector<double> foreground_fractions(const kto::DemoEvalResult& r) {
    std::vector<double> out;
    for (const auto& d : r.details) out.push_back(d.read.foreground_fraction);
    return out;
}

// Runs with batch halves against one over the whole batch: `losses` and `weights` hold the whole batch's run,
// then two runs with halves. Each reported loss (`reports` of them) is positive and agrees within 1e-5 relative
// with the whole batch's; the two halves' runs report the same and save the same weights, which are within fp16
// rounding of the whole batch's.
void expect_halves_match_whole(const std::vector<std::vector<double>>& losses,
                               const std::vector<kto::TensorMap>& weights, size_t reports) {
    QCOMPARE(losses.size(), size_t(3));
    QCOMPARE(weights.size(), size_t(3));
    QCOMPARE(losses[0].size(), reports);
    for (size_t i = 0; i < losses[0].size(); ++i) {
        QVERIFY2(losses[0][i] > 0, std::to_string(losses[0][i]).c_str());
        QVERIFY2(std::abs(losses[1][i] - losses[0][i]) < 1e-5 * losses[0][i],
                 (std::to_string(losses[1][i]) + " vs " + std::to_string(losses[0][i])).c_str());
    }
    QCOMPARE(losses[1], losses[2]);
    for (const auto& [key, t] : weights[0]) {
        QVERIFY2(torch::equal(weights[1].at(key), weights[2].at(key)), key.c_str());
        const torch::Tensor whole = t.to(torch::kFloat32);
        const double diff = (weights[1].at(key).to(torch::kFloat32) - whole).abs().max().item<double>();
        QVERIFY2(diff <= 2e-3 * std::max(1.0, whole.abs().max().item<double>()),
                 (key + ": " + std::to_string(diff)).c_str());
    }
}

}  // namespace

class TestDemoTraining : public QObject {
    Q_OBJECT
private slots:
    void toyRunWritesALoadableDeterministicFolder() {
        QTemporaryDir tmp;
        std::vector<kto::TensorMap> unets;
        std::set<std::string> phases;
        for (const char* name : {"a", "b"}) {
            const std::string out = (fs::path(tmp.path().toStdString()) / name).string();
            kto::train_demo_model(toy_options(out), [&](const kto::DemoProgress& p) {
                phases.insert(p.phase);
                return true;
            });
            for (const char* f : {"model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                                  "tokenizer/merges.txt", "text_encoder/model.safetensors",
                                  "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"})
                QVERIFY2(fs::exists(fs::path(out) / f), f);
            unets.push_back(kto::load_safetensors(out + "/unet/diffusion_pytorch_model.safetensors"));
            // The folder generates through the app's pipeline (what the app and CLI load).
            const torch::Tensor img = kto::demo_generate(out, {"a red circle on a blue background"}, {7}, 2, 5.0);
            QCOMPARE(img.sizes().vec(), (std::vector<int64_t>{1, 3, 64, 64}));
            QVERIFY(torch::isfinite(img).all().item<bool>());
        }
        QCOMPARE(phases, (std::set<std::string>{"vae", "latents", "unet", "save", "decoder"}));
        QCOMPARE(unets[0].size(), unets[1].size());
        for (const auto& [key, t] : unets[0]) {
            QCOMPARE(t.scalar_type(), torch::kHalf);
            QVERIFY2(torch::equal(t, unets[1].at(key)), key.c_str());
        }
    }

    void cancelStopsTheRun() {
        QTemporaryDir tmp;
        int calls = 0;
        QVERIFY_THROWS_EXCEPTION(kto::Cancelled,
                                 kto::train_demo_model(toy_options(tmp.path().toStdString() + "/c"),
                                                       [&](const kto::DemoProgress&) { return ++calls < 2; }));
        QCOMPARE(calls, 2);
        QVERIFY(!fs::exists(tmp.path().toStdString() + "/c/model_index.json"));
    }

    void badOptionsAreRefusedBeforeAnyWork() {
        QTemporaryDir tmp;
        const std::string out = tmp.path().toStdString() + "/bad";
        auto refused = [&](auto change, const char* words) {
            kto::DemoTrainOptions o = toy_options(out);
            change(o);
            kto::test::expect_error([&] { kto::train_demo_model(o); }, words);
            QVERIFY(!fs::exists(out + "/model_index.json"));
        };
        refused([](auto& o) { o.vae_width = 12; }, "--vae-width");
        refused([](auto& o) { o.vae_shape_weight = -1; }, "--vae-shape-weight");
        refused([](auto& o) { o.unet_shape_weight = -0.5; }, "--unet-shape-weight");
        refused([](auto& o) { o.attention_loss_weight = -0.1; }, "--attention-loss-weight");
        refused([](auto& o) { o.attention_words = "colour,clas"; }, "--attention-words");
        refused([](auto& o) { o.vae_kl_weight = -1e-6; }, "--vae-kl-weight");
        refused([](auto& o) { o.vae_palette_weight = -1; }, "--vae-palette-weight");
        refused([](auto& o) { o.vae_palette_radius = 0; }, "--vae-palette-radius");
        refused([](auto& o) { o.prediction_type = "sample"; }, "--prediction-type");
        refused([](auto& o) { o.prediction_type = "epsilon", o.zero_terminal_snr = true; }, "--zero-terminal-snr");
        refused([](auto& o) { o.unet_batch = 0; }, "batch");
        refused([](auto& o) { o.vae_from = "/nonexistent"; }, "--vae-from");
        refused([](auto& o) { o.init_from = "/nonexistent"; }, "--init-from");
        refused([](auto& o) { o.unet_channels = {}; }, "--unet-channels");
        refused([](auto& o) { o.unet_channels = {32, 40}; }, "--unet-channels");
        refused([](auto& o) { o.unet_channels = {16, 32, 32, 32}; }, "--unet-channels");
        refused([](auto& o) { o.unet_plain_levels = 3; }, "--unet-plain-levels");
        refused([](auto& o) { o.unet_plain_levels = -1; }, "--unet-plain-levels");
        refused([](auto& o) { o.unet_layers = 0; }, "--unet-layers");
        refused([](auto& o) { o.unet_lr_floor = 1.5; }, "--unet-lr-floor");
        refused([](auto& o) { o.unet_rounds = -1; }, "--unet-rounds");
        refused([](auto& o) { o.unet_rounds = 1, o.unet_round_steps = -5; }, "--unet-round-steps");
        refused([](auto& o) { o.unet_rounds = 1, o.unet_round_lr = 0; }, "--unet-round-lr");
        refused([](auto& o) { o.min_snr_gamma = -1; }, "--min-snr-gamma");
        refused([](auto& o) { o.two_shape_share = 1.5; }, "--two-shape-share");
        refused([](auto& o) { o.two_shape_share = -0.1; }, "--two-shape-share");
        refused([](auto& o) { o.unet_heads = 0; }, "--unet-heads");
        refused([](auto& o) { o.unet_heads = 5; }, "--unet-heads");  // 96 channels do not divide by 5
        refused([](auto& o) { o.text_width = 40; }, "--text-width");
        refused([](auto& o) { o.text_layers = 0; }, "--text-layers");
        // The last phases' options are checked before the first phase starts, not after an hour of training.
        refused([](auto& o) { o.decoder_steps = 1, o.decoder_generated_share = 2; }, "--decoder-generated-share");
        refused([](auto& o) { o.decoder_steps = 1, o.decoder_validation_prompts = -1; }, "--decoder-validation-prompts");
        refused([](auto& o) { o.decoder_steps = 1, o.decoder_generated_loss_pool = 5; }, "--decoder-generated-loss-pool");
        refused([](auto& o) { o.align_rounds = -1; }, "--align-rounds");
        refused([](auto& o) { o.align_rounds = 1, o.align_lr = 0; }, "--align-lr");
        refused([](auto& o) { o.align_rounds = 1, o.align_objective = "ppo"; }, "--align-objective");
        refused([](auto& o) { o.checkpoint_every = -1; }, "--checkpoint-every");
        refused([](auto& o) { o.resume = true; }, "holds no checkpoint");
    }

    // A run cut short (a cancel, or a kill after a checkpoint) and continued with resume writes the folder the
    // run writes when nothing stops it, byte for byte: cut in the VAE phase, the UNet phase (and then left as a
    // kill between the renames that put a checkpoint in place leaves it), a round, the decoder refinement (after
    // which the folder's VAE file is damaged, as a kill mid-write would leave it), and twice in one run. A
    // folder holding a checkpoint is not overwritten without resume, a resume with other options is refused,
    // and the checkpoint goes when the run is complete.
    void resumeWritesTheFolderAnUncutRunWrites() {
        QTemporaryDir tmp;
        const std::string base = tmp.path().toStdString();
        kto::DemoTrainOptions o = toy_options(base + "/whole");
        o.vae_steps = 5;
        o.unet_steps = 4;
        o.cache_images = 16;
        o.unet_rounds = 2;
        o.unet_round_steps = 3;
        o.decoder_steps = 3;
        o.checkpoint_every = 2;
        std::vector<std::string> whole_reports;
        kto::train_demo_model(o, [&](const kto::DemoProgress& p) {
            whole_reports.push_back(p.phase + " " + std::to_string(p.step));
            return true;
        });
        QVERIFY(!fs::exists(o.out_dir + "/train-demo-checkpoint"));
        QVERIFY(!kto::find_demo_checkpoint(o.out_dir));
        const std::vector<std::string> files = {"/unet/diffusion_pytorch_model.safetensors", "/text_encoder/model.safetensors",
                                                "/vae/diffusion_pytorch_model.safetensors", "/vae/config.json",
                                                "/tokenizer/merges.txt", "/model_index.json"};
        // Each case: the cuts ("phase step": the report after which progress cancels), then the checkpoint each
        // leaves ("phase step/total").
        struct Case {
            std::string name;
            std::vector<std::string> cuts, checkpoints;
        };
        const std::vector<Case> cases = {
            {"vae", {"vae 3"}, {"vae 3/5"}},
            {"unet", {"unet 1"}, {"unet 1/4"}},
            {"round", {"unet+2 2"}, {"unet+2 2/3"}},
            {"decoder", {"decoder 2"}, {"saved 0/0"}},
            {"twice", {"vae 5", "unet+1 3"}, {"vae 5/5", "unet+1 3/3"}},
        };
        for (const Case& c : cases) {
            kto::DemoTrainOptions r = o;
            r.out_dir = base + "/" + c.name;
            for (size_t k = 0; k <= c.cuts.size(); ++k) {
                r.resume = k > 0;
                if (k == c.cuts.size()) {
                    kto::train_demo_model(r);
                    break;
                }
                QVERIFY_THROWS_EXCEPTION(kto::Cancelled, kto::train_demo_model(r, [&](const kto::DemoProgress& p) {
                    return p.phase + " " + std::to_string(p.step) != c.cuts[k];
                }));
                const std::optional<kto::DemoCheckpointInfo> info = kto::find_demo_checkpoint(r.out_dir);
                QVERIFY2(info, c.name.c_str());
                QCOMPARE(info->phase + " " + std::to_string(info->step) + "/" + std::to_string(info->total),
                         c.checkpoints[k]);
                if (k == 0) {
                    kto::DemoTrainOptions again = r;
                    kto::test::expect_error([&] { kto::train_demo_model(again); }, "add --resume");
                    again.resume = true;
                    again.unet_steps = 5;
                    kto::test::expect_error([&] { kto::train_demo_model(again); }, "--unet-steps 4 (now 5)");
                    QCOMPARE(kto::find_demo_checkpoint(r.out_dir)->phase, info->phase);
                }
                if (c.name == "unet") {
                    // As a kill between the two renames that put a new checkpoint in place would leave it.
                    fs::rename(r.out_dir + "/train-demo-checkpoint", r.out_dir + "/train-demo-checkpoint.new");
                    QCOMPARE(kto::find_demo_checkpoint(r.out_dir)->step, 1);
                }
                if (c.name == "decoder") {
                    // As a kill while the refinement wrote its weights would leave them.
                    std::ofstream(r.out_dir + "/vae/diffusion_pytorch_model.safetensors", std::ios::trunc) << "cut";
                }
            }
            QVERIFY2(!fs::exists(r.out_dir + "/train-demo-checkpoint"), c.name.c_str());
            for (const std::string& f : files) {
                const std::string a = file_bytes(o.out_dir + f), b = file_bytes(r.out_dir + f);
                QVERIFY2(!a.empty() && a == b, (c.name + ": " + f).c_str());
            }
        }
        // The cuts were all reached in the whole run.
        for (const Case& c : cases)
            for (const std::string& cut : c.cuts)
                QVERIFY2(std::find(whole_reports.begin(), whole_reports.end(), cut) != whole_reports.end(), cut.c_str());
    }

    // --zero-terminal-snr: the saved scheduler config states the rescaled betas and trailing
    // spacing, so the app's sampler starts at t = 999 where x_t is pure noise; training used that
    // schedule (the same seed gives another UNet than the scaled-linear run); the folder generates.
    void zeroTerminalSnrTrainsAndSamplesFromPureNoise() {
        QTemporaryDir tmp;
        const std::string base = tmp.path().toStdString();
        std::vector<kto::TensorMap> unets;
        for (const bool zero : {false, true}) {
            kto::DemoTrainOptions o = toy_options_on_shipped_vae(base + (zero ? "/zero" : "/plain"));
            o.zero_terminal_snr = zero;
            kto::train_demo_model(o);
            unets.push_back(kto::load_safetensors(o.out_dir + "/unet/diffusion_pytorch_model.safetensors"));
            const auto cfg = kto::SchedulerConfig::from_file(o.out_dir + "/scheduler/scheduler_config.json");
            QCOMPARE(cfg.rescale_betas_zero_snr.value_or(!zero), zero);
            QCOMPARE(QString::fromStdString(cfg.timestep_spacing.value_or("")), zero ? QString("trailing") : QString("leading"));
            auto ddim = kto::make_scheduler("ddim", cfg);
            const double last = ddim->alphas_cumprod()[999].item<double>();
            if (zero) QVERIFY2(last < 1e-12, std::to_string(last).c_str());
            else QVERIFY(std::abs(std::sqrt(last) - 0.068) < 0.001);  // SD 1.x: 6.8% of the image left at t = 999
            ddim->set_timesteps(20);
            QCOMPARE(ddim->timesteps()[0].item<int64_t>(), zero ? int64_t(999) : int64_t(951));
            const torch::Tensor img = kto::demo_generate(o.out_dir, {"a red circle on a blue background"}, {7}, 3, 5.0);
            QVERIFY(torch::isfinite(img).all().item<bool>());
        }
        QVERIFY(any_tensor_differs(unets[0], unets[1]));
    }

    // --reading-order changes the captions the UNet learns from (two shapes named upper / left one
    // first), not the scenes: the same seed trains another UNet on the same latents. demo-eval's
    // --reading-order asks its two-shape prompts in that order; one-shape prompts stay as they were.
    void readingOrderNamesTheUpperShapeFirst() {
        QTemporaryDir tmp;
        const std::string base = tmp.path().toStdString();
        std::vector<kto::TensorMap> unets;
        for (const bool ordered : {false, true}) {
            kto::DemoTrainOptions o = toy_options_on_shipped_vae(base + (ordered ? "/ordered" : "/any"));
            o.cache_images = 16;
            o.two_shape_share = 1.0;
            o.reading_order = ordered;
            kto::train_demo_model(o);
            unets.push_back(kto::load_safetensors(o.out_dir + "/unet/diffusion_pytorch_model.safetensors"));
        }
        QVERIFY(any_tensor_differs(unets[0], unets[1]));

        kto::DemoEvalOptions e = shipped_round_trip(48);
        const kto::DemoEvalResult any = kto::evaluate_demo_model(e);
        e.reading_order = true;
        const kto::DemoEvalResult ordered = kto::evaluate_demo_model(e);
        QCOMPARE(ordered.prompts.size(), any.prompts.size());
        int two = 0, reordered = 0, both_placed = 0;
        for (size_t i = 0; i < any.prompts.size(); ++i) {
            const auto req = kto::shapes::parse_caption(ordered.prompts[i]);
            if (req.shapes.size() == 1) {
                QCOMPARE(ordered.prompts[i], any.prompts[i]);
                continue;
            }
            ++two;
            reordered += ordered.prompts[i] != any.prompts[i];
            // The round trip draws the prompt's own scene, so the scorer's blobs say where each shape is.
            const auto& d = ordered.details[i];
            const auto& blobs = d.read.shapes;
            if (d.fidelity.matched.size() == 2 && d.fidelity.matched[0] >= 0 && d.fidelity.matched[1] >= 0 &&
                d.fidelity.colour.right == 2) {
                const auto& first = blobs[size_t(d.fidelity.matched[0])];
                const auto& second = blobs[size_t(d.fidelity.matched[1])];
                const double dy = (first.y0 + first.y1) - (second.y0 + second.y1);
                const double dx = (first.x0 + first.x1) - (second.x0 + second.x1);
                QVERIFY2(dy < -20 || (std::abs(dy) < 12 && dx < -20), ordered.prompts[i].c_str());
                ++both_placed;
            }
        }
        QVERIFY(two >= 6);
        QVERIFY(reordered >= 2);
        QVERIFY(both_placed >= 4);
    }

    // shape_cells marks the cells a shape touches: every cell whose centre lies inside, none far
    // from the shape.
    void shapeCellsMarkWhereTheShapeIs() {
        kto::shapes::Shape medium;  // a medium circle in the middle: x and y from 0.33 to 0.67
        medium.cls = kto::shapes::ShapeClass::Circle;
        medium.extent = 0.17;
        const torch::Tensor c4 = kto::shape_cells(medium, 4);
        QCOMPARE(c4.sizes().vec(), (std::vector<int64_t>{16}));
        for (int i : {5, 6, 9, 10}) QCOMPARE(c4[i].item<float>(), 1.0f);  // the middle 2x2, and nothing else
        QCOMPARE(c4.sum().item<float>(), 4.0f);
        kto::shapes::Rng jitter(5);
        const auto small = kto::shapes::place_shape(kto::shapes::ShapeClass::Circle, kto::shapes::Colour::Blue,
                                                    kto::shapes::Size::Small, kto::shapes::Position::TopLeft, jitter);
        const torch::Tensor c8 = kto::shape_cells(small, 8);
        QVERIFY(c8.sum().item<float>() >= 1 && c8.sum().item<float>() <= 9);
        for (int i = 0; i < 8; ++i)
            for (int j = 0; j < 8; ++j) {
                const bool centre_inside = kto::shapes::shape_contains(small, (j + 0.5) / 8, (i + 0.5) / 8);
                if (centre_inside) QCOMPARE(c8[i * 8 + j].item<float>(), 1.0f);
                if (i >= 4 || j >= 4) QCOMPARE(c8[i * 8 + j].item<float>(), 0.0f);  // far from the top left
            }
        kto::test::expect_error([&] { kto::shape_cells(medium, 0); }, "cell");
    }

    // The attention loss is 0 when each shape's tokens attend to that shape's cells only, 1 when
    // they attend to the other shape's, (1 - share)^2 in between; rows without a request (dropped
    // captions) and tokens no shape names do not count; its gradient reaches exactly the
    // supervised tokens' columns.
    void attentionLossRewardsTokensOnTheirShape() {
        kto::shapes::SceneOptions two;
        two.two_shape_probability = 1.0;
        const kto::shapes::Scene scene = kto::shapes::scene_for_index(11, 3, two);
        QCOMPARE(int(scene.shapes.size()), 2);
        const auto request = kto::shapes::full_request(scene);
        const auto spans = kto::shapes::shape_attribute_words(request);
        const std::vector<kto::shapes::Scene> scenes{scene, scene};
        const std::vector<std::optional<kto::shapes::PromptRequest>> requests{request, std::nullopt};
        const int r = 8, k = 77;
        const torch::Tensor cells0 = kto::shape_cells(scene.shapes[0], r), cells1 = kto::shape_cells(scene.shapes[1], r);
        QCOMPARE((cells0 * cells1).sum().item<float>(), 0.0f);  // apart at this grid
        auto map_with = [&](bool swapped) {
            torch::Tensor a = torch::full({2, r * r, k}, 1.0 / k);
            for (size_t i = 0; i < spans.size(); ++i)
                for (int w : spans[i]) a.select(2, w + 1).select(0, 0).copy_((i == 0) != swapped ? cells0 : cells1);
            return a;
        };
        auto loss = [&](const torch::Tensor& a) {
            return kto::shape_token_attention_loss({a}, scenes, requests).item<double>();
        };
        QCOMPARE(loss(map_with(false)), 0.0);
        QCOMPARE(loss(map_with(true)), 1.0);
        // Uniform attention: each token's share is its shape's cell count over all cells.
        const double s0 = cells0.sum().item<double>() / (r * r), s1 = cells1.sum().item<double>() / (r * r);
        const double n0 = double(spans[0].size()), n1 = double(spans[1].size());
        const double uniform = (n0 * std::pow(1 - s0, 2) + n1 * std::pow(1 - s1, 2)) / (n0 + n1);
        QVERIFY(std::abs(loss(torch::full({2, r * r, k}, 1.0 / k)) - uniform) < 1e-6);
        // Row 1 has no request: what it attends to does not matter. Two maps: their mean.
        torch::Tensor other = map_with(false);
        other[1].uniform_();
        QCOMPARE(loss(other), 0.0);
        const double two_maps = kto::shape_token_attention_loss({map_with(false), map_with(true)}, scenes, requests).item<double>();
        QVERIFY(std::abs(two_maps - 0.5) < 1e-9);
        // Gradient: only row 0's supervised token columns.
        torch::Tensor a = torch::full({2, r * r, k}, 1.0 / k).requires_grad_(true);
        kto::shape_token_attention_loss({a}, scenes, requests).backward();
        const torch::Tensor per_token = a.grad().abs().sum(1);  // [2, k]
        QCOMPARE(per_token[1].sum().item<float>(), 0.0f);
        std::set<int> supervised;
        for (const auto& span : spans)
            for (int w : span) supervised.insert(w + 1);
        for (int t = 0; t < k; ++t) QCOMPARE(per_token[0][t].item<float>() > 0, supervised.count(t) == 1);
        // No supervised row: 0. Wrong inputs: errors that say what is wrong.
        QCOMPARE(kto::shape_token_attention_loss({a}, scenes, {std::nullopt, std::nullopt}).item<double>(), 0.0);
        kto::test::expect_error([&] { kto::shape_token_attention_loss({a}, {scene}, requests); }, "2 requests");
        kto::test::expect_error([&] { kto::shape_token_attention_loss({torch::zeros({2, 60, k})}, scenes, requests); },
                                "r*r");
        kto::test::expect_error([&] { kto::shape_token_attention_loss({}, scenes, requests); }, "no attention maps");
        kto::shapes::Scene first_only = scene;
        first_only.shapes.pop_back();
        kto::test::expect_error([&] { kto::shape_token_attention_loss({a}, {first_only, scene}, requests); },
                                "names 2 shapes, its scene has 1");
    }

    // --attention-words picks which of a shape's words are supervised: their columns alone get a
    // gradient, whatever the caption omits ("a red circle" has no size word, so "size" alone
    // supervises nothing there). Unknown or empty lists are refused.
    void attentionWordsPickTheSupervisedTokens() {
        using kto::shapes::ShapeRequest;
        kto::shapes::SceneOptions two;
        two.two_shape_probability = 1.0;
        const kto::shapes::Scene scene = kto::shapes::scene_for_index(11, 3, two);
        kto::shapes::PromptRequest request = kto::shapes::full_request(scene);
        request.shapes[1].size.reset();  // the second shape: colour and class words only
        const auto spans = kto::shapes::shape_attribute_words(request);
        QCOMPARE(int(spans[0].size()), 3);
        QCOMPARE(int(spans[1].size()), 2);
        const int r = 8, k = 77;
        auto graded = [&](const std::string& list) {
            torch::Tensor a = torch::full({1, r * r, k}, 1.0 / k).requires_grad_(true);
            kto::shape_token_attention_loss({a}, {scene}, {request}, kto::parse_shape_word_kinds(list)).backward();
            const torch::Tensor per_token = a.grad().abs().sum(1)[0];
            std::set<int> out;
            for (int t = 0; t < k; ++t)
                if (per_token[t].item<float>() > 0) out.insert(t);
            return out;
        };
        const int size0 = spans[0][0] + 1, colour0 = spans[0][1] + 1, class0 = spans[0][2] + 1;
        const int colour1 = spans[1][0] + 1, class1 = spans[1][1] + 1;
        QCOMPARE(graded("size,colour,class"), (std::set<int>{size0, colour0, class0, colour1, class1}));
        QCOMPARE(graded("size,colour"), (std::set<int>{size0, colour0, colour1}));
        QCOMPARE(graded("class"), (std::set<int>{class0, class1}));
        QCOMPARE(graded("size"), (std::set<int>{size0}));
        // The default is all three words.
        const kto::shapes::AttributeWordKinds all;
        QVERIFY(all.size && all.colour && all.cls);
        kto::test::expect_error([] { kto::parse_shape_word_kinds("size,shape"); }, "not \"shape\"");
        kto::test::expect_error([] { kto::parse_shape_word_kinds(""); }, "names no word kind");
    }

    // An attention probe on the shipped UNet records one map per cross-attention layer, [B, cells,
    // 77], each query's row a distribution over the tokens, with autograd history back to the text
    // side; the prediction is what it is without the probe. Not with gradient checkpointing.
    void attentionProbeRecordsEveryCrossAttentionMap() {
        auto unet = kto::load_unet(kto::test::demo_model_dir() + "/unet");
        torch::manual_seed(3);
        const torch::Tensor x = torch::randn({2, 4, 16, 16});
        const torch::Tensor t = torch::tensor({999, 400});
        const int64_t width = unet->config().cross_attention_dim.front();
        const torch::Tensor ctx = torch::randn({2, 77, width}).requires_grad_(true);
        const torch::Tensor plain = unet->forward(x, t, ctx.detach());
        kto::AttentionProbe probe;
        unet->set_attention_probe(&probe);
        const torch::Tensor probed = unet->forward(x, t, ctx);
        QVERIFY(torch::allclose(probed, plain, 1e-5, 1e-5));
        int64_t layers = 0;
        for (const auto& b : unet->down_blocks) layers += int64_t(b->attentions.size());
        layers += int64_t(unet->mid_block->attentions.size());
        for (const auto& b : unet->up_blocks) layers += int64_t(b->attentions.size());
        QVERIFY(layers > 0);
        QCOMPARE(int64_t(probe.size()), layers);
        std::set<int64_t> sides;
        for (const auto& m : probe) {
            QCOMPARE(m.dim(), int64_t(3));
            QCOMPARE(m.size(0), int64_t(2));
            QCOMPARE(m.size(2), int64_t(77));
            const auto side = int64_t(std::lround(std::sqrt(double(m.size(1)))));
            QCOMPARE(side * side, m.size(1));
            sides.insert(side);
            QVERIFY(torch::allclose(m.sum(2), torch::ones({2, m.size(1)}), 1e-5, 1e-5));
        }
        QVERIFY(sides.size() >= 2);  // several levels (8x8 and 4x4 for the shipped layout)
        probe.front().select(2, 3).sum().backward();
        QVERIFY(ctx.grad().defined() && ctx.grad().abs().sum().item<float>() > 0);
        kto::test::expect_error([&] { unet->set_gradient_checkpointing(true); }, "probe");
        unet->set_attention_probe(nullptr);
        probe.clear();
        unet->forward(x, t, ctx.detach());
        QVERIFY(probe.empty());  // detached
        unet->set_gradient_checkpointing(true);
        kto::test::expect_error([&] { unet->set_attention_probe(&probe); }, "checkpointing");
    }

    // --attention-loss-weight trains with the attention loss (reported with the progress) and so
    // gives another UNet than the same seed without it.
    void attentionLossWeightChangesTheUNet() {
        QTemporaryDir tmp;
        const std::string base = tmp.path().toStdString();
        std::vector<kto::TensorMap> unets;
        for (const double w : {0.0, 0.5}) {
            kto::DemoTrainOptions o = toy_options_on_shipped_vae(base + (w > 0 ? "/attend" : "/plain"));
            o.cache_images = 16;
            o.two_shape_share = 0.5;
            o.attention_loss_weight = w;
            std::vector<double> reported;
            kto::train_demo_model(o, [&](const kto::DemoProgress& p) {
                if (p.phase == "unet") reported.push_back(p.attention_loss);
                return true;
            });
            QCOMPARE(int(reported.size()), o.unet_steps);
            for (double a : reported) QVERIFY2(w > 0 ? (a > 0 && a <= 1) : a == 0, std::to_string(a).c_str());
            unets.push_back(kto::load_safetensors(o.out_dir + "/unet/diffusion_pytorch_model.safetensors"));
        }
        QVERIFY(any_tensor_differs(unets[0], unets[1]));
    }

    // --unet-batch-halves: each step as two half-batches side by side, gradients summed. The same training
    // up to rounding (the reported diffusion and attention losses agree, the weights nearly), deterministic
    // itself, and refused where it cannot run (one thread).
    void unetBatchHalvesTrainAsTheWholeBatch() {
        QTemporaryDir tmp;
        const std::string base = tmp.path().toStdString();
        std::vector<kto::TensorMap> unets;
        std::vector<std::vector<double>> losses;
        for (const char* name : {"whole", "halves", "halves-again"}) {
            kto::DemoTrainOptions o = toy_options_on_shipped_vae(base + "/" + name);
            o.cache_images = 16;
            o.unet_batch = 6;
            o.unet_steps = 3;
            o.two_shape_share = 0.5;
            o.attention_loss_weight = 0.3;
            o.unet_shape_weight = 4;
            o.threads = 2;
            o.unet_batch_halves = std::string(name) != "whole";
            std::vector<double> reported;
            kto::train_demo_model(o, [&](const kto::DemoProgress& p) {
                if (p.phase == "unet") {
                    reported.push_back(p.loss);
                    reported.push_back(p.attention_loss);
                }
                return true;
            });
            losses.push_back(reported);
            unets.push_back(kto::load_safetensors(o.out_dir + "/unet/diffusion_pytorch_model.safetensors"));
        }
        expect_halves_match_whole(losses, unets, 6);
        if (QTest::currentTestFailed()) return;
        kto::DemoTrainOptions one = toy_options_on_shipped_vae(base + "/one-thread");
        one.unet_batch_halves = true;
        one.threads = 1;
        kto::test::expect_error([&] { kto::train_demo_model(one, {}); }, "--unet-batch-halves needs");
        QVERIFY(!fs::exists(base + "/one-thread/tokenizer"));
    }

    // DemoRunEta, what train-demo's progress line says is left: the current phase's steps at its own pace from
    // its 5th step on; in the UNet phase and its rounds the rounds to come too, at the UNet's pace (which a
    // round's first steps borrow); the whole run's only when nothing follows the rounds.
    void runEtaCountsThePhaseAndTheRoundsToCome() {
        kto::DemoTrainOptions o;
        o.vae_steps = 100;
        o.unet_steps = 200;
        o.unet_rounds = 2;
        o.unet_round_steps = 50;
        o.decoder_steps = 0;
        o.align_rounds = 0;
        kto::DemoRunEta eta(o);
        auto at = [&](const char* phase, int step, int total, double s) {
            return eta.update(kto::DemoProgress{phase, step, total, 0.1, s, 0.0});
        };
        QVERIFY(at("vae", 1, 100, 10.0).seconds < 0);  // a phase's first steps: no pace yet
        QVERIFY(at("vae", 5, 100, 12.0).seconds < 0);
        kto::DemoRunEta::Estimate e = at("vae", 6, 100, 12.5);  // 0.5 s a step
        QCOMPARE(e.seconds, 94 * 0.5);
        QCOMPARE(e.span, kto::DemoRunEta::Span::kPhase);  // the UNet's pace is not known yet
        QVERIFY(at("latents", 64, 640, 60.0).seconds < 0);
        e = at("latents", 384, 640, 65.0);  // 320 images in 5 s
        QCOMPARE(e.seconds, 256 * 5.0 / 320);
        QCOMPARE(e.span, kto::DemoRunEta::Span::kPhase);
        QVERIFY(at("unet", 1, 200, 100.0).seconds < 0);
        e = at("unet", 11, 200, 120.0);  // 2 s a step: 189 steps left and two rounds of 50
        QCOMPARE(e.seconds, (189 + 2 * 50) * 2.0);
        QCOMPARE(e.span, kto::DemoRunEta::Span::kRun);
        e = at("unet+1", 1, 50, 505.0);  // the round's first step: the UNet's pace
        QCOMPARE(e.seconds, (49 + 50) * 2.0);
        QCOMPARE(e.span, kto::DemoRunEta::Span::kRun);
        e = at("unet+1", 6, 50, 520.0);  // the round's own pace, 3 s a step, from its 5th step
        QCOMPARE(e.seconds, (44 + 50) * 3.0);
        e = at("unet+2", 1, 50, 660.0);  // the last round borrows the latest pace
        QCOMPARE(e.seconds, 49 * 3.0);
        QVERIFY(at("save", 0, 1, 810.0).seconds < 0);
        // A decoder refinement or alignment rounds after the UNet rounds: the estimate covers the UNet rounds only.
        for (int k = 0; k < 2; ++k) {
            kto::DemoTrainOptions more = o;
            (k == 0 ? more.decoder_steps : more.align_rounds) = 1;
            kto::DemoRunEta after(more);
            after.update(kto::DemoProgress{"unet", 1, 200, 0.1, 100.0, 0.0});
            e = after.update(kto::DemoProgress{"unet", 11, 200, 0.1, 120.0, 0.0});
            QCOMPARE(e.seconds, (189 + 2 * 50) * 2.0);
            QCOMPARE(e.span, kto::DemoRunEta::Span::kUnetAndRounds);
        }
    }

    // --vae-batch-halves: each VAE step as two half-batches side by side, gradients summed. The same VAE
    // phase up to rounding (the reported losses agree, the weights nearly), deterministic itself, and
    // refused where it cannot run (one thread, the palette anchor) before anything is written.
    void vaeBatchHalvesTrainAsTheWholeBatch() {
        QTemporaryDir tmp;
        const std::string base = tmp.path().toStdString();
        std::vector<kto::TensorMap> vaes;
        std::vector<std::vector<double>> losses;
        for (const char* name : {"whole", "halves", "halves-again"}) {
            kto::DemoTrainOptions o = toy_options(base + "/" + name);
            o.vae_steps = 3;
            o.vae_batch = 5;  // odd: halves of 2 and 3
            o.unet_steps = 0;
            o.decoder_steps = 0;
            o.threads = 2;
            o.vae_batch_halves = std::string(name) != "whole";
            std::vector<double> reported;
            kto::train_demo_model(o, [&](const kto::DemoProgress& p) {
                if (p.phase == "vae") reported.push_back(p.loss);
                return true;
            });
            losses.push_back(reported);
            vaes.push_back(kto::load_safetensors(o.out_dir + "/vae/diffusion_pytorch_model.safetensors"));
        }
        expect_halves_match_whole(losses, vaes, 3);
        if (QTest::currentTestFailed()) return;
        QVERIFY(any_tensor_differs(vaes[0], kto::load_safetensors(kto::test::demo_model_dir() +
                                                                   "/vae/diffusion_pytorch_model.safetensors")));
        kto::DemoTrainOptions one = toy_options(base + "/one-thread");
        one.vae_batch_halves = true;
        one.threads = 1;
        kto::test::expect_error([&] { kto::train_demo_model(one, {}); }, "--vae-batch-halves needs");
        QVERIFY(!fs::exists(base + "/one-thread/tokenizer"));
        kto::DemoTrainOptions palette = toy_options(base + "/palette");
        palette.vae_batch_halves = true;
        palette.threads = 2;
        palette.vae_palette_weight = 0.1;
        kto::test::expect_error([&] { kto::train_demo_model(palette, {}); }, "--vae-palette-weight");
        QVERIFY(!fs::exists(base + "/palette/tokenizer"));
    }

    // --mixed-precision bf16 runs the UNet phase under CPU autocast: it trains (finite losses, the
    // attention loss included) and gives another UNet than fp32 from the same seed, still fp16 on disk.
    void bf16AutocastTrainsTheUNet() {
        QTemporaryDir tmp;
        const std::string base = tmp.path().toStdString();
        std::vector<kto::TensorMap> unets;
        for (const bool bf16 : {false, true}) {
            kto::DemoTrainOptions o = toy_options_on_shipped_vae(base + (bf16 ? "/bf16" : "/fp32"));
            o.cache_images = 16;
            o.mixed_precision_bf16 = bf16;
            std::vector<double> losses;
            kto::train_demo_model(o, [&](const kto::DemoProgress& p) {
                if (p.phase == "unet") losses.push_back(p.loss);
                return true;
            });
            QCOMPARE(int(losses.size()), o.unet_steps);
            for (double l : losses) QVERIFY2(std::isfinite(l) && l > 0, std::to_string(l).c_str());
            unets.push_back(kto::load_safetensors(o.out_dir + "/unet/diffusion_pytorch_model.safetensors"));
            QCOMPARE(unets.back().begin()->second.scalar_type(), torch::kFloat16);
        }
        QVERIFY(any_tensor_differs(unets[0], unets[1]));
    }

    // --init-from continues a folder: with no steps the text encoder and UNet come out as they
    // went in (its configs win over the UNet options), with steps they move on from there. The
    // reused VAE keeps its scaling factor though the continued run caches other scenes (all of them
    // two-shape here): the UNet it continues learned latents at that scale.
    void initFromContinuesAFolder() {
        QTemporaryDir tmp;
        const std::string base = tmp.path().toStdString();
        kto::DemoTrainOptions a = toy_options(base + "/a");
        kto::train_demo_model(a);
        auto continued = [&](const std::string& name, int steps) {
            kto::DemoTrainOptions o = toy_options(base + "/" + name);
            o.init_from = o.vae_from = a.out_dir;
            o.vae_steps = 0;
            o.unet_steps = steps;
            o.unet_channels = {16, 32};  // ignored: the folder's UNet config is used
            o.two_shape_share = 1.0;
            kto::train_demo_model(o);
            return o.out_dir;
        };
        const std::string same = continued("same", 0), moved = continued("moved", 2);
        QCOMPARE(kto::read_json_file(same + "/unet/config.json"), kto::read_json_file(a.out_dir + "/unet/config.json"));
        QCOMPARE(kto::read_json_file(moved + "/vae/config.json").at("scaling_factor").get<double>(),
                 kto::read_json_file(a.out_dir + "/vae/config.json").at("scaling_factor").get<double>());
        for (const char* file : {"/unet/diffusion_pytorch_model.safetensors", "/text_encoder/model.safetensors"}) {
            const kto::TensorMap before = kto::load_safetensors(a.out_dir + file);
            const kto::TensorMap kept = kto::load_safetensors(same + file);
            const kto::TensorMap after = kto::load_safetensors(moved + file);
            QCOMPARE(kept.size(), before.size());
            bool any_moved = false;
            for (const auto& [key, t] : before) {
                QVERIFY2(torch::equal(t, kept.at(key)), key.c_str());
                any_moved = any_moved || !torch::equal(t, after.at(key));
            }
            QVERIFY2(any_moved, file);
        }
        // A folder whose tokenizer is not this run's: its token ids would mean other words.
        fs::copy(a.out_dir, base + "/tampered", fs::copy_options::recursive);
        {
            std::ofstream merges(base + "/tampered/tokenizer/merges.txt", std::ios::app);
            merges << "c ircle\n";
        }
        kto::DemoTrainOptions other = toy_options(base + "/other");
        other.init_from = base + "/tampered";
        kto::test::expect_error([&] { kto::train_demo_model(other); }, "tokenizer/merges.txt differs");
    }

    // Continuation rounds are --init-from runs folded into one: a run with two rounds writes, byte
    // for byte, the folder that the phase alone and then two --init-from runs of the round's steps at
    // a constant LR write (each from the folder before, its fp16 weights and VAE). The rounds report
    // as phases "unet+1", "unet+2" with their own step counts.
    void unetRoundsAreInitFromRunsInOne() {
        QTemporaryDir tmp;
        const std::string base = tmp.path().toStdString();
        kto::DemoTrainOptions o = toy_options_on_shipped_vae(base + "/rounds");
        o.cache_images = 16;
        o.unet_steps = 3;
        o.unet_rounds = 2;
        o.unet_round_steps = 2;
        o.unet_round_lr = 2e-4;
        std::vector<std::string> reported;  // "phase step/total" of each UNet step
        kto::train_demo_model(o, [&](const kto::DemoProgress& p) {
            if (p.phase.rfind("unet", 0) == 0)
                reported.push_back(p.phase + " " + std::to_string(p.step) + "/" + std::to_string(p.total));
            return true;
        });
        QCOMPARE(reported, (std::vector<std::string>{"unet 1/3", "unet 2/3", "unet 3/3", "unet+1 1/2", "unet+1 2/2",
                                                     "unet+2 1/2", "unet+2 2/2"}));

        kto::DemoTrainOptions chain = o;
        chain.out_dir = base + "/r0";
        chain.unet_rounds = 0;
        kto::train_demo_model(chain);
        for (const char* next : {"/r1", "/r2"}) {
            chain.init_from = chain.vae_from = chain.out_dir;
            chain.out_dir = base + next;
            chain.unet_steps = o.unet_round_steps;
            chain.unet_lr = o.unet_round_lr;
            chain.unet_lr_floor = 1.0;
            kto::train_demo_model(chain);
        }
        for (const char* file : {"/unet/diffusion_pytorch_model.safetensors", "/text_encoder/model.safetensors",
                                 "/vae/diffusion_pytorch_model.safetensors", "/tokenizer/merges.txt"}) {
            const std::string bytes_a = file_bytes(o.out_dir + file), bytes_b = file_bytes(chain.out_dir + file);
            QVERIFY2(!bytes_a.empty() && bytes_a == bytes_b, file);
        }
        // Rounds move the weights: without them the folder is r0's.
        QVERIFY(any_tensor_differs(kto::load_safetensors(o.out_dir + "/unet/diffusion_pytorch_model.safetensors"),
                                   kto::load_safetensors(base + "/r0/unet/diffusion_pytorch_model.safetensors")));
    }

    // The UNet options shape what is saved: block_out_channels, layers_per_block, and which levels
    // go without attention (DownBlock2D / UpBlock2D at the highest resolution, mirrored on the way
    // up). The folder loads and generates through the app's pipeline, and min-SNR weighting trains.
    void unetOptionsShapeTheSavedModel() {
        QTemporaryDir tmp;
        const nlohmann::json shipped = kto::demo_unet_config(kto::DemoTrainOptions{}.unet_channels,
                                                             kto::DemoTrainOptions{}.unet_layers,
                                                             kto::DemoTrainOptions{}.unet_plain_levels);
        QCOMPARE(shipped, kto::demo_unet_config());  // the defaults of both agree
        QCOMPARE(kto::demo_unet_config()["attention_head_dim"].get<int>(), kto::DemoTrainOptions{}.unet_heads);
        QCOMPARE(kto::demo_unet_config()["cross_attention_dim"].get<int>(), kto::DemoTrainOptions{}.text_width);
        QCOMPARE(kto::demo_text_encoder_config(100)["hidden_size"].get<int>(), kto::DemoTrainOptions{}.text_width);
        QCOMPARE(kto::demo_text_encoder_config(100)["num_hidden_layers"].get<int>(), kto::DemoTrainOptions{}.text_layers);
        struct Case {
            std::vector<int> channels;
            int layers, plain;
            std::vector<std::string> down, up;
        };
        const std::vector<Case> cases{
            {{16, 32, 32}, 1, 1, {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"},
             {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
            {{32, 64}, 2, 0, {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}, {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
        };
        int n = 0;
        for (const Case& c : cases) {
            kto::DemoTrainOptions o = toy_options(tmp.path().toStdString() + "/m" + std::to_string(n++));
            o.unet_channels = c.channels;
            o.unet_layers = c.layers;
            o.unet_plain_levels = c.plain;
            o.min_snr_gamma = 5;
            kto::train_demo_model(o);
            const nlohmann::json cfg = kto::read_json_file(o.out_dir + "/unet/config.json");
            QCOMPARE(cfg["block_out_channels"].get<std::vector<int>>(), c.channels);
            QCOMPARE(cfg["layers_per_block"].get<int>(), c.layers);
            QCOMPARE(cfg["down_block_types"].get<std::vector<std::string>>(), c.down);
            QCOMPARE(cfg["up_block_types"].get<std::vector<std::string>>(), c.up);
            const torch::Tensor img = kto::demo_generate(o.out_dir, {"a blue star"}, {3}, 2, 5.0);
            QVERIFY(torch::isfinite(img).all().item<bool>());
        }
    }

    // The text encoder and attention options shape what is saved: a wider, deeper text encoder
    // (hidden size, one head per 16 channels, MLP 4x, layers), the UNet's cross_attention_dim that
    // follows its width, and the UNet's head count. The folder loads and generates.
    void textAndHeadOptionsShapeTheSavedModel() {
        QTemporaryDir tmp;
        kto::DemoTrainOptions o = toy_options(tmp.path().toStdString() + "/m");
        o.unet_channels = {16, 32, 32};
        o.text_width = 32;
        o.text_layers = 3;
        o.unet_heads = 8;
        kto::train_demo_model(o);
        const nlohmann::json text = kto::read_json_file(o.out_dir + "/text_encoder/config.json");
        QCOMPARE(text["hidden_size"].get<int>(), 32);
        QCOMPARE(text["num_attention_heads"].get<int>(), 2);
        QCOMPARE(text["intermediate_size"].get<int>(), 128);
        QCOMPARE(text["num_hidden_layers"].get<int>(), 3);
        const nlohmann::json unet = kto::read_json_file(o.out_dir + "/unet/config.json");
        QCOMPARE(unet["cross_attention_dim"].get<int>(), 32);
        QCOMPARE(unet["attention_head_dim"].get<int>(), 8);
        const kto::TensorMap weights = kto::load_safetensors(o.out_dir + "/text_encoder/model.safetensors");
        QVERIFY(weights.count("text_model.encoder.layers.2.mlp.fc1.weight"));
        QCOMPARE(weights.at("text_model.encoder.layers.2.mlp.fc1.weight").sizes().vec(), (std::vector<int64_t>{128, 32}));
        const torch::Tensor img = kto::demo_generate(o.out_dir, {"a blue star"}, {3}, 2, 5.0);
        QVERIFY(torch::isfinite(img).all().item<bool>());
    }

    // The palette codes are the eight vertices of the 4-D cross-polytope: every pair sqrt(2) r
    // apart but the four opponent pairs (white / black, yellow / blue, red / green, orange /
    // purple), 2 r apart. A render's targets: the code of the colour that fills a latent cell, and
    // no target where an edge crosses a cell.
    void paletteCodesAndTargets() {
        using namespace kto::shapes;
        const double r = 2.0;
        const torch::Tensor c = kto::demo_palette_codes(r);
        QCOMPARE(c.sizes().vec(), (std::vector<int64_t>{8, 4}));
        std::set<std::pair<int, int>> opposite;
        for (int i = 0; i < 8; ++i) {
            QVERIFY(std::abs(c[i].norm().item<double>() - r) < 1e-6);
            for (int j = i + 1; j < 8; ++j) {
                const double d = (c[i] - c[j]).norm().item<double>();
                if (std::abs(d - 2 * r) < 1e-6) opposite.insert({i, j});
                else QVERIFY2(std::abs(d - std::sqrt(2.0) * r) < 1e-6, (name(kAllColours[size_t(i)]) + "/" + name(kAllColours[size_t(j)])).c_str());
            }
        }
        auto pair = [](Colour a, Colour b) { return std::pair{int(a), int(b)}; };
        QCOMPARE(opposite, (std::set<std::pair<int, int>>{pair(Colour::Red, Colour::Green), pair(Colour::Orange, Colour::Purple),
                                                           pair(Colour::Yellow, Colour::Blue), pair(Colour::White, Colour::Black)}));

        Scene scene;
        scene.background = Colour::Blue;
        Rng jitter(1, 1);
        scene.shapes.push_back(place_shape(ShapeClass::Circle, Colour::Red, Size::Large, Position::Centre, jitter));
        const torch::Tensor x = image_to_tensor(render(scene, 64)).unsqueeze(0);
        const auto [target, cells] = kto::demo_palette_targets(x, r);
        QCOMPARE(target.sizes().vec(), (std::vector<int64_t>{1, 4, 16, 16}));
        QCOMPARE(cells.sizes().vec(), (std::vector<int64_t>{1, 1, 16, 16}));
        auto code_at = [&](int y, int x_) { return target[0].select(1, y).select(1, x_); };
        QCOMPARE(cells[0][0][0][0].item<float>(), 1.0f);
        QVERIFY(torch::equal(code_at(0, 0), c[int(Colour::Blue)]));
        QCOMPARE(cells[0][0][8][8].item<float>(), 1.0f);
        QVERIFY(torch::equal(code_at(8, 8), c[int(Colour::Red)]));
        const double covered = cells.sum().item<double>();
        QVERIFY2(covered > 150 && covered < 250, std::to_string(covered).c_str());  // the circle's rim has no target
        QCOMPARE((target.abs().sum(1, true) * (1 - cells)).sum().item<double>(), 0.0);
    }

    // The anchor does its job in training: after a short VAE run with it, the encoder's codes of
    // plainly coloured cells lie much nearer their vertices than after the same run without it.
    void paletteAnchorPullsCodesToTheirVertices() {
        QTemporaryDir tmp;
        std::vector<kto::shapes::Scene> scenes;
        for (uint64_t i = 0; i < 6; ++i) scenes.push_back(kto::shapes::scene_for_index(4242, i));
        std::vector<torch::Tensor> xs;
        for (const auto& s : scenes) xs.push_back(kto::shapes::image_to_tensor(kto::shapes::render(s, 64)));
        const torch::Tensor x = torch::stack(xs);
        const auto [target, cells] = kto::demo_palette_targets(x, 2.0);
        auto miss_after = [&](double weight, const char* name) {
            kto::DemoTrainOptions o = toy_options((fs::path(tmp.path().toStdString()) / name).string());
            o.vae_steps = 40;
            o.vae_batch = 4;
            o.unet_steps = 0;
            o.vae_palette_weight = weight;
            kto::train_demo_model(o);
            torch::NoGradGuard no_grad;
            kto::AutoencoderKL vae = kto::load_vae(o.out_dir + "/vae");
            const torch::Tensor mean = vae->encode(x).mean;
            return (((mean - target).pow(2) * cells).sum() / (cells.sum() * 4)).item<double>();
        };
        const double off = miss_after(0, "off"), on = miss_after(10, "on");
        qInfo("palette anchor miss (mean squared distance to the vertex): %.3f without, %.3f with", off, on);
        QVERIFY(on < 0.5 * off);
    }

    // The colour distances in the shipped model's latent space: a symmetric matrix with a zero
    // diagonal, every colour apart from every other, and colours far apart in RGB (white, black)
    // farther apart than near ones (orange, yellow).
    void colourLatentDistances() {
        using kto::shapes::Colour;
        const torch::Tensor d = kto::demo_colour_latent_distances(kto::test::demo_model_dir(), Colour::Blue);
        QCOMPARE(d.sizes().vec(), (std::vector<int64_t>{8, 8}));
        QVERIFY(torch::allclose(d, d.t()));
        QCOMPARE(d.diagonal().abs().max().item<double>(), 0.0);
        QVERIFY((d + torch::eye(8, torch::kFloat64)).min().item<double>() > 0.05);
        auto at = [&](Colour a, Colour b) { return d[int64_t(a)][int64_t(b)].item<double>(); };
        QVERIFY(at(Colour::White, Colour::Black) > 2 * at(Colour::Orange, Colour::Yellow));
        kto::test::expect_error([] { kto::demo_colour_latent_distances("/nonexistent/model", Colour::White); },
                                "/nonexistent/model");
    }

    // --latent-gain pushes each latent away from its image's background code before decoding (as
    // strong guidance does): the backgrounds, the pivot, stay right and the images change. It is
    // refused when not positive and without --reconstruct.
    void latentGainPushesShapesPastTheData() {
        kto::DemoEvalOptions o = shipped_round_trip(8);
        auto cover = [](const kto::DemoEvalResult& r) {
            const std::vector<double> f = foreground_fractions(r);
            return std::accumulate(f.begin(), f.end(), 0.0);
        };
        const kto::DemoEvalResult plain = kto::evaluate_demo_model(o);
        o.latent_gain = 2.0;
        const kto::DemoEvalResult pushed = kto::evaluate_demo_model(o);
        QCOMPARE(pushed.images, 8);
        QCOMPARE(pushed.background_right, 1.0);
        QVERIFY(std::abs(cover(pushed) - cover(plain)) > 1e-3);
        for (double gain : {0.0, -1.0}) {
            o.latent_gain = gain;
            QVERIFY_THROWS_EXCEPTION(kto::Error, kto::evaluate_demo_model(o));
        }
        o.latent_gain = 2.0;
        o.reconstruct = false;
        kto::test::expect_error([&] { kto::evaluate_demo_model(o); }, "--reconstruct");
    }

    // --latent-blur softens the latents before decoding: the backgrounds stay right and the shapes
    // change. It is refused outside [0, 1] and without --reconstruct.
    void latentBlurSoftensTheShapes() {
        kto::DemoEvalOptions o = shipped_round_trip(8);
        const std::vector<double> plain = foreground_fractions(kto::evaluate_demo_model(o));
        o.latent_blur = 1.0;
        const kto::DemoEvalResult blurred = kto::evaluate_demo_model(o);
        QCOMPARE(blurred.background_right, 1.0);
        QVERIFY(foreground_fractions(blurred) != plain);
        for (double amount : {-0.1, 1.5}) {
            o.latent_blur = amount;
            kto::test::expect_error([&] { kto::evaluate_demo_model(o); }, "--latent-blur");
        }
        o.latent_blur = 0.5;
        o.reconstruct = false;
        kto::test::expect_error([&] { kto::evaluate_demo_model(o); }, "--reconstruct");
    }

    // --sampler picks the sampler demo-eval generates with: "ddim" is the folder's own (the same
    // images as the default), another sampler draws other images, an unknown name is refused.
    void samplerChoosesTheScheduler() {
        kto::DemoEvalOptions o;
        o.model_dir = kto::test::demo_model_dir();
        o.prompts = 2;
        o.batch = 2;
        o.steps = 4;
        o.speed_runs = 0;
        o.threads = 1;
        const auto folder = foreground_fractions(kto::evaluate_demo_model(o));
        o.sampler = "ddim";
        QCOMPARE(foreground_fractions(kto::evaluate_demo_model(o)), folder);
        o.sampler = "euler";
        QVERIFY(foreground_fractions(kto::evaluate_demo_model(o)) != folder);
        o.sampler = "bogus";
        kto::test::expect_error([&] { kto::evaluate_demo_model(o); }, "unknown sampler 'bogus'");
    }

    // The shipped VAE reproduces the held-out scenes well enough that the scorer reads back what
    // each prompt asked for (the model card's ceiling row; 24 prompts here, 200 there).
    void shippedVaeRoundTripKeepsColoursAndBackgrounds() {
        const kto::DemoEvalResult r = kto::evaluate_demo_model(shipped_round_trip(24));
        qInfo("VAE round trip: colour %.3f background %.3f class %.3f size %.3f", r.colour_right,
              r.background_right, r.class_right, r.size_right);
        QCOMPARE(r.images, 24);
        QCOMPARE(r.background_right, 1.0);
        QVERIFY(r.colour_right >= 0.9);
        QCOMPARE(r.median_seconds_per_image, 0.0);  // no generation was timed
        // One detail row per image, in prompt order, whose tallies are the reported shares.
        QCOMPARE(int(r.details.size()), 24);
        int asked = 0, right = 0;
        for (size_t i = 0; i < r.details.size(); ++i) {
            QCOMPARE(r.details[i].prompt, r.prompts[i]);
            QVERIFY(!r.details[i].read.shapes.empty());
            asked += r.details[i].fidelity.colour.asked;
            right += r.details[i].fidelity.colour.right;
        }
        QVERIFY(asked >= 24);
        QCOMPARE(double(right) / asked, r.colour_right);
    }
};

QTEST_GUILESS_MAIN(TestDemoTraining)
#include "test_demo_training.moc"
