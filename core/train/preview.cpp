#include "core/train/preview.h"

#include <stb_image_write.h>

#include <filesystem>

#include "core/common/error.h"
#include "core/nn/unet.h"
#include "core/sampling/scheduler.h"
#include "core/sampling/scheduler_config.h"
#include "core/text/clip_text_model.h"
#include "core/text/clip_tokenizer.h"

namespace fs = std::filesystem;

namespace kto {

PreviewRenderer::PreviewRenderer(const std::string& model_dir, torch::Device device, const TrainOptions& options)
    : model_dir_(model_dir), device_(device), options_(options) {
    const fs::path root(model_dir);
    vae_ = load_vae((root / "vae").string(), device_);
    auto tokenizer = CLIPTokenizer::from_folder((root / "tokenizer").string());
    auto text = load_text_encoder((root / "text_encoder").string(), device_);
    torch::NoGradGuard no_grad;
    std::vector<std::string> prompts = options_.probe_prompts;
    prompts.push_back("");
    const auto states = text->forward(tokenizer.encode(prompts).input_ids.to(device_)).last_hidden_state;
    const int64_t p = static_cast<int64_t>(options_.probe_prompts.size());
    cond_ = states.narrow(0, 0, p);
    uncond_ = states.narrow(0, p, 1);
    auto cfg = SchedulerConfig::from_file((root / "scheduler" / "scheduler_config.json").string());
    scheduler_ = std::shared_ptr<Scheduler>(make_scheduler(options_.preview_sampler, cfg));
}

PreviewRenderer::~PreviewRenderer() = default;

std::vector<PreviewImage> PreviewRenderer::render(UNet2DConditionModelImpl& unet, const std::string& dir,
                                                  const std::function<bool()>& keep_going) {
    torch::NoGradGuard no_grad;
    fs::create_directories(dir);
    std::vector<PreviewImage> out;
    const int64_t latent = unet.config().sample_size;
    const int64_t channels = unet.config().in_channels;
    const double guidance = options_.preview_guidance;
    for (size_t p = 0; p < options_.probe_prompts.size(); ++p) {
        const auto context = torch::cat({uncond_, cond_.narrow(0, static_cast<int64_t>(p), 1)});
        for (const int64_t seed : options_.probe_seeds) {
            if (keep_going && !keep_going()) throw Cancelled();
            auto gen = make_cpu_generator(static_cast<uint64_t>(seed));
            scheduler_->set_timesteps(options_.preview_steps);
            auto x = randn_on_cpu({1, channels, latent, latent}, &gen, device_) * scheduler_->init_noise_sigma();
            const auto& ts = scheduler_->timesteps();
            for (int64_t i = 0; i < ts.size(0); ++i) {
                const double t = ts[i].item<double>();
                const auto in = scheduler_->scale_model_input(torch::cat({x, x}), t);
                const auto tt = scheduler_->float_timesteps()
                                    ? torch::full({2}, t, torch::TensorOptions().dtype(torch::kFloat).device(device_))
                                    : torch::full({2}, static_cast<int64_t>(t),
                                                  torch::TensorOptions().dtype(torch::kLong).device(device_));
                const auto eps = unet.forward(in, tt, context).to(torch::kFloat);
                const auto parts = eps.chunk(2);
                const auto guided = parts[0] + guidance * (parts[1] - parts[0]);
                StepNoise noise;
                noise.generator = &gen;
                x = scheduler_->step(guided, t, x, noise).prev_sample;
            }
            const auto img = vae_->decode(x / vae_->scaling_factor())[0];
            const auto u8 = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch::kCPU, torch::kUInt8)
                                .permute({1, 2, 0})
                                .contiguous();
            PreviewImage pi;
            pi.prompt = options_.probe_prompts[p];
            pi.seed = seed;
            pi.path = (fs::path(dir) / ("p" + std::to_string(p) + "-s" + std::to_string(seed) + ".png")).string();
            pi.image = u8;
            const int h = static_cast<int>(u8.size(0)), w = static_cast<int>(u8.size(1));
            if (!stbi_write_png(pi.path.c_str(), w, h, 3, u8.data_ptr<uint8_t>(), w * 3))
                throw Error(pi.path + ": cannot write preview image");
            out.push_back(std::move(pi));
        }
    }
    return out;
}

}  // namespace kto
