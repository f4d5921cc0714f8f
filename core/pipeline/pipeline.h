#pragma once
// Text-to-image with a loaded Stable Diffusion 1.x/2.x model set, computed as diffusers 0.25.1's
// StableDiffusionPipeline computes it: CLIP text states for [negative; positive] prompts,
// classifier-free guidance uncond + cfg (cond - uncond), initial latents torch.randn'd from a CPU
// generator seeded with the seed (one draw of shape [B,4,h,w]) times init_noise_sigma, the
// scheduler loop, VAE decode of latents / scaling_factor, image = clamp(decoded / 2 + 0.5, 0, 1).
//
// Thread-safety: a ModelBundle holds modules that run one forward at a time; call generate()
// for one bundle from one thread at a time (the callbacks run on that thread).
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/common/image_decode.h"
#include "core/nn/lora.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"
#include "core/sampling/scheduler.h"
#include "core/text/clip_text_model.h"
#include "core/text/clip_tokenizer.h"

namespace kto {

struct ModelBundleOptions {
    torch::Device device = torch::kCPU;           // CUDA when libtorch has it
    torch::ScalarType dtype = torch::kFloat32;    // fp16/bf16 on CUDA, fp32 on CPU
    std::string unet_dir;   // optional: a diffusers unet/ folder replacing the model's UNet (fine-tunes)
    std::string lora_path;  // optional: LoRA weights attached to the UNet
    std::string tokenizer_dir;  // single-file checkpoints only: where the CLIP tokenizer is
    std::string config_dir;     // single-file checkpoints only: a diffusers folder whose configs to use
};

// A loaded model set: a value object (copies share the modules).
struct ModelBundle {
    std::string source;  // the model folder or checkpoint file
    std::string name;    // its base name, for provenance ("kto-demo", "v1-5-pruned")
    torch::Device device = torch::kCPU;
    torch::ScalarType dtype = torch::kFloat32;
    std::shared_ptr<CLIPTokenizer> tokenizer;
    CLIPTextModel text_encoder{nullptr};
    UNet2DConditionModel unet{nullptr};
    AutoencoderKL vae{nullptr};
    SchedulerConfig scheduler_config;
    std::shared_ptr<UNetLoRA> lora;  // when loaded with a LoRA

    // Loads a diffusers folder (model_index.json, tokenizer/, text_encoder/, unet/, vae/,
    // scheduler/) or a single-file LDM checkpoint (*.safetensors). Errors name what is missing.
    static ModelBundle load(const std::string& path, const ModelBundleOptions& options = {});

    // Pixel size per latent cell: 2^(len(vae.block_out_channels) - 1) (8 for SD).
    int vae_scale_factor() const;
    // The sampler the model's scheduler config stands for.
    std::string default_sampler() const { return default_sampler_for(scheduler_config); }
};

// Images come back as kto::RgbImage (core/common/image_decode.h): 8-bit RGB, rows top to bottom.

// Tensors of one denoising step, for tests and debugging (GenerateOptions::on_step).
struct StepTrace {
    int index = 0;
    torch::Tensor timestep;    // 0-dim, I64 or F32
    torch::Tensor unet_in;     // [2B or B, 4, h, w]
    torch::Tensor unet_out;
    torch::Tensor noise_pred;  // guided
    torch::Tensor latents;     // after the step
};

struct GenerateOptions {
    std::vector<std::string> prompts;           // one per prompt row (at least one)
    std::vector<std::string> negative_prompts;  // empty: "" for every row; else one, or one per prompt
    uint64_t seed = 0;
    int steps = 25;
    double cfg = 7.5;            // guidance scale; <= 1 disables classifier-free guidance
    // diffusers' guidance_rescale (Lin et al. 2023, sec. 3.4): blends the guided prediction with
    // itself rescaled to the text prediction's std, against over-exposure at high CFG. 0: off.
    double guidance_rescale = 0.0;
    std::string sampler;         // see sampler_names(); empty: the model's own scheduler class
    int width = 512;             // pixels, multiples of 8
    int height = 512;
    int images_per_prompt = 1;   // batch = prompts * images_per_prompt (each prompt repeated in a row)
    torch::Tensor init_latents;  // optional [B,4,h,w] standard-normal latents (before init_noise_sigma)
    // Image-to-image (SDEdit, as diffusers' img2img pipeline): [B,4,h,w] latents of the images to
    // start from, in the UNet's space (VAE latents times its scaling factor, as GenerateResult::latents).
    // They are noised to the grid step that leaves round(steps * strength) steps (at least one), and
    // only those steps run; the noise is init_latents when given, else the seed's draw. DDIM and DDPM only.
    torch::Tensor image_latents;
    double strength = 1.0;       // (0, 1]; with image_latents
    bool decode = true;          // false: latents only

    std::function<void(int step, int total)> on_progress;  // after each step (1-based)
    // After each step: a cheap RGB preview per batch element at latent resolution.
    std::function<void(int step, int total, const std::vector<RgbImage>& previews)> on_preview;
    std::function<bool()> should_cancel;  // checked before each step: true throws kto::Cancelled
    std::function<void(const std::string&)> on_warning;  // e.g. a prompt truncated to 77 tokens
    std::function<void(const StepTrace&)> on_step;        // debugging/tests: every step's tensors
};

struct GenerateResult {
    torch::Tensor latents;  // final latents [B,4,h,w] (F32, CPU), before VAE scaling
    torch::Tensor images;   // [B,3,H,W] in [0,1] (F32, CPU); undefined when decode is false
    std::vector<RgbImage> rgb;  // images as RGB8
    std::vector<std::string> warnings;
    std::string sampler;    // the sampler used
    torch::Tensor timesteps;
};

// Runs text-to-image. Throws kto::Error for bad options (sizes not multiples of 8, empty prompt
// list, unknown sampler, init_latents of the wrong shape) and kto::Cancelled when cancelled.
GenerateResult generate(ModelBundle& bundle, const GenerateOptions& options);

// Text states for prompts (as StableDiffusionPipeline.encode_prompt: no attention mask),
// with a warning per prompt truncated to the tokenizer's max length.
torch::Tensor encode_prompts(ModelBundle& bundle, const std::vector<std::string>& prompts,
                             std::vector<std::string>* warnings = nullptr);

// The built-in demo model folder: $KTO_DEMO_MODEL, else <exe>/../share/kto-studio/models/kto-demo,
// else the install data dir, else the source tree's resources/models/kto-demo. Empty when none
// exists (holding a model_index.json).
std::string find_demo_model();

// The parameter count of a model's UNet (a diffusers folder's unet/ weights or a single-file
// checkpoint's model.diffusion_model.* tensors), read from the safetensors headers only; -1 when it
// cannot be told (sharded or missing weights: the loader reports those).
int64_t unet_parameter_count(const std::string& model_path);

// Below this many UNet parameters a model runs in fp32 on the CPU unless bf16 was chosen.
constexpr int64_t kSmallUNetParameters = 100'000'000;

// The dtype a model runs in when the user chose none: default_inference_dtype(cuda), except on a
// CPU whose automatic choice is bf16 (not set in Settings or KTO_CPU_DTYPE), where a small UNet
// (under kSmallUNetParameters; the demo model's has 3.7 million, SD 1.5's 860 million) runs in fp32:
// its operators are too small for the bf16 matrix units to pay for the conversions around them
// (one demo image on 2 cores, back to back: 0.28 s in fp32 against 0.35 s in bf16; batches of 8 favour
// bf16 a little; MODEL_CARD.md), and fp32 is what its quality figures are measured in.
torch::ScalarType default_model_dtype(const std::string& model_path, bool cuda);

// Cheap latent -> RGB preview (a fixed 4x3 linear map for SD 1.x latents, as A1111's
// "Approx cheap"): [B,4,h,w] -> B images of h x w.
std::vector<RgbImage> latent_preview(const torch::Tensor& latents);

// [B,3,H,W] in [0,1] -> RGB8 images (rounded).
std::vector<RgbImage> to_rgb8(const torch::Tensor& images);

}  // namespace kto
