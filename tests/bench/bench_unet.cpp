// Speed and memory of the full-size Stable Diffusion 1.5 architecture (random weights, no
// download): seconds per UNet step at 512x512 with the CFG batch of 2 on CPU fp32, achieved
// GFLOP/s (UNet FLOPs counted analytically from the config) next to the machine's measured fp32
// matmul GFLOP/s in the same run, peak RSS of a whole 512x512 generation (text encoder, UNet,
// VAE decode), and UNet it/s in fp16 when CUDA is available. Then the shipped demo model (issue 5:
// a 64x64 image with 20 steps and CFG in under 0.3 s): its UNet step at the CFG batch of 2 and at
// batch 1, with one thread and with every core, next to the FLOPs that step does, and whole
// 20-step generations (with every core: the CFG halves side by side and as one batch), so one sees
// whether the time goes to arithmetic or to per-operator cost;
// the same in bf16, and SD 1.5's UNet step in bf16 against fp32 on the CPU (cpuBf16Step: AMX /
// AVX512-BF16 where the CPU has them; see default_cpu_dtype). Then train-demo's two training steps
// (VAE, text encoder + UNet), each whole and as half-batches side by side (demoTrainStep), and
// attention's batched matrix products, libtorch's bmm against kto::batched_matmul
// (attentionBatchedMatmul).
//   ctest -L bench -R bench_unet --output-on-failure        (KTO_BENCH_STEPS=N: UNet steps timed)
//   build/tests/bench_unet demoTrainStep attentionBatchedMatmul   (those two alone)
//   KTO_BENCH_PROFILE_DEMO=TRACE: chrome://tracing files of ten demo UNet steps, fp32 and bf16
//   KTO_BENCH_PROFILE_TRAIN=FILE: the same of ten demo training steps (text encoder + UNet)
// Goals (issue 4): CPU step within 1.5x of the matmul limit; peak RSS < 6 GB.
#include <QtTest/QtTest>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/common/batched_matmul.h"
#include "core/common/runtime.h"
#include "core/pipeline/pipeline.h"
#include "core/train/demo_model.h"
#include "tests/support/test_paths.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

nlohmann::json sd15_config(const std::string& component) {
    std::ifstream in(kto::test::reference_dir() + "/state_dict_keys/sd15_" + component + ".json");
    return nlohmann::json::parse(in).at("config");
}

double peak_rss_gb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB on Linux
}

// Best of a few fp32 matmuls of n x n (all cores): the machine's practical dense limit.
double matmul_gflops(torch::Device device, torch::ScalarType dtype) {
    const int64_t n = 2048;
    auto opts = torch::TensorOptions().device(device).dtype(dtype);
    auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
    torch::mm(a, b);
    double best = 1e30;
    for (int i = 0; i < 5; ++i) {
        if (device.is_cuda()) torch::cuda::synchronize();
        auto t0 = Clock::now();
        auto c = torch::mm(a, b);
        if (device.is_cuda()) torch::cuda::synchronize();
        (void)c.sum().item<float>();
        best = std::min(best, seconds_since(t0));
    }
    return 2.0 * n * n * n / best / 1e9;
}

// Multiply-accumulate count of one UNet forward per sample, from an SD-style config: convs,
// resnet shortcuts, transformer blocks (self/cross attention incl. scores, GEGLU feed-forward).
double unet_flops_per_sample(const kto::UNetConfig& c, int64_t h, int64_t w, int64_t ctx_len) {
    double macs = 0;
    auto conv = [&](int64_t cin, int64_t cout, int64_t k, int64_t hw) { macs += double(cin) * cout * k * k * hw; };
    auto resnet = [&](int64_t cin, int64_t cout, int64_t hw) {
        conv(cin, cout, 3, hw);
        conv(cout, cout, 3, hw);
        if (cin != cout) conv(cin, cout, 1, hw);
    };
    auto transformer = [&](int64_t ch, int64_t hw, int64_t cross_dim) {
        const double n = double(hw), C = double(ch);
        macs += 2 * n * C * C;                                  // proj_in, proj_out
        macs += 4 * n * C * C + 2 * n * n * C;                  // self-attention: qkv+out, scores+values
        macs += 2 * n * C * C + 2 * double(ctx_len) * cross_dim * C + 2 * n * ctx_len * C;  // cross-attention
        macs += n * C * 8 * C + n * 4 * C * C;                  // GEGLU feed-forward (inner 4C)
    };
    const auto& ch = c.block_out_channels;
    const size_t L = ch.size();
    int64_t hw = h * w;
    int64_t cur = ch[0];
    conv(c.in_channels, ch[0], 3, hw);
    std::vector<int64_t> skip_ch{cur};
    for (size_t i = 0; i < L; ++i) {
        const bool attn = c.down_block_types[i].find("CrossAttn") != std::string::npos;
        for (int64_t l = 0; l < c.layers_per_block[i]; ++l) {
            resnet(cur, ch[i], hw);
            cur = ch[i];
            if (attn)
                for (int64_t t = 0; t < c.transformer_layers_per_block[i]; ++t)
                    transformer(cur, hw, c.cross_attention_dim[i]);
            skip_ch.push_back(cur);
        }
        if (i + 1 < L) {
            hw /= 4;
            conv(cur, cur, 3, hw);
            skip_ch.push_back(cur);
        }
    }
    resnet(cur, cur, hw);
    transformer(cur, hw, c.cross_attention_dim.back());
    resnet(cur, cur, hw);
    const std::vector<int64_t> rev(ch.rbegin(), ch.rend());
    for (size_t i = 0; i < L; ++i) {
        const bool attn = c.up_block_types[i].find("CrossAttn") != std::string::npos;
        for (int64_t l = 0; l < c.layers_per_block[L - 1 - i] + 1; ++l) {
            const int64_t s = skip_ch.back();
            skip_ch.pop_back();
            resnet(cur + s, rev[i], hw);
            cur = rev[i];
            if (attn) transformer(cur, hw, c.cross_attention_dim[L - 1 - i]);
        }
        if (i + 1 < L) {
            hw *= 4;
            conv(cur, cur, 3, hw);
        }
    }
    conv(ch[0], c.out_channels, 3, hw);
    return 2.0 * macs;
}

// SD 1.5 UNet steps timed: KTO_BENCH_STEPS, default 3.
int bench_steps() {
    const int n = qEnvironmentVariableIntValue("KTO_BENCH_STEPS");
    return n > 0 ? n : 3;
}

}  // namespace

class BenchUNet : public QObject {
    Q_OBJECT

private slots:
    void cpuStepAndPeakMemory() {
        const int cores = static_cast<int>(std::thread::hardware_concurrency());
        // As the app and the CLI start: every core, and the tensor-tuned allocator (without it each
        // attention score slice of 64x64 latents is a fresh mmap, page-faulted and zeroed).
        kto::configure_torch_threads(cores);
        torch::NoGradGuard ng;
        const int steps = bench_steps();
        const auto ucfg = kto::UNetConfig::from_json(sd15_config("unet"));
        auto t0 = Clock::now();
        kto::UNet2DConditionModel unet(ucfg);
        unet->eval();
        std::printf("BENCH sd15 unet built with random weights in %.1f s\n", seconds_since(t0));

        const double mm = matmul_gflops(torch::kCPU, torch::kFloat32);
        const double flops = 2 * unet_flops_per_sample(ucfg, 64, 64, 77);
        auto x = torch::randn({2, 4, 64, 64});
        auto ctx = torch::randn({2, 77, 768});
        auto t = torch::tensor(int64_t(500));
        // The first steps of a generation also grow the heap (fresh pages faulted in for the
        // activations and the attention score slices); later steps reuse it. Both are reported:
        // two warm-up steps, then the median of `steps` timed ones.
        for (int i = 0; i < 2; ++i) {
            t0 = Clock::now();
            unet->forward(x, t, ctx);
            std::printf("BENCH sd15 unet 512x512 cfg-batch 2 fp32: warm-up step %d %.2f s\n", i + 1, seconds_since(t0));
        }
        if (const char* trace = std::getenv("KTO_BENCH_PROFILE")) {
            // One step under libtorch's profiler: a chrome://tracing file with every aten op.
            std::ofstream out(trace);
            torch::autograd::profiler::RecordProfile guard(out);
            unet->forward(x, t, ctx);
        }
        std::vector<double> times;
        for (int i = 0; i < steps; ++i) {
            t0 = Clock::now();
            unet->forward(x, t, ctx);
            times.push_back(seconds_since(t0));
        }
        std::sort(times.begin(), times.end());
        const double step_s = times[times.size() / 2];
        const double achieved = flops / step_s / 1e9;
        std::printf("BENCH cpu threads %d: matmul %.1f GFLOP/s (fp32 2048^3)\n", cores, mm);
        std::printf("BENCH sd15 unet 512x512 cfg-batch 2 fp32: %.2f s/step (median of %d after warm-up), %.1f "
                    "GFLOP/step (analytic), %.1f GFLOP/s = %.2fx of the matmul rate (goal: step within 1.5x of the "
                    "matmul limit)\n",
                    step_s, steps, flops / 1e9, achieved, mm / achieved);

        // A whole 512x512 generation (1 step): full-size text encoder, UNet and VAE.
        kto::ModelBundle b;
        b.tokenizer = std::make_shared<kto::CLIPTokenizer>(
            kto::CLIPTokenizer::from_folder(kto::test::reference_dir() + "/tiny-sd/tokenizer"));
        b.text_encoder = kto::CLIPTextModel(kto::CLIPTextConfig::from_json(sd15_config("text_encoder")));
        b.unet = unet;
        b.vae = kto::AutoencoderKL(kto::VAEConfig::from_json(sd15_config("vae")));
        b.text_encoder->eval();
        b.vae->eval();
        b.scheduler_config = kto::SchedulerConfig::stable_diffusion_v1();
        b.name = "sd15-random";
        kto::GenerateOptions o;
        o.prompts = {"a photograph of an astronaut riding a horse"};
        o.steps = 1;
        o.width = o.height = 512;
        o.sampler = "euler";
        t0 = Clock::now();
        auto r = kto::generate(b, o);
        std::printf("BENCH sd15 512x512 generation (1 step + VAE decode) %.1f s; peak RSS %.2f GB (goal < 6 GB)\n",
                    seconds_since(t0), peak_rss_gb());
        QCOMPARE(r.images.size(2), int64_t(512));
        QVERIFY(peak_rss_gb() < 6.0);
    }

    // SD 1.5's UNet at 512x512, CFG batch 2, in bf16 on the CPU against fp32 in the same run: oneDNN
    // runs bf16 convolutions and matmuls on AMX / AVX-512 BF16 where the CPU has them.
    void cpuBf16Step() {
        const int cores = static_cast<int>(std::thread::hardware_concurrency());
        kto::configure_torch_threads(cores);
        torch::NoGradGuard ng;
        const int steps = bench_steps();
        const auto ucfg = kto::UNetConfig::from_json(sd15_config("unet"));
        const double flops = 2 * unet_flops_per_sample(ucfg, 64, 64, 77);
        torch::manual_seed(0);
        const auto x = torch::randn({2, 4, 64, 64}), ctx = torch::randn({2, 77, 768});
        const auto t = torch::tensor(int64_t(500));
        for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
            kto::ModuleOptions mo;
            mo.tensor = torch::TensorOptions().dtype(dtype);
            kto::UNet2DConditionModel unet(ucfg, mo);
            unet->eval();
            const auto xx = x.to(dtype), cc = ctx.to(dtype);
            unet->forward(xx, t, cc);  // warm-up
            std::vector<double> times;
            for (int i = 0; i < steps; ++i) {
                const auto t0 = Clock::now();
                unet->forward(xx, t, cc);
                times.push_back(seconds_since(t0));
            }
            std::sort(times.begin(), times.end());
            const double s = times[times.size() / 2];
            std::printf("BENCH cpu sd15 unet 512x512 cfg-batch 2 %s, %d thread(s): %.2f s/step (median of %d), %.0f GFLOP/s\n",
                        dtype == torch::kFloat32 ? "fp32" : "bf16", cores, s, steps, flops / s / 1e9);
        }
    }

    // The demo model is tiny: at 16x16 latents a UNet step is ~0.8 GFLOP, spread over hundreds of
    // operator calls, so the fixed cost of each call weighs about as much as the arithmetic.
    void demoModelStep() {
        const int cores = static_cast<int>(std::thread::hardware_concurrency());
        kto::configure_torch_threads(cores);
        torch::NoGradGuard ng;
        kto::ModelBundle b = kto::ModelBundle::load(kto::test::demo_model_dir());
        const kto::UNetConfig& ucfg = b.unet->config();
        const double flops_1 = unet_flops_per_sample(ucfg, 16, 16, 77);  // one sample
        auto median_ms = [](int n, const std::function<void()>& f) {
            for (int i = 0; i < 3; ++i) f();
            std::vector<double> v;
            for (int i = 0; i < n; ++i) {
                const auto t0 = Clock::now();
                f();
                v.push_back(seconds_since(t0) * 1e3);
            }
            std::sort(v.begin(), v.end());
            return v[v.size() / 2];
        };
        torch::manual_seed(0);
        const auto x = torch::randn({2, 4, 16, 16}), ctx = torch::randn({2, 77, ucfg.cross_attention_dim.back()});
        const auto t = torch::tensor(int64_t(500));
        const std::vector<int> thread_counts = cores > 1 ? std::vector<int>{1, cores} : std::vector<int>{1};
        for (int threads : thread_counts) {
            kto::configure_torch_threads(threads);
            const double mm = matmul_gflops(torch::kCPU, torch::kFloat32);
            // libtorch sends a convolution to oneDNN (mkldnn) or to its own im2col + BLAS by a size
            // heuristic (a batch of 1 at 16x16 goes to BLAS); "no oneDNN" forces the latter.
            for (const bool onednn : {true, false}) {
                at::globalContext().setUserEnabledMkldnn(onednn);
                for (int64_t batch : {int64_t(2), int64_t(1)}) {
                    const auto xb = x.slice(0, 0, batch), cb = ctx.slice(0, 0, batch);
                    const double ms = median_ms(60, [&] { b.unet->forward(xb, t, cb); });
                    std::printf("BENCH demo unet 16x16 batch %lld, %d thread(s)%s: %.2f ms/step (median of 60), "
                                "%.2f GFLOP/step, %.1f GFLOP/s (matmul %.1f GFLOP/s)\n",
                                static_cast<long long>(batch), threads, onednn ? "" : ", no oneDNN", ms,
                                flops_1 * batch / 1e9, flops_1 * batch / ms / 1e6, mm);
                }
            }
            at::globalContext().setUserEnabledMkldnn(true);
            if (threads > 1 && kto::CpuPairRunner::available()) {
                // The CFG batch as one call on every thread against its halves side by side, each on half
                // the threads (what generation does, CpuPairRunner): alternating blocks of 10 steps, so
                // that the VM's drift hits both alike.
                kto::CpuPairRunner pairs;
                const auto x0 = x.slice(0, 0, 1), x1 = x.slice(0, 1, 2), c0 = ctx.slice(0, 0, 1), c1 = ctx.slice(0, 1, 2);
                std::vector<double> one, two;
                for (int block = 0; block < 12; ++block) {
                    for (int i = 0; i < 10; ++i) {
                        auto t0 = Clock::now();
                        b.unet->forward(x, t, ctx);
                        if (block > 0) one.push_back(seconds_since(t0) * 1e3);
                    }
                    for (int i = 0; i < 10; ++i) {
                        auto t0 = Clock::now();
                        pairs.run([&] { b.unet->forward(x0, t, c0); }, [&] { b.unet->forward(x1, t, c1); });
                        if (block > 0) two.push_back(seconds_since(t0) * 1e3);
                    }
                }
                std::sort(one.begin(), one.end());
                std::sort(two.begin(), two.end());
                std::printf("BENCH demo unet 16x16 CFG batch of 2, %d thread(s): one call %.2f ms/step, halves side by side "
                            "%.2f ms/step (medians of 110 interleaved; fastest %.2f / %.2f)\n",
                            threads, one[one.size() / 2], two[two.size() / 2], one.front(), two.front());
            }
            kto::GenerateOptions o;
            o.prompts = {"a large green star at the top left on a white background"};
            o.cfg = 5;
            o.width = o.height = 64;
            for (int steps : {1, 20}) {
                o.steps = steps;
                const double ms = median_ms(9, [&] { kto::generate(b, o); });
                std::printf("BENCH demo 64x64 generation, %d step(s), CFG 5, %d thread(s): %.1f ms (median of 9)%s\n",
                            steps, threads, ms, steps == 20 ? " (goal, issue 5: < 300 ms)" : "");
                // The same with every convolution on im2col + BLAS (the lead of the step timings above).
                at::globalContext().setUserEnabledMkldnn(false);
                const double plain = median_ms(9, [&] { kto::generate(b, o); });
                at::globalContext().setUserEnabledMkldnn(true);
                std::printf("BENCH demo 64x64 generation, %d step(s), CFG 5, %d thread(s), no oneDNN: %.1f ms (median of 9)\n",
                            steps, threads, plain);
                if (threads > 1) {
                    // The CFG batch as one UNet call on every thread, not its halves side by side (CpuPairRunner).
                    qputenv("KTO_CPU_PAIRS", "0");
                    const double whole = median_ms(9, [&] { kto::generate(b, o); });
                    qunsetenv("KTO_CPU_PAIRS");
                    std::printf("BENCH demo 64x64 generation, %d step(s), CFG 5, %d thread(s), CFG halves not side by "
                                "side (KTO_CPU_PAIRS=0): %.1f ms (median of 9)\n",
                                steps, threads, whole);
                }
            }
        }
        // The same in bfloat16 (weights and activations): oneDNN runs bf16 convolutions and matmuls
        // on AMX / AVX-512 BF16 where the CPU has them.
        kto::ModelBundleOptions bo;
        bo.dtype = torch::kBFloat16;
        kto::ModelBundle bb = kto::ModelBundle::load(kto::test::demo_model_dir(), bo);
        const auto xh = x.to(torch::kBFloat16), ch = ctx.to(torch::kBFloat16);
        for (int threads : thread_counts) {
            kto::configure_torch_threads(threads);
            const double ms = median_ms(60, [&] { bb.unet->forward(xh, t, ch); });
            std::printf("BENCH demo unet 16x16 batch 2, %d thread(s), bf16: %.2f ms/step (median of 60), %.1f GFLOP/s\n",
                        threads, ms, flops_1 * 2 / ms / 1e6);
            if (const char* trace = std::getenv("KTO_BENCH_PROFILE_DEMO")) {
                // Ten steps under libtorch's profiler, fp32 and bf16: TRACE.fp32.N.json, TRACE.bf16.N.json.
                for (const bool half : {false, true}) {
                    std::ofstream out(std::string(trace) + (half ? ".bf16." : ".fp32.") + std::to_string(threads) + ".json");
                    torch::autograd::profiler::RecordProfile guard(out);
                    for (int i = 0; i < 10; ++i) {
                        if (half) bb.unet->forward(xh, t, ch);
                        else b.unet->forward(x, t, ctx);
                    }
                }
            }
            kto::GenerateOptions o;
            o.prompts = {"a large green star at the top left on a white background"};
            o.cfg = 5;
            o.width = o.height = 64;
            o.steps = 20;
            const double gen = median_ms(9, [&] { kto::generate(bb, o); });
            std::printf("BENCH demo 64x64 generation, 20 step(s), CFG 5, %d thread(s), bf16: %.1f ms (median of 9)\n",
                        threads, gen);
        }
        kto::configure_torch_threads(cores);
    }

    // A training step of train-demo's recipe on every core: the VAE phase's (batch 16 at 64x64, from
    // scratch) and the text encoder + UNet phase's (batch 32, its losses, on the shipped VAE; fp32 unless
    // the CPU has bf16 units), each whole and as two half-batches side by side (--vae-batch-halves,
    // --unet-batch-halves), each with libtorch's oneDNN convolutions and without them (its im2col + BLAS),
    // in turn twice so that the machine's drift hits all: seconds per step over
    // steps 6..N (KTO_BENCH_TRAIN_STEPS, default 30), and for the UNet the rate of its analytic FLOPs
    // (forward + backward = 3x forward). KTO_BENCH_PROFILE_TRAIN=FILE: a chrome://tracing file of ten
    // whole-batch UNet steps.
    void demoTrainStep() {
        const int cores = static_cast<int>(std::thread::hardware_concurrency());
        const int n = qEnvironmentVariableIntValue("KTO_BENCH_TRAIN_STEPS") > 5
                          ? qEnvironmentVariableIntValue("KTO_BENCH_TRAIN_STEPS") : 30;
        kto::ModelBundle b = kto::ModelBundle::load(kto::test::demo_model_dir());
        const double flops_1 = unet_flops_per_sample(b.unet->config(), 16, 16, 77);
        auto run = [&](bool vae_phase, bool halves, int steps) {
            QTemporaryDir dir;
            kto::DemoTrainOptions o;
            o.out_dir = dir.path().toStdString() + "/m";
            if (vae_phase) {
                o.vae_steps = steps;
                o.unet_steps = 0;
                o.cache_images = 16;
                o.vae_batch_halves = halves;
            } else {
                o.vae_from = kto::test::demo_model_dir();
                o.vae_steps = 0;
                o.unet_steps = steps;
                o.cache_images = 640;
                o.unet_batch_halves = halves;
            }
            o.unet_rounds = 0;
            o.decoder_steps = 0;
            o.threads = cores;
            const std::string phase = vae_phase ? "vae" : "unet";
            Clock::time_point t5{};
            double seconds = 0;
            kto::train_demo_model(o, [&](const kto::DemoProgress& p) {
                if (p.phase == phase && p.step == 5) t5 = Clock::now();
                if (p.phase == phase && p.step == steps && seconds == 0) seconds = seconds_since(t5);
                return true;
            });
            return seconds / (steps - 5);
        };
        kto::configure_torch_threads(cores);  // what train-demo sets; CpuPairRunner::available() reads it
        const bool pairs = cores >= 2 && kto::CpuPairRunner::available();
        for (const bool vae_phase : {true, false}) {
            for (int round = 0; round < 2; ++round) {
                for (const bool halves : {false, true}) {
                    if (halves && !pairs) continue;
                    for (const bool onednn : {true, false}) {
                        at::globalContext().setUserEnabledMkldnn(onednn);
                        const double s = run(vae_phase, halves, n);
                        at::globalContext().setUserEnabledMkldnn(true);
                        const char* how = onednn ? "" : ", no oneDNN";
                        if (vae_phase)
                            std::printf("BENCH demo train step, VAE (batch 16, %d thread(s)%s%s): %.3f s/step (steps 6..%d)\n",
                                        cores, halves ? ", halves side by side" : "", how, s, n);
                        else
                            std::printf("BENCH demo train step, text encoder + UNet (batch 32, %d thread(s)%s%s): %.3f s/step "
                                        "(steps 6..%d), UNet %.1f GFLOP/step, %.1f GFLOP/s\n",
                                        cores, halves ? ", halves side by side" : "", how, s, n, 3 * flops_1 * 32 / 1e9,
                                        3 * flops_1 * 32 / s / 1e9);
                    }
                }
            }
        }
        if (const char* trace = std::getenv("KTO_BENCH_PROFILE_TRAIN")) {
            std::ofstream out(trace);
            torch::autograd::profiler::RecordProfile guard(out);
            run(false, false, 10);
        }
    }

    // Attention's batched matrix products at the demo training step's shapes (batch 32 x 4 heads;
    // 8x8 self- and cross-attention, the text encoder's 77 x 77): libtorch's bmm against
    // kto::batched_matmul (sgemm_ per matrix over the threads where libtorch is before 2.1), on every
    // core; medians of 50, in turn.
    void attentionBatchedMatmul() {
        const int cores = static_cast<int>(std::thread::hardware_concurrency());
        kto::configure_torch_threads(cores);
        if (!kto::cpu_batched_matmul_available()) QSKIP("batched_matmul is torch::matmul here (libtorch 2.1+ or no sgemm_)");
        struct Shape { int64_t batch, m, k, n; const char* what; };
        for (const Shape& sh : {Shape{128, 64, 24, 77, "8x8 cross-attention scores"},
                                Shape{128, 64, 77, 24, "8x8 cross-attention output"},
                                Shape{128, 64, 24, 64, "8x8 self-attention scores"},
                                Shape{128, 77, 16, 77, "text encoder scores"},
                                Shape{16, 256, 64, 256, "VAE 16x16 self-attention scores (batch 16, 1 head)"}}) {
            const auto a = torch::randn({sh.batch, sh.m, sh.k}), bt = torch::randn({sh.batch, sh.n, sh.k});
            const auto bb = bt.transpose(1, 2);  // k transposed, as attention's scores take it
            std::vector<double> mine, theirs;
            for (int i = 0; i < 55; ++i) {
                auto t0 = Clock::now();
                torch::bmm(a, bb);
                if (i >= 5) theirs.push_back(seconds_since(t0) * 1e6);
                t0 = Clock::now();
                kto::batched_matmul(a, bb);
                if (i >= 5) mine.push_back(seconds_since(t0) * 1e6);
            }
            std::sort(mine.begin(), mine.end());
            std::sort(theirs.begin(), theirs.end());
            std::printf("BENCH batched matmul %lld x [%lld x %lld] @ [%lld x %lld] (%s), %d thread(s): torch::bmm %.0f us, "
                        "kto::batched_matmul %.0f us (medians of 50)\n",
                        static_cast<long long>(sh.batch), static_cast<long long>(sh.m), static_cast<long long>(sh.k),
                        static_cast<long long>(sh.k), static_cast<long long>(sh.n), sh.what, cores,
                        theirs[theirs.size() / 2], mine[mine.size() / 2]);
        }
    }

    void cudaFp16() {
        if (!torch::cuda::is_available()) QSKIP("no CUDA device in this libtorch build/machine");
        torch::NoGradGuard ng;
        const auto ucfg = kto::UNetConfig::from_json(sd15_config("unet"));
        kto::ModuleOptions mo;
        mo.tensor = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat16);
        kto::UNet2DConditionModel unet(ucfg, mo);
        unet->eval();
        auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat16);
        auto x = torch::randn({2, 4, 64, 64}, opts);
        auto ctx = torch::randn({2, 77, 768}, opts);
        auto t = torch::tensor(int64_t(500)).to(torch::kCUDA);
        for (int i = 0; i < 3; ++i) unet->forward(x, t, ctx);
        torch::cuda::synchronize();
        const int n = 20;
        auto t0 = Clock::now();
        for (int i = 0; i < n; ++i) unet->forward(x, t, ctx);
        torch::cuda::synchronize();
        const double s = seconds_since(t0) / n;
        const double mm = matmul_gflops(torch::kCUDA, torch::kFloat16);
        const double flops = 2 * unet_flops_per_sample(ucfg, 64, 64, 77);
        std::printf("BENCH cuda fp16 sd15 unet 512x512 cfg-batch 2: %.2f it/s (%.1f ms/step), %.0f GFLOP/s; "
                    "matmul fp16 %.0f GFLOP/s\n",
                    1.0 / s, s * 1e3, flops / s / 1e9, mm);
    }
};

QTEST_GUILESS_MAIN(BenchUNet)
#include "bench_unet.moc"
