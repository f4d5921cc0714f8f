#include "core/pipeline/pipeline.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/io/model_folder.h"
#include "core/io/safetensors.h"
#include "core/pipeline/single_file.h"

namespace kto {
namespace fs = std::filesystem;

ModelBundle ModelBundle::load(const std::string& path, const ModelBundleOptions& options) {
    if (path.empty()) throw Error("no model given: pass a diffusers model folder or a .safetensors checkpoint");
    std::error_code ec;
    if (!fs::exists(path, ec)) throw Error(path + ": no such model folder or checkpoint file");
    ModelBundle b;
    if (fs::is_regular_file(path, ec)) {
        if (fs::path(path).extension() != ".safetensors")
            throw Error(path + ": not a model folder or a .safetensors checkpoint (pickle .ckpt files are not supported)");
        b = load_single_file_checkpoint(path, options);
    } else {
        read_model_index(path);  // checks the layout and names what is missing
        b.source = path;
        b.device = options.device;
        b.dtype = options.dtype;
        b.tokenizer = std::make_shared<CLIPTokenizer>(CLIPTokenizer::from_folder(component_dir(path, "tokenizer")));
        b.text_encoder = load_text_encoder(path, options.device, options.dtype);
        b.unet = load_unet(component_dir(path, "unet"), options.device, options.dtype);
        b.vae = load_vae(component_dir(path, "vae"), options.device, options.dtype);
        b.scheduler_config =
            SchedulerConfig::from_file(component_dir(path, "scheduler") + "/scheduler_config.json");
    }
    auto base = fs::path(path).lexically_normal();
    if (base.filename().empty()) base = base.parent_path();
    b.name = base.stem().string();
    if (!options.unet_dir.empty()) b.unet = load_unet(options.unet_dir, options.device, options.dtype);
    b.text_encoder->eval();
    b.unet->eval();
    b.vae->eval();
    if (!options.lora_path.empty()) {
        std::unique_ptr<UNetLoRA> lora = UNetLoRA::load(b.unet, options.lora_path);
        b.lora = std::shared_ptr<UNetLoRA>(std::move(lora));
    }
    return b;
}

int64_t unet_parameter_count(const std::string& model_path) {
    try {
        std::error_code ec;
        const bool file = fs::is_regular_file(model_path, ec);
        const std::string weights = file ? model_path : find_weights_file(component_dir(model_path, "unet"));
        if (fs::path(weights).extension() != ".safetensors") return -1;  // a sharded index
        int64_t count = 0;
        for (const auto& e : read_safetensors_header(weights).entries) {
            if (file && e.name.rfind(kLdmUNetPrefix, 0) != 0) continue;
            int64_t n = 1;
            for (const int64_t d : e.shape) n *= d;
            count += n;
        }
        return count > 0 ? count : -1;
    } catch (const std::exception&) {
        return -1;
    }
}

torch::ScalarType default_model_dtype(const std::string& model_path, bool cuda) {
    const torch::ScalarType dtype = default_inference_dtype(cuda);
    if (cuda || dtype != torch::kBFloat16 || cpu_dtype_chosen()) return dtype;
    const int64_t n = unet_parameter_count(model_path);
    return n >= 0 && n < kSmallUNetParameters ? torch::kFloat32 : dtype;
}

std::string find_demo_model() {
    std::vector<fs::path> candidates;
    if (const char* env = std::getenv("KTO_DEMO_MODEL"); env && *env) candidates.emplace_back(env);
    std::error_code ec;
    const auto exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back(exe.parent_path() / ".." / "share" / "kto-studio" / "models" / "kto-demo");
#ifdef KTO_INSTALL_DATADIR
    candidates.push_back(fs::path(KTO_INSTALL_DATADIR) / "models" / "kto-demo");
#endif
#ifdef KTO_DEMO_MODEL_DIR_BUILD
    candidates.emplace_back(KTO_DEMO_MODEL_DIR_BUILD);
#endif
    for (const auto& c : candidates)
        if (fs::exists(c / "model_index.json", ec)) return fs::weakly_canonical(c, ec).string();
    return {};
}

int ModelBundle::vae_scale_factor() const {
    return 1 << (static_cast<int>(vae->config().block_out_channels.size()) - 1);
}

torch::Tensor encode_prompts(ModelBundle& bundle, const std::vector<std::string>& prompts,
                             std::vector<std::string>* warnings) {
    auto tok = bundle.tokenizer->encode(prompts);
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (!tok.truncated[i] || !warnings) continue;
        const int limit = bundle.tokenizer->max_length();
        warnings->push_back("prompt \"" + prompts[i].substr(0, 60) + (prompts[i].size() > 60 ? "..." : "") +
                            "\" has " + (tok.num_tokens[i] >= tok.count_limit ? "at least " : "") +
                            std::to_string(tok.num_tokens[i]) + " tokens; only the first " +
                            std::to_string(limit) + " (with start/end markers) are used");
    }
    torch::NoGradGuard no_grad;
    auto ids = tok.input_ids.to(bundle.device);
    return bundle.text_encoder->forward(ids).last_hidden_state;
}

namespace {

// A1111's "Approx cheap" factors: latent channel -> RGB contribution (SD 1.x VAE latents).
const float kPreviewFactors[4][3] = {
    {0.298f, 0.207f, 0.208f},
    {0.187f, 0.286f, 0.173f},
    {-0.158f, 0.189f, 0.264f},
    {-0.184f, -0.271f, -0.473f},
};

std::vector<std::string> expand(const std::vector<std::string>& v, size_t prompts, int per_prompt) {
    std::vector<std::string> out;
    for (size_t i = 0; i < prompts; ++i)
        for (int k = 0; k < per_prompt; ++k) out.push_back(v.size() == 1 ? v[0] : v[i]);
    return out;
}

}  // namespace

std::vector<RgbImage> latent_preview(const torch::Tensor& latents) {
    auto factors = torch::from_blob(const_cast<float*>(&kPreviewFactors[0][0]), {4, 3}, torch::kFloat32).clone();
    auto x = latents.detach().to(torch::kCPU, torch::kFloat32);
    if (x.dim() != 4 || x.size(1) != 4) throw Error("latent preview: expected latents [B,4,h,w]");
    auto rgb = torch::einsum("blhw,lr->brhw", {x, factors});
    rgb = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0);
    return to_rgb8(rgb);
}

std::vector<RgbImage> to_rgb8(const torch::Tensor& images) {
    auto x = images.detach().to(torch::kCPU, torch::kFloat32);
    if (x.dim() != 4 || x.size(1) != 3) throw Error("expected images [B,3,H,W]");
    auto u8 = (x.clamp(0.0, 1.0) * 255.0).round().to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
    std::vector<RgbImage> out;
    for (int64_t b = 0; b < u8.size(0); ++b) {
        RgbImage im;
        im.height = static_cast<int>(u8.size(1));
        im.width = static_cast<int>(u8.size(2));
        const uint8_t* p = u8[b].data_ptr<uint8_t>();
        im.pixels.assign(p, p + static_cast<size_t>(im.width) * im.height * 3);
        out.push_back(std::move(im));
    }
    return out;
}

namespace {

GenerateResult run_generation(ModelBundle& bundle, const GenerateOptions& o) {
    if (!bundle.unet || !bundle.vae || !bundle.text_encoder || !bundle.tokenizer)
        throw Error("generate: the model is not loaded");
    if (o.prompts.empty()) throw Error("generate: no prompt given");
    if (!o.negative_prompts.empty() && o.negative_prompts.size() != 1 && o.negative_prompts.size() != o.prompts.size())
        throw Error("generate: give one negative prompt, or one per prompt (" + std::to_string(o.prompts.size()) +
                    "), not " + std::to_string(o.negative_prompts.size()));
    if (o.steps < 1 || o.steps > 1000) throw Error("generate: steps must be between 1 and 1000");
    if (o.images_per_prompt < 1 || o.images_per_prompt > 64) throw Error("generate: images per prompt must be between 1 and 64");
    if (!std::isfinite(o.cfg)) throw Error("generate: the guidance scale must be a finite number");
    if (!(o.guidance_rescale >= 0.0 && o.guidance_rescale <= 1.0))
        throw Error("generate: the guidance rescale must be between 0 and 1");
    if (!(o.strength > 0.0 && o.strength <= 1.0)) throw Error("generate: the strength must be in (0, 1]");
    if (o.strength != 1.0 && !o.image_latents.defined())
        throw Error("generate: a strength below 1 needs image_latents to start from (image-to-image)");
    const int f = bundle.vae_scale_factor();
    const std::pair<const char*, int> sizes[] = {{"width", o.width}, {"height", o.height}};
    for (const auto& [what, v] : sizes) {
        if (v <= 0 || v % 8 != 0 || v % f != 0)
            throw Error(std::string("generate: ") + what + " " + std::to_string(v) + " is not a positive multiple of " +
                        std::to_string(std::max(8, f)));
        if (v > 4096) throw Error(std::string("generate: ") + what + " " + std::to_string(v) + " exceeds 4096");
    }

    GenerateResult r;
    auto warn = [&](const std::string& w) {
        r.warnings.push_back(w);
        if (o.on_warning) o.on_warning(w);
    };
    r.sampler = o.sampler.empty() ? bundle.default_sampler() : o.sampler;
    auto scheduler = make_scheduler(r.sampler, bundle.scheduler_config);
    scheduler->set_timesteps(o.steps);
    r.timesteps = scheduler->timesteps().clone();

    torch::NoGradGuard no_grad;
    const int64_t B = static_cast<int64_t>(o.prompts.size()) * o.images_per_prompt;
    const int64_t lc = bundle.unet->config().in_channels;
    const int64_t h = o.height / f, w = o.width / f;
    const bool cfg = o.cfg > 1.0;

    // Text states: each prompt repeated images_per_prompt times in a row; CFG batch [uncond; cond].
    std::vector<std::string> tw;
    const auto prompts = expand(o.prompts, o.prompts.size(), o.images_per_prompt);
    auto cond = encode_prompts(bundle, prompts, &tw);
    torch::Tensor context = cond;
    if (cfg) {
        const auto negs = o.negative_prompts.empty()
                              ? std::vector<std::string>(prompts.size(), "")
                              : expand(o.negative_prompts, o.prompts.size(), o.images_per_prompt);
        auto uncond = encode_prompts(bundle, negs, &tw);
        context = torch::cat({uncond, cond});
    }
    // One warning per distinct text (repeats of a prompt say the same thing).
    std::vector<std::string> seen;
    for (const auto& m : tw)
        if (std::find(seen.begin(), seen.end(), m) == seen.end()) {
            seen.push_back(m);
            warn(m);
        }

    auto require_latent_shape = [&](const torch::Tensor& t, const char* what) {
        if (t.sizes() != torch::IntArrayRef({B, lc, h, w})) {
            std::ostringstream os;
            os << "generate: " << what << " must have shape [" << B << ", " << lc << ", " << h << ", " << w << "], got "
               << t.sizes();
            throw Error(os.str());
        }
    };
    // Initial latents: one torch.randn draw from a CPU generator seeded with the seed.
    torch::Tensor latents;
    if (o.init_latents.defined()) {
        require_latent_shape(o.init_latents, "init_latents");
        latents = o.init_latents.to(torch::kCPU, torch::kFloat32);
    } else {
        auto gen = make_cpu_generator(o.seed);
        latents = randn_on_cpu({B, lc, h, w}, &gen);
    }
    const auto& ts = scheduler->timesteps();
    const int grid_steps = static_cast<int>(ts.size(0));
    int first = 0;  // grid index the run starts at
    if (o.image_latents.defined()) {
        require_latent_shape(o.image_latents, "image_latents");
        if (r.sampler != "ddim" && r.sampler != "ddpm")
            throw Error("generate: image-to-image runs with the ddim or ddpm sampler, not " + r.sampler);
        // Enter the grid that far up and start from the images noised to that step.
        first = grid_steps - std::max(1, static_cast<int>(std::lround(grid_steps * o.strength)));
        const torch::Tensor start = ts[first].to(torch::kInt64).expand({B});
        latents = scheduler->add_noise(o.image_latents.to(torch::kCPU, torch::kFloat32), latents, start);
        r.timesteps = r.timesteps.slice(0, first);
    }
    latents = (first == 0 ? latents * scheduler->init_noise_sigma() : latents).to(bundle.device);
    // Step noise (ancestral samplers) continues the same seeded generator, as in diffusers.
    auto step_gen = make_cpu_generator(o.seed);
    if (!o.init_latents.defined()) randn_on_cpu({B, lc, h, w}, &step_gen);  // past the initial draw
    StepNoise noise{&step_gen, {}};

    const int total = grid_steps - first;
    // On the CPU the CFG batch's two halves run side by side, each on half the threads (CpuPairRunner).
    std::unique_ptr<CpuPairRunner> pairs;
    if (cfg && !bundle.device.is_cuda() && CpuPairRunner::available()) pairs = std::make_unique<CpuPairRunner>();
    for (int i = first; i < grid_steps; ++i) {
        if (o.should_cancel && o.should_cancel()) throw Cancelled();
        fault_point("generate-step");
        auto t = ts[i];
        const double tv = t.item<double>();
        auto model_in = cfg ? torch::cat({latents, latents}) : latents;
        model_in = scheduler->scale_model_input(model_in, tv);
        torch::Tensor unet_out;
        if (pairs) {
            const auto x = model_in.to(bundle.dtype).chunk(2), c = context.chunk(2);
            const auto tt = t.to(bundle.device);
            torch::Tensor uncond_out, cond_out;
            pairs->run([&] { uncond_out = bundle.unet->forward(x[0], tt, c[0]); },
                       [&] { cond_out = bundle.unet->forward(x[1], tt, c[1]); });
            unet_out = torch::cat({uncond_out, cond_out}).to(torch::kFloat32);
        } else {
            unet_out = bundle.unet->forward(model_in.to(bundle.dtype), t.to(bundle.device), context)
                           .to(torch::kFloat32);
        }
        torch::Tensor noise_pred = unet_out;
        if (cfg) {
            auto halves = unet_out.chunk(2);
            noise_pred = halves[0] + o.cfg * (halves[1] - halves[0]);
            if (o.guidance_rescale > 0.0) {
                // As diffusers' rescale_noise_cfg: per-sample std over all but the batch dimension.
                const std::vector<int64_t> dims{1, 2, 3};
                auto rescaled = noise_pred * (halves[1].std(dims, /*unbiased=*/true, /*keepdim=*/true) /
                                              noise_pred.std(dims, /*unbiased=*/true, /*keepdim=*/true));
                noise_pred = o.guidance_rescale * rescaled + (1.0 - o.guidance_rescale) * noise_pred;
            }
        }
        auto out = scheduler->step(noise_pred, tv, latents, noise);
        latents = out.prev_sample;
        if (o.on_step) o.on_step(StepTrace{i, t, model_in, unet_out, noise_pred, latents});
        if (o.on_progress) o.on_progress(i + 1 - first, total);
        if (o.on_preview)
            o.on_preview(i + 1 - first, total,
                         latent_preview(out.pred_original_sample.defined() ? out.pred_original_sample : latents));
    }
    r.latents = latents.to(torch::kCPU, torch::kFloat32);
    // The UNet's activations are free now: give large freed blocks back before the VAE decodes at
    // full resolution, so the two phases' peaks do not add up in the process (CPU).
    if (!bundle.device.is_cuda()) release_free_heap();
    if (o.decode) {
        if (o.should_cancel && o.should_cancel()) throw Cancelled();
        auto decoded = bundle.vae->decode((latents / bundle.vae->scaling_factor()).to(bundle.dtype));
        r.images = (decoded.to(torch::kCPU, torch::kFloat32) / 2 + 0.5).clamp(0.0, 1.0);
        r.rgb = to_rgb8(r.images);
        if (!bundle.device.is_cuda()) release_free_heap();
    }
    return r;
}

}  // namespace

GenerateResult generate(ModelBundle& bundle, const GenerateOptions& o) {
    try {
        return run_generation(bundle, o);
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        if (!is_out_of_memory(e)) throw;
        release_cached_device_memory();
        const int64_t batch = static_cast<int64_t>(o.prompts.size()) * o.images_per_prompt;
        std::ostringstream os;
        os << "out of memory while generating " << batch << (batch == 1 ? " image" : " images") << " of "
           << o.width << "x" << o.height << " on " << bundle.device << " (" << c10::toString(bundle.dtype)
           << "): " << short_error_message(e) << ". Try fewer images per batch, a smaller size"
           << (bundle.device.is_cuda() ? (bundle.dtype == torch::kFloat32 ? ", fp16 instead of fp32" : "")
                                       : "")
           << (bundle.device.is_cuda() ? ", or the CPU" : ", or closing other programs") << ".";
        throw OutOfMemory(os.str());
    }
}

}  // namespace kto
