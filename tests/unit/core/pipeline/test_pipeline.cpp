// Text-to-image parity against diffusers' StableDiffusionPipeline on the tiny-sd reference model
// (golden/tiny-sd/pipeline.safetensors: DDIM and Euler, 4 steps, guidance 7, 64x64), plus the
// pipeline's options, callbacks and error handling.
//
// Tolerances: image, decoded image, UNet in/out and guided noise within 1e-4 absolute. Latents
// grow to |17|, so they are checked at 1e-4 relative to their largest magnitude (the reference
// README's float32 noise floor for them is 2e-5 absolute).
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/common/runtime.h"
#include "core/pipeline/pipeline.h"
#include "tests/support/tensor_check.h"
#include "tests/support/error_check.h"
#include "tests/support/test_paths.h"

using kto::test::expect_error;

class TestPipeline : public QObject {
    Q_OBJECT

    kto::ModelBundle bundle_;
    kto::TensorMap golden_;

    std::string model_dir() const { return kto::test::reference_dir() + "/tiny-sd"; }

    kto::GenerateOptions golden_options(const std::string& run) const {
        kto::GenerateOptions o;
        o.prompts = {"a photograph of an astronaut riding a horse"};
        o.steps = 4;
        o.cfg = 7.0;
        o.sampler = run;
        o.width = 64;
        o.height = 64;
        o.init_latents = golden_.at(run + ".init_latents");
        return o;
    }

private slots:
    void initTestCase() {
        bundle_ = kto::ModelBundle::load(model_dir());
        golden_ = kto::load_safetensors(kto::test::reference_dir() + "/golden/tiny-sd/pipeline.safetensors");
        QCOMPARE(bundle_.vae_scale_factor(), 2);
        QCOMPARE(bundle_.default_sampler(), std::string("pndm"));
        QCOMPARE(bundle_.name, std::string("tiny-sd"));
    }

    void goldenRun_data() {
        QTest::addColumn<QString>("run");
        QTest::newRow("ddim") << "ddim";
        QTest::newRow("euler") << "euler";
    }
    void goldenRun() {
        QFETCH(QString, run);
        const std::string r = run.toStdString();
        auto o = golden_options(r);
        std::vector<kto::StepTrace> steps;
        o.on_step = [&](const kto::StepTrace& s) { steps.push_back(s); };
        auto res = kto::generate(bundle_, o);

        // Text states fed to the UNet: [negative; positive].
        KTO_COMPARE_TENSORS(kto::encode_prompts(bundle_, {""}), golden_.at(r + ".negative_prompt_embeds"), 1e-5,
                            r + ".negative_prompt_embeds");
        KTO_COMPARE_TENSORS(kto::encode_prompts(bundle_, o.prompts), golden_.at(r + ".prompt_embeds"), 1e-5,
                            r + ".prompt_embeds");
        KTO_COMPARE_TENSORS(res.timesteps, golden_.at(r + ".timesteps"), 0.0, r + ".timesteps");
        QCOMPARE(int(steps.size()), 4);
        for (int i = 0; i < 4; ++i) {
            const std::string p = r + ".step" + std::to_string(i) + ".";
            KTO_COMPARE_TENSORS(steps[i].timestep.reshape({1}), golden_.at(p + "timestep"), 0.0, p + "timestep");
            KTO_COMPARE_TENSORS(steps[i].unet_in, golden_.at(p + "unet_in"), 1e-4, p + "unet_in");
            KTO_COMPARE_TENSORS(steps[i].unet_out, golden_.at(p + "unet_out"), 1e-4, p + "unet_out");
            KTO_COMPARE_TENSORS(steps[i].noise_pred, golden_.at(p + "noise_pred"), 1e-4, p + "noise_pred");
            const auto& gl = golden_.at(p + "latents");
            const double scale = std::max(1.0, gl.abs().max().item<double>());
            KTO_COMPARE_TENSORS(steps[i].latents, gl, 1e-4 * scale, p + "latents (1e-4 relative)");
        }
        const auto& gl = golden_.at(r + ".step3.latents");
        KTO_COMPARE_TENSORS(res.latents, gl, 1e-4 * std::max(1.0, gl.abs().max().item<double>()), r + ".latents");
        torch::NoGradGuard ng;
        auto decoded = bundle_.vae->decode(res.latents / bundle_.vae->scaling_factor());
        KTO_COMPARE_TENSORS(decoded, golden_.at(r + ".decoded"), 1e-4, r + ".decoded");
        KTO_COMPARE_TENSORS(res.images, golden_.at(r + ".image"), 1e-4, r + ".image");
        QCOMPARE(int(res.rgb.size()), 1);
        QCOMPARE(res.rgb[0].width, 64);
        QCOMPARE(res.rgb[0].pixels.size(), size_t(64 * 64 * 3));
    }

    // Same seed, same image; another seed, another image; batch rows share one randn draw.
    void seedsAndBatches() {
        kto::GenerateOptions o;
        o.prompts = {"a red circle", "a blue square"};
        o.negative_prompts = {"blurry"};
        o.images_per_prompt = 2;
        o.steps = 2;
        o.cfg = 5.0;
        o.width = o.height = 32;
        o.seed = 1234;
        o.sampler = "euler_ancestral";
        auto a = kto::generate(bundle_, o);
        auto b = kto::generate(bundle_, o);
        QCOMPARE(a.images.sizes(), torch::IntArrayRef({4, 3, 32, 32}));
        QVERIFY(torch::equal(a.latents, b.latents));
        o.seed = 1235;
        auto c = kto::generate(bundle_, o);
        QVERIFY(!torch::allclose(a.latents, c.latents));
        // A single row reproduces the first row of the batch's initial noise (one [B,...] draw).
        auto g = kto::make_cpu_generator(7);
        auto z = kto::randn_on_cpu({2, 4, 8, 8}, &g);
        auto g1 = kto::make_cpu_generator(7);
        auto z1 = kto::randn_on_cpu({1, 4, 8, 8}, &g1);
        QVERIFY(torch::equal(z[0], z1[0]));
    }

    // On the CPU with 2+ threads the CFG batch's halves run side by side (CpuPairRunner); the result is
    // the one-batch run's, to rounding, and the caller's thread count is what it was.
    void cfgHalvesSideBySide() {
        kto::configure_torch_threads(2);
        if (!kto::CpuPairRunner::available()) QSKIP("no OpenMP runtime to split the threads with");
        kto::GenerateOptions o;
        o.prompts = {"a red circle", "a blue square"};
        o.steps = 3;
        o.cfg = 5.0;
        o.width = o.height = 32;
        o.seed = 99;
        const auto side_by_side = kto::generate(bundle_, o);
        QCOMPARE(torch::get_num_threads(), 2);
        qputenv("KTO_CPU_PAIRS", "0");
        QVERIFY(!kto::CpuPairRunner::available());
        const auto one_batch = kto::generate(bundle_, o);
        qunsetenv("KTO_CPU_PAIRS");
        KTO_COMPARE_TENSORS(side_by_side.latents, one_batch.latents, 1e-5, "latents, halves side by side");
        KTO_COMPARE_TENSORS(side_by_side.images, one_batch.images, 1e-5, "images, halves side by side");
    }

    void callbacksAndCancel() {
        kto::GenerateOptions o;
        o.prompts = {"a green triangle"};
        o.steps = 3;
        o.width = o.height = 16;
        o.sampler = "dpmpp_2m";
        std::vector<int> progress;
        int previews = 0;
        o.on_progress = [&](int s, int total) {
            progress.push_back(s);
            QCOMPARE(total, 3);
        };
        o.on_preview = [&](int, int, const std::vector<kto::RgbImage>& p) {
            ++previews;
            QCOMPARE(int(p.size()), 1);
            QCOMPARE(p[0].width, 8);
            QCOMPARE(p[0].pixels.size(), size_t(8 * 8 * 3));
        };
        auto r = kto::generate(bundle_, o);
        QCOMPARE(progress, std::vector<int>({1, 2, 3}));
        QCOMPARE(previews, 3);
        int calls = 0;
        o.on_preview = nullptr;
        o.should_cancel = [&] { return ++calls > 2; };
        bool cancelled = false;
        try {
            kto::generate(bundle_, o);
        } catch (const kto::Cancelled&) {
            cancelled = true;
        }
        QVERIFY(cancelled);
        QCOMPARE(calls, 3);
    }

    // An allocation failure mid-generation (forced: KTO_FAULT_OOM) is reported in words with
    // advice, and the same bundle generates again right after.
    void outOfMemoryIsReportedWithAdvice() {
        kto::GenerateOptions o;
        o.prompts = {"a green triangle"};
        o.images_per_prompt = 3;
        o.steps = 3;
        o.width = o.height = 16;
        qputenv("KTO_FAULT_OOM", "generate-step:2");
        kto::reset_fault_points();
        std::string message;
        try {
            kto::generate(bundle_, o);
        } catch (const kto::OutOfMemory& e) {
            message = e.what();
        }
        qunsetenv("KTO_FAULT_OOM");
        QVERIFY2(message.find("out of memory while generating 3 images of 16x16 on cpu") != std::string::npos,
                 message.c_str());
        QVERIFY2(message.find("Try fewer images per batch, a smaller size") != std::string::npos, message.c_str());
        auto r = kto::generate(bundle_, o);
        QCOMPARE(int(r.rgb.size()), 3);
    }

    void longPromptWarns() {
        kto::GenerateOptions o;
        std::string p;
        for (int i = 0; i < 100; ++i) p += "horse ";
        o.prompts = {p};
        o.steps = 1;
        o.width = o.height = 16;
        std::vector<std::string> logged;
        o.on_warning = [&](const std::string& w) { logged.push_back(w); };
        auto r = kto::generate(bundle_, o);
        QCOMPARE(int(r.warnings.size()), 1);
        QCOMPARE(logged, r.warnings);
        QVERIFY2(r.warnings[0].find("only the first 77") != std::string::npos, r.warnings[0].c_str());
    }

    // diffusers' guidance_rescale: phi * (guided rescaled to the text half's per-sample std) +
    // (1 - phi) * guided; at phi = 1 every sample's guided prediction has the text half's std.
    void guidanceRescale() {
        for (const double phi : {0.7, 1.0}) {
            auto o = golden_options("ddim");
            o.guidance_rescale = phi;
            std::vector<kto::StepTrace> steps;
            o.on_step = [&](const kto::StepTrace& s) { steps.push_back(s); };
            kto::generate(bundle_, o);
            QCOMPARE(int(steps.size()), 4);
            for (const auto& s : steps) {
                const auto halves = s.unet_out.chunk(2);
                const auto guided = halves[0] + o.cfg * (halves[1] - halves[0]);
                const double text_std = halves[1].std().item<double>();
                const auto expected =
                    phi * guided * (text_std / guided.std().item<double>()) + (1.0 - phi) * guided;
                KTO_COMPARE_TENSORS(s.noise_pred, expected, 1e-5, "rescaled noise_pred");
                if (phi == 1.0) QVERIFY(std::abs(s.noise_pred.std().item<double>() - text_std) < 1e-5 * text_std);
                // The golden run (no rescale) guides the same UNet output to something else.
                QVERIFY(!torch::allclose(s.noise_pred, guided, 1e-4, 1e-4));
            }
        }
        auto o = golden_options("ddim");
        for (const double bad : {-0.1, 1.5, std::nan("")}) {
            o.guidance_rescale = bad;
            expect_error([&] { kto::generate(bundle_, o); }, "guidance rescale must be between 0 and 1");
        }
    }

    // Image-to-image (SDEdit): the images' latents, noised to the grid step that leaves
    // round(steps * strength) steps, are where the run starts; only those steps run, with the
    // same UNet calls and scheduler steps as the tail of a full run from that point.
    void imageToImage() {
        auto full = golden_options("ddim");  // 4 steps
        full.decode = false;
        const auto base = kto::generate(bundle_, full);
        const torch::Tensor image = base.latents;  // some latents in the UNet's space
        auto o = full;
        o.image_latents = image;
        o.strength = 0.5;
        std::vector<kto::StepTrace> steps;
        std::vector<std::pair<int, int>> progress;
        o.on_step = [&](const kto::StepTrace& s) { steps.push_back(s); };
        o.on_progress = [&](int done, int total) { progress.push_back({done, total}); };
        const auto r = kto::generate(bundle_, o);
        QCOMPARE(int(steps.size()), 2);
        QCOMPARE(progress, (std::vector<std::pair<int, int>>{{1, 2}, {2, 2}}));
        QVERIFY(torch::equal(r.timesteps, base.timesteps.slice(0, 2)));
        // The first step's input is the image noised with init_latents to that timestep.
        auto scheduler = kto::make_scheduler("ddim", bundle_.scheduler_config);
        scheduler->set_timesteps(4);
        const auto start = scheduler->add_noise(image, full.init_latents, scheduler->timesteps()[2].to(torch::kInt64).expand({1}));
        KTO_COMPARE_TENSORS(steps[0].unet_in.chunk(2)[1], start, 1e-6, "noised image");
        QCOMPARE(steps[0].index, 2);  // the index in the whole grid
        // A small strength keeps the image; the whole grid starts from noise as a plain run does.
        o.on_step = nullptr;
        o.on_progress = nullptr;
        o.strength = 0.25;  // one step from a lightly noised image
        const double kept = (kto::generate(bundle_, o).latents - image).abs().mean().item<double>();
        const double plain = (base.latents - full.init_latents).abs().mean().item<double>();
        QVERIFY2(kept < 0.5 * plain, qPrintable(QString("kept %1 plain %2").arg(kept).arg(plain)));
        o.strength = 1.0;
        QVERIFY(!torch::allclose(kto::generate(bundle_, o).latents, base.latents));  // starts from the noised image
        // Refusals.
        for (const double bad : {0.0, 1.5, std::nan("")}) {
            o.strength = bad;
            expect_error([&] { kto::generate(bundle_, o); }, "strength must be in (0, 1]");
        }
        o.strength = 0.5;
        o.image_latents = torch::zeros({1, 4, 8, 8});
        expect_error([&] { kto::generate(bundle_, o); }, "image_latents must have shape [1, 4, 32, 32]");
        o.image_latents = image;
        o.sampler = "euler";
        expect_error([&] { kto::generate(bundle_, o); }, "ddim or ddpm sampler, not euler");
        o.sampler = "ddim";
        o.image_latents = torch::Tensor();
        expect_error([&] { kto::generate(bundle_, o); }, "needs image_latents");
    }

    void badInput() {
        kto::GenerateOptions o;
        o.prompts = {"x"};
        o.steps = 1;
        o.width = 60;
        o.height = 64;
        expect_error([&] { kto::generate(bundle_, o); }, "width 60 is not a positive multiple of 8");
        o.width = 64;
        o.height = 0;
        expect_error([&] { kto::generate(bundle_, o); }, "height 0");
        o.height = 64;
        o.sampler = "heun";
        expect_error([&] { kto::generate(bundle_, o); }, "unknown sampler 'heun'");
        o.sampler = "ddim";
        o.init_latents = torch::zeros({1, 4, 8, 8});
        expect_error([&] { kto::generate(bundle_, o); }, "init_latents must have shape [1, 4, 32, 32]");
        o.init_latents = torch::Tensor();
        o.prompts.clear();
        expect_error([&] { kto::generate(bundle_, o); }, "no prompt");
        o.prompts = {"a", "b"};
        o.negative_prompts = {"x", "y", "z"};
        expect_error([&] { kto::generate(bundle_, o); }, "negative prompt");
        expect_error([&] { kto::ModelBundle::load("/nonexistent/model"); }, "/nonexistent/model");
        // A folder without model_index.json / components.
        QTemporaryDir tmp;
        expect_error([&] { kto::ModelBundle::load(tmp.path().toStdString()); }, tmp.path().toStdString());
    }

    // The dtype a model runs in when none was chosen: a small UNet (the tiny reference model, the demo
    // model) in fp32 on any CPU unless bf16 was chosen; CUDA fp16; the count read from the headers
    // equals the loaded UNet's.
    void smallModelsRunInFp32UnlessBf16WasChosen() {
        int64_t loaded = 0;
        for (const auto& p : bundle_.unet->parameters()) loaded += p.numel();
        QCOMPARE(kto::unet_parameter_count(model_dir()), loaded);
        QTemporaryDir tmp;
        QCOMPARE(kto::unet_parameter_count(tmp.path().toStdString()), int64_t(-1));
        QCOMPARE(kto::unet_parameter_count(tmp.path().toStdString() + "/missing"), int64_t(-1));
        const std::string demo = kto::find_demo_model();
        QVERIFY(!demo.empty());
        const int64_t n = kto::unet_parameter_count(demo);
        QVERIFY2(n > 1'000'000 && n < kto::kSmallUNetParameters, qPrintable(QString::number(n)));

        qunsetenv("KTO_CPU_DTYPE");
        kto::set_cpu_dtype_choice("auto");
        QVERIFY(!kto::cpu_dtype_chosen());
        QCOMPARE(kto::default_model_dtype(model_dir(), false), torch::kFloat32);
        QCOMPARE(kto::default_model_dtype(demo, false), torch::kFloat32);
        QCOMPARE(kto::default_model_dtype(demo, true), torch::kHalf);
        // Unknown size (no weights): the CPU's own default, and loading reports the folder.
        QCOMPARE(kto::default_model_dtype(tmp.path().toStdString(), false), kto::default_cpu_dtype());
        qputenv("KTO_CPU_DTYPE", "bf16");
        QVERIFY(kto::cpu_dtype_chosen());
        QCOMPARE(kto::default_model_dtype(demo, false), torch::kBFloat16);
        qunsetenv("KTO_CPU_DTYPE");
        kto::set_cpu_dtype_choice("bf16");
        QCOMPARE(kto::default_model_dtype(demo, false), torch::kBFloat16);
        kto::set_cpu_dtype_choice("fp32");
        QCOMPARE(kto::default_model_dtype(demo, false), torch::kFloat32);
        kto::set_cpu_dtype_choice("auto");
    }

    void previewIsCheap() {
        auto z = torch::zeros({2, 4, 5, 7});
        auto p = kto::latent_preview(z);
        QCOMPARE(int(p.size()), 2);
        QCOMPARE(p[1].width, 7);
        QCOMPARE(p[1].height, 5);
        QCOMPARE(int(p[0].pixels[0]), 128);  // zero latents map to mid grey
        auto blue = torch::zeros({1, 4, 1, 1});
        blue[0][3] = -2.0;  // the 4th channel pushes towards blue
        auto q = kto::latent_preview(blue);
        QVERIFY(q[0].pixels[2] > q[0].pixels[0]);
    }
};

QTEST_GUILESS_MAIN(TestPipeline)
#include "test_pipeline.moc"
