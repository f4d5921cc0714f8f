// kto-test-labels: gpu
// The CUDA path, checked and measured on a GPU machine (issues 4, 6, 9): a plain program on kto_core
// alone (no Qt, no SQLite), so that it builds wherever libtorch with CUDA is (see docs/GPU.md).
//
//   gpu_check [--device cuda] [--reference DIR] [--demo DIR] [--out DIR] [--work DIR] [--quick]
//
// Stages, each printing CHECK <name> PASS|FAIL|SKIP and GPU figures as "FIGURE ..." lines:
//   parity      the tiny-sd golden trajectories (DDIM, Euler) in fp32 on the device
//   seed        the demo model on CPU and on the device (fp32, fp16, bf16) from the same seed:
//               the same image (pixel differences), written side by side to <out>/seed_grid.png
//   sd15-unet   full-size SD 1.5 UNet (random weights) at 512x512, CFG batch 2: it/s in fp16/bf16
//   sd15-gen    a whole 512x512 25-step generation (text encoder, UNet, VAE) in fp16: s/image, peak memory
//   sd15-train  KTO training steps at 512x512: samples/s and peak memory, full fine-tuning
//               (bf16 autocast, gradient checkpointing) and LoRA
//   demo-train  a KTO training job on the demo model on the device (bf16, previews, checkpoint),
//               then generation with the checkpoint (full UNet and LoRA)
//   oom         a generation far too large for the device: a clear OutOfMemory error with advice,
//               then a normal generation in the same process succeeds
//   defaults    the precision a model runs in when none is chosen (fp16 on CUDA; the demo model fp32
//               on the CPU unless bf16 was chosen), and which BLAS the CPU side runs (configure_blas
//               only touches OpenBLAS; a libtorch with MKL is left as it is)
// --quick runs every stage with small sizes (the tiny-sd configs stand in for SD 1.5), for a dry
// run on the CPU: `gpu_check --device cpu --quick`. The exit status is the number of failed stages.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/common/png_text.h"
#include "core/common/runtime.h"
#include "core/io/safetensors.h"
#include "core/nn/lora.h"
#include "core/pipeline/pipeline.h"
#include "core/sampling/scheduler.h"
#include "core/sampling/scheduler_config.h"
#include "core/train/trainer.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
    std::string device = "cuda";
    std::string reference;
    std::string demo;
    std::string out = "gpu-check-out";
    std::string work;  // scratch (demo-train runs); default <out>/work
    bool quick = false;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void sync(const torch::Device& d) {
    if (d.is_cuda()) torch::cuda::synchronize();
}

double gib(long long bytes) { return bytes < 0 ? -1.0 : double(bytes) / (1024.0 * 1024.0 * 1024.0); }

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw kto::Error("cannot read " + path);
    return nlohmann::json::parse(in);
}

// SD 1.5 component configs from the reference key listings, or tiny-sd's with --quick.
nlohmann::json model_config(const Args& a, const std::string& component) {
    if (a.quick) return read_json(a.reference + "/tiny-sd/" + component + "/config.json");
    return read_json(a.reference + "/state_dict_keys/sd15_" + component + ".json").at("config");
}

int failures = 0;

void stage(const std::string& name, const std::function<void()>& body) {
    std::printf("---- %s\n", name.c_str());
    std::fflush(stdout);
    const auto t0 = Clock::now();
    try {
        body();
        std::printf("CHECK %s PASS (%.1f s)\n", name.c_str(), seconds_since(t0));
    } catch (const std::exception& e) {
        ++failures;
        std::printf("CHECK %s FAIL (%.1f s): %s\n", name.c_str(), seconds_since(t0), kto::short_error_message(e).c_str());
    }
    std::fflush(stdout);
}

void expect(bool ok, const std::string& what) {
    if (!ok) throw kto::Error(what);
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
    return (a.to(torch::kCPU, torch::kFloat64) - b.to(torch::kCPU, torch::kFloat64)).abs().max().item<double>();
}

// Pixel differences of two RGB8 images: {mean, max} over all samples, in 0..255.
std::pair<double, double> pixel_diff(const kto::RgbImage& a, const kto::RgbImage& b) {
    double sum = 0, mx = 0;
    for (size_t i = 0; i < a.pixels.size(); ++i) {
        const double d = std::abs(double(a.pixels[i]) - double(b.pixels[i]));
        sum += d;
        mx = std::max(mx, d);
    }
    return {sum / double(a.pixels.size()), mx};
}

void write_row_png(const std::vector<kto::RgbImage>& images, const std::string& path) {
    const int w = images.at(0).width, h = images.at(0).height, n = int(images.size());
    std::vector<uint8_t> px(size_t(w) * n * h * 3, 255);
    for (int i = 0; i < n; ++i)
        for (int y = 0; y < h; ++y)
            std::copy_n(images[i].pixels.data() + size_t(y) * w * 3, size_t(w) * 3,
                        px.data() + (size_t(y) * w * n + size_t(i) * w) * 3);
    kto::write_file_atomic(path, kto::encode_png(px.data(), w * n, h, 3));
}

kto::ModelBundle random_sd_bundle(const Args& a, torch::Device device, torch::ScalarType dtype) {
    kto::ModuleOptions mo;
    mo.tensor = torch::TensorOptions().device(device).dtype(dtype);
    kto::ModelBundle b;
    b.device = device;
    b.dtype = dtype;
    b.name = a.quick ? "tiny-sd-random" : "sd15-random";
    b.tokenizer = std::make_shared<kto::CLIPTokenizer>(kto::CLIPTokenizer::from_folder(a.reference + "/tiny-sd/tokenizer"));
    b.text_encoder = kto::CLIPTextModel(kto::CLIPTextConfig::from_json(model_config(a, "text_encoder")));
    b.text_encoder->to(device, dtype);
    b.unet = kto::UNet2DConditionModel(kto::UNetConfig::from_json(model_config(a, "unet")), mo);
    b.vae = kto::AutoencoderKL(kto::VAEConfig::from_json(model_config(a, "vae")));
    b.vae->to(device, dtype);
    b.text_encoder->eval();
    b.unet->eval();
    b.vae->eval();
    b.scheduler_config = kto::SchedulerConfig::stable_diffusion_v1();
    return b;
}

// ---------------------------------------------------------------------------------------------

void check_parity(const Args& a, torch::Device device) {
    kto::ModelBundleOptions bo;
    bo.device = device;
    auto bundle = kto::ModelBundle::load(a.reference + "/tiny-sd", bo);
    const auto golden = kto::load_safetensors(a.reference + "/golden/tiny-sd/pipeline.safetensors");
    for (const std::string run : {"ddim", "euler"}) {
        kto::GenerateOptions o;
        o.prompts = {"a photograph of an astronaut riding a horse"};
        o.steps = 4;
        o.cfg = 7.0;
        o.sampler = run;
        o.width = o.height = 64;
        o.init_latents = golden.at(run + ".init_latents");
        auto r = kto::generate(bundle, o);
        const auto& gl = golden.at(run + ".step3.latents");
        const double dl = max_abs_diff(r.latents, gl) / std::max(1.0, gl.abs().max().item<double>());
        const double di = max_abs_diff(r.images, golden.at(run + ".image"));
        std::printf("FIGURE parity %s on %s fp32: final latents max rel diff %.2e, image max diff %.2e (CPU test "
                    "tolerance 1e-4)\n",
                    run.c_str(), device.str().c_str(), dl, di);
        // cuDNN may run fp32 convolutions in TF32 (10-bit mantissa): allow 1e-2 on the device.
        const double tol = device.is_cuda() ? 1e-2 : 1e-4;
        expect(dl < tol && di < tol, run + ": differs from the diffusers golden beyond " + std::to_string(tol));
    }
}

void check_seed(const Args& a, torch::Device device) {
    kto::GenerateOptions o;
    o.prompts = {"a large red circle on a blue background"};
    o.seed = 7;
    o.steps = 20;
    o.cfg = 5.0;
    o.width = o.height = 64;
    o.sampler = "ddim";
    auto cpu = kto::ModelBundle::load(a.demo);
    const auto ref = kto::generate(cpu, o).rgb.at(0);
    std::vector<kto::RgbImage> row{ref};
    const std::vector<std::pair<const char*, torch::ScalarType>> kinds = {
        {"fp32", torch::kFloat32}, {"fp16", torch::kFloat16}, {"bf16", torch::kBFloat16}};
    for (const auto& [name, dtype] : kinds) {
        if (!device.is_cuda() && dtype != torch::kFloat32) continue;  // CPU half precision: not offered
        kto::ModelBundleOptions bo;
        bo.device = device;
        bo.dtype = dtype;
        auto b = kto::ModelBundle::load(a.demo, bo);
        const auto img = kto::generate(b, o).rgb.at(0);
        const auto [mean, mx] = pixel_diff(ref, img);
        std::printf("FIGURE seed %s on %s vs CPU fp32 (same seed 7): mean |diff| %.3f, max %.0f of 255\n", name,
                    device.str().c_str(), mean, mx);
        row.push_back(img);
        if (dtype == torch::kFloat32) expect(mean < 1.0, std::string(name) + ": not the CPU's image for the same seed");
        else expect(mean < 8.0, std::string(name) + ": far from the CPU's image for the same seed");
    }
    fs::create_directories(a.out);
    write_row_png(row, a.out + "/seed_grid.png");
    std::printf("wrote %s/seed_grid.png (CPU fp32 | fp32 | fp16 | bf16)\n", a.out.c_str());
}

void check_sd15_unet(const Args& a, torch::Device device) {
    torch::NoGradGuard ng;
    const int64_t lat = a.quick ? 8 : 64;
    for (auto dtype : {torch::kFloat16, torch::kBFloat16, torch::kFloat32}) {
        if (!device.is_cuda() && dtype != torch::kFloat32) continue;
        kto::ModuleOptions mo;
        mo.tensor = torch::TensorOptions().device(device).dtype(dtype);
        const auto ucfg = kto::UNetConfig::from_json(model_config(a, "unet"));
        kto::UNet2DConditionModel unet(ucfg, mo);
        unet->eval();
        auto opts = torch::TensorOptions().device(device).dtype(dtype);
        auto x = torch::randn({2, 4, lat, lat}, opts);
        auto ctx = torch::randn({2, 77, ucfg.cross_attention_dim.back()}, opts);
        auto t = torch::tensor(int64_t(500)).to(device);
        for (int i = 0; i < 3; ++i) unet->forward(x, t, ctx);
        sync(device);
        const int n = a.quick ? 3 : 30;
        const auto t0 = Clock::now();
        torch::Tensor y;
        for (int i = 0; i < n; ++i) y = unet->forward(x, t, ctx);
        sync(device);
        const double s = seconds_since(t0) / n;
        expect(torch::isfinite(y).all().item<bool>(), "non-finite UNet output");
        std::printf("FIGURE sd15-unet %s %s %lldx%lld cfg-batch 2: %.2f it/s (%.1f ms/step)\n", device.str().c_str(),
                    c10::toString(dtype), (long long)lat * 8, (long long)lat * 8, 1.0 / s, s * 1e3);
    }
}

void check_sd15_generation(const Args& a, torch::Device device) {
    const auto dtype = device.is_cuda() ? torch::kFloat16 : torch::kFloat32;
    auto b = random_sd_bundle(a, device, dtype);
    kto::GenerateOptions o;
    o.prompts = {"a photograph of an astronaut riding a horse"};
    o.steps = a.quick ? 2 : 25;
    o.sampler = "dpmpp_2m";
    o.width = o.height = a.quick ? 64 : 512;
    kto::generate(b, o);  // warm-up: cuDNN algorithm choice, allocator
    sync(device);
    kto::reset_peak_device_memory();
    const auto t0 = Clock::now();
    auto r = kto::generate(b, o);
    sync(device);
    const double s = seconds_since(t0);
    expect(r.rgb.size() == 1 && r.rgb[0].width == o.width, "no image");
    std::printf("FIGURE sd15-gen %s %s %dx%d %d steps cfg 7.5 (text encoder + UNet + VAE decode): %.2f s/image, "
                "%.2f it/s, peak GPU memory %.2f GiB\n",
                device.str().c_str(), c10::toString(dtype), o.width, o.height, o.steps, s, o.steps / s,
                gib(kto::peak_device_memory()));
}

// Synthetic encoded data of the SD 1.5 shapes (latents at 1/8 of the resolution, CLIP states).
kto::TrainingSet synthetic_set(int64_t n, int64_t lat, int64_t dim) {
    kto::TrainingSet s;
    torch::manual_seed(0);
    for (int64_t i = 0; i < n; ++i) {
        s.latents.push_back({torch::randn({2, 4, lat, lat}), torch::full({2, 4, lat, lat}, 0.05)});
        s.desirable.push_back(i % 3 != 2);
        s.caption_index.push_back(i % 4);
    }
    s.embeddings = torch::randn({4, 77, dim});
    s.empty_embedding = torch::randn({77, dim});
    return s;
}

void check_sd15_training(const Args& a, torch::Device device) {
    const int64_t lat = a.quick ? 8 : 64;
    const auto ujson = model_config(a, "unet");
    const auto ucfg = kto::UNetConfig::from_json(ujson);
    const int64_t dim = ucfg.cross_attention_dim.back();
    std::shared_ptr<kto::Scheduler> noise(kto::make_scheduler("ddpm", kto::SchedulerConfig::stable_diffusion_v1()));
    for (const bool lora : {false, true}) {
        kto::TrainOptions o = kto::train_preset("sd15");
        o.device = device.str();
        o.batch_size = a.quick ? 2 : 4;
        o.steps = a.quick ? 3 : 12;
        o.warmup_steps = 0;
        o.learning_rate = lora ? 1e-4 : 1e-6;
        o.checkpoint_every = 0;
        if (device.is_cuda()) {
            o.mixed_precision = kto::MixedPrecision::bf16;
            o.gradient_checkpointing = !lora;
        }
        o.lora.enabled = lora;
        kto::reset_peak_device_memory();
        kto::ModuleOptions mo;
        mo.tensor = torch::TensorOptions().device(device).dtype(torch::kFloat32);
        auto unet = kto::UNet2DConditionModel(ucfg, mo);
        kto::Trainer::Parts parts;
        parts.unet = unet.ptr();
        parts.unet_config = ujson;
        parts.noise_scheduler = noise;
        std::unique_ptr<kto::UNetLoRA> adapters;
        kto::UNet2DConditionModel reference{nullptr};
        if (lora) {
            kto::LoRAConfig lc;
            lc.dtype = torch::kFloat32;
            adapters = std::make_unique<kto::UNetLoRA>(unet, lc);
            parts.use_lora(*adapters);
        } else {
            kto::ModuleOptions ro;
            ro.tensor = torch::TensorOptions().device(device).dtype(device.is_cuda() ? torch::kBFloat16 : torch::kFloat32);
            reference = kto::UNet2DConditionModel(ucfg, ro);
            {  // the reference starts as a copy of the trained UNet
                torch::NoGradGuard ng;
                auto src = unet->parameters();
                auto dst = reference->parameters();
                for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
            }
            parts.reference = reference.ptr();
        }
        kto::Trainer trainer(parts, synthetic_set(16, lat, dim), o);
        trainer.step();  // warm-up
        sync(device);
        const auto t0 = Clock::now();
        kto::StepMetrics m;
        for (int64_t i = 1; i < o.steps; ++i) m = trainer.step();
        sync(device);
        const double s = seconds_since(t0) / double(o.steps - 1);
        expect(std::isfinite(m.loss) && std::isfinite(m.grad_norm), "non-finite loss or gradient norm");
        std::printf("FIGURE sd15-train %s %s %lldx%lld batch %d %s: %.3f s/step, %.2f samples/s, peak GPU memory "
                    "%.2f GiB (loss %.4f, grad norm %.3g)\n",
                    device.str().c_str(), lora ? "LoRA rank 4" : "full fine-tuning", (long long)lat * 8,
                    (long long)lat * 8, o.batch_size,
                    device.is_cuda() ? (lora ? "bf16 autocast" : "bf16 autocast + gradient checkpointing") : "fp32",
                    s, o.batch_size / s, gib(kto::peak_device_memory()), m.loss, m.grad_norm);
    }
}

void check_demo_training(const Args& a, torch::Device device) {
    const fs::path root = fs::path(a.work) / "demo-train";
    fs::remove_all(root);
    fs::create_directories(root / "images");
    // Labelled images from the demo model itself: large shapes liked, small ones disliked.
    kto::ModelBundleOptions bo;
    bo.device = device;
    auto bundle = kto::ModelBundle::load(a.demo, bo);
    std::vector<kto::TrainRecord> records;
    const std::vector<std::string> prompts = {"a large red circle", "a small blue square", "a large yellow star",
                                              "a small green triangle"};
    for (size_t p = 0; p < prompts.size(); ++p)
        for (int seed = 0; seed < 3; ++seed) {
            kto::GenerateOptions g;
            g.prompts = {prompts[p]};
            g.seed = uint64_t(seed);
            g.steps = 10;
            g.cfg = 5.0;
            g.width = g.height = 64;
            g.sampler = "ddim";
            const auto img = kto::generate(bundle, g).rgb.at(0);
            const auto path = (root / "images" / (std::to_string(p) + "-" + std::to_string(seed) + ".png")).string();
            kto::write_file_atomic(path, kto::encode_png(img.pixels.data(), img.width, img.height, 3));
            records.push_back({path, prompts[p], prompts[p].find("large") != std::string::npos});
        }
    for (const bool lora : {false, true}) {
        kto::TrainRequest req;
        req.model_dir = a.demo;
        req.records = records;
        req.out_dir = (root / (lora ? "run-lora" : "run-full")).string();
        req.options = kto::train_preset("demo");
        req.options.device = device.str();
        req.options.steps = 20;
        req.options.checkpoint_every = 10;
        req.options.preview_every = 10;
        req.options.probe_prompts = {"a large red circle"};
        req.options.preview_steps = 10;
        req.options.lora.enabled = lora;
        if (device.is_cuda()) req.options.mixed_precision = kto::MixedPrecision::bf16;
        double last_loss = NAN;
        int previews = 0;
        kto::TrainCallbacks cb;
        cb.on_step = [&](const kto::StepMetrics& m) { last_loss = m.loss; };
        cb.on_preview = [&](int64_t, const std::vector<kto::PreviewImage>&) { ++previews; };
        kto::TrainingJob job(req, cb);
        const auto t0 = Clock::now();
        const auto res = job.run();
        const double s = seconds_since(t0);
        expect(res.steps_done == 20 && !res.final_checkpoint.empty(), "the run did not finish with a checkpoint");
        expect(std::isfinite(last_loss), "non-finite loss");
        expect(previews == 3, "expected previews at steps 0, 10, 20, got " + std::to_string(previews));
        // The checkpoint loads on the device with its base model and generates.
        kto::ModelBundleOptions tuned;
        tuned.device = device;
        if (lora) tuned.lora_path = res.final_checkpoint + "/pytorch_lora_weights.safetensors";
        else tuned.unet_dir = res.final_checkpoint + "/unet";
        auto tb = kto::ModelBundle::load(a.demo, tuned);
        kto::GenerateOptions g;
        g.prompts = {"a large red circle"};
        g.steps = 10;
        g.width = g.height = 64;
        const auto img = kto::generate(tb, g);
        expect(torch::isfinite(img.images).all().item<bool>(), "non-finite image from the checkpoint");
        std::printf("FIGURE demo-train %s %s KTO 20 steps (job incl. model load, VAE encode, 3 previews, 2 checkpoints): "
                    "%.1f s, last loss %.4f; checkpoint %s generates\n",
                    device.str().c_str(), lora ? "LoRA" : "full", s, last_loss, res.final_checkpoint.c_str());
    }
}

void check_defaults(const Args& a, torch::Device device) {
    const int64_t params = kto::unet_parameter_count(a.demo);
    std::printf("FIGURE demo UNet parameters (from the safetensors headers): %lld\n", static_cast<long long>(params));
    expect(params > 0 && params < kto::kSmallUNetParameters, "the demo model's UNet should count as small");
    const auto on_device = kto::default_model_dtype(a.demo, device.is_cuda());
    const auto on_cpu = kto::default_model_dtype(a.demo, false);
    const std::string blas = kto::openblas_kernels();
    std::printf("FIGURE default dtype of the demo model: %s on %s, %s on the CPU; CPU BLAS: %s\n",
                c10::toString(on_device), device.str().c_str(), c10::toString(on_cpu),
                blas.empty() ? "not OpenBLAS (left as it is)" : blas.c_str());
    if (device.is_cuda()) expect(on_device == torch::kHalf, "a model on CUDA should default to fp16");
    if (!kto::cpu_dtype_chosen()) expect(on_cpu == torch::kFloat, "the demo model should default to fp32 on the CPU");
}

void check_oom(const Args& a, torch::Device device) {
    if (!device.is_cuda()) {
        std::printf("(CPU: an absurd allocation is not attempted here; the forced-failure tests cover it)\n");
        return;
    }
    auto b = random_sd_bundle(a, device, torch::kFloat16);
    kto::GenerateOptions huge;
    huge.prompts = {"a photograph of an astronaut riding a horse"};
    huge.images_per_prompt = 64;
    huge.width = huge.height = 4096;
    huge.steps = 2;
    bool reported = false;
    try {
        kto::generate(b, huge);
    } catch (const kto::OutOfMemory& e) {
        reported = true;
        std::printf("reported: %s\n", e.what());
        const std::string m = e.what();
        expect(m.find("out of memory") != std::string::npos && m.find("Try fewer images") != std::string::npos,
               "the message gives no advice");
    }
    expect(reported, "a 64 x 4096x4096 generation did not run out of memory as kto::OutOfMemory");
    kto::GenerateOptions ok;
    ok.prompts = huge.prompts;
    ok.steps = 2;
    ok.width = ok.height = 512;
    auto r = kto::generate(b, ok);
    expect(r.rgb.size() == 1, "no image after the out-of-memory error");
    std::printf("FIGURE oom: the out-of-memory error was reported with advice and a 512x512 generation ran after it\n");
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", k.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (k == "--device") a.device = value();
        else if (k == "--reference") a.reference = value();
        else if (k == "--demo") a.demo = value();
        else if (k == "--out") a.out = value();
        else if (k == "--work") a.work = value();
        else if (k == "--quick") a.quick = true;
        else {
            std::fprintf(stderr, "usage: gpu_check [--device cuda|cpu] [--reference DIR] [--demo DIR] [--out DIR] [--work DIR] [--quick]\n");
            return 2;
        }
    }
    if (a.reference.empty()) a.reference = std::getenv("KTO_REFERENCE_DIR") ? std::getenv("KTO_REFERENCE_DIR") : "";
    if (a.demo.empty()) a.demo = kto::find_demo_model();
    if (a.work.empty()) a.work = a.out + "/work";
    kto::configure_torch_threads();
    std::printf("%s\n", kto::torch_runtime_summary().c_str());
    const torch::Device device(a.device);
    if (device.is_cuda() && !torch::cuda::is_available()) {
        std::printf("CHECK cuda SKIP: this libtorch has no CUDA or no GPU is visible\n");
        return 0;
    }
    if (a.reference.empty() || !fs::exists(a.reference + "/tiny-sd")) {
        std::fprintf(stderr, "--reference DIR (or KTO_REFERENCE_DIR) must name the shared reference folder\n");
        return 2;
    }
    if (device.is_cuda()) std::printf("devices: %d CUDA\n", int(torch::cuda::device_count()));
    stage("parity", [&] { check_parity(a, device); });
    stage("seed", [&] { check_seed(a, device); });
    stage("sd15-unet", [&] { check_sd15_unet(a, device); });
    stage("sd15-gen", [&] { check_sd15_generation(a, device); });
    stage("sd15-train", [&] { check_sd15_training(a, device); });
    stage("demo-train", [&] { check_demo_training(a, device); });
    stage("oom", [&] { check_oom(a, device); });
    stage("defaults", [&] { check_defaults(a, device); });
    std::printf("%d stage(s) failed\n", failures);
    return failures;
}
