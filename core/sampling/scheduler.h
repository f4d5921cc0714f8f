#pragma once
// Noise schedulers, computed exactly as diffusers 0.25.1 computes them (the golden tensors in
// shared/reference were made with that version): DDPM, DDIM, PNDM (PLMS), Euler (+ Karras
// sigmas), Euler ancestral, DPM-Solver++ 2M (+ Karras sigmas).
//
// Tables (betas, alphas_cumprod) are float32 torch tensors as in diffusers; the parts diffusers
// computes with numpy float64 (timestep grids, sigma interpolation, Karras sigmas) are computed
// in double here. A scheduler is stateful (step index, multistep history): one instance serves
// one denoising loop at a time and is not thread-safe; set_timesteps() resets it.
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/sampling/scheduler_config.h"

namespace kto {

struct SchedulerStepOutput {
    torch::Tensor prev_sample;
    torch::Tensor pred_original_sample;  // undefined for schedulers that have none (PNDM, DPM-Solver)
};

// Where a stochastic step's noise comes from: an explicit tensor (tests replay stored noise),
// else the generator (a CPU generator: noise is drawn on the CPU in float32 and moved, so a seed
// gives the same result on any device), else torch's default generator.
struct StepNoise {
    at::Generator* generator = nullptr;
    torch::Tensor noise;
};

// Draws standard-normal noise as diffusers' randn_tensor does with a CPU generator: on the CPU,
// then moved to `device` and cast to `dtype` (always drawn in float32 so that a seed gives the
// same values for fp32 and fp16 runs). `generator` may be null (torch's default generator).
torch::Tensor randn_on_cpu(at::IntArrayRef shape, at::Generator* generator,
                           torch::Device device = torch::kCPU, torch::Dtype dtype = torch::kFloat32);

// A CPU generator seeded as torch.Generator("cpu").manual_seed(seed).
at::Generator make_cpu_generator(uint64_t seed);

class Scheduler {
public:
    virtual ~Scheduler() = default;

    // Sampler name ("ddim", "euler_karras", ...) and the diffusers class it mirrors.
    virtual std::string name() const = 0;
    virtual std::string class_name() const = 0;

    // Builds the inference grid for `num_inference_steps` (>= 1) and resets the step state.
    virtual void set_timesteps(int num_inference_steps) = 0;
    // The grid on the CPU: I64, or F32 where diffusers holds float timesteps (Euler family).
    // PNDM with skip_prk_steps holds n+1 entries (its second step repeats a timestep).
    const torch::Tensor& timesteps() const { return timesteps_; }
    // Sigmas ([n+1], F32, CPU) for sigma-based schedulers; undefined otherwise.
    const torch::Tensor& sigmas() const { return sigmas_; }
    // Standard deviation of the initial noise: latents = randn * init_noise_sigma().
    virtual double init_noise_sigma() const { return 1.0; }
    // True when timesteps() is F32.
    bool float_timesteps() const { return timesteps_.defined() && timesteps_.scalar_type() == torch::kFloat32; }

    // Input scaling before the model call (Euler family: x / sqrt(sigma^2 + 1); others: x).
    virtual torch::Tensor scale_model_input(const torch::Tensor& sample, double timestep) = 0;
    // One denoising step with the model output at `timestep` (a value of timesteps()).
    virtual SchedulerStepOutput step(const torch::Tensor& model_output, double timestep,
                                     const torch::Tensor& sample, const StepNoise& noise = {}) = 0;

    // Forward process q(x_t | x_0) at integer training timesteps (per batch element):
    // sqrt(acp[t]) x0 + sqrt(1 - acp[t]) noise.
    torch::Tensor add_noise(const torch::Tensor& original_samples, const torch::Tensor& noise,
                            const torch::Tensor& timesteps) const;
    // v-prediction target: sqrt(acp[t]) noise - sqrt(1 - acp[t]) x0.
    torch::Tensor get_velocity(const torch::Tensor& sample, const torch::Tensor& noise,
                               const torch::Tensor& timesteps) const;

    const torch::Tensor& betas() const { return betas_; }
    const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
    int num_train_timesteps() const { return num_train_timesteps_; }
    int num_inference_steps() const { return num_inference_steps_; }
    const std::string& prediction_type() const { return prediction_type_; }

protected:
    // Builds betas / alphas_cumprod from the config (shared by all classes).
    void init_betas(const SchedulerConfig& config, bool allow_zero_snr);

    int num_train_timesteps_ = 1000;
    int num_inference_steps_ = 0;
    std::string prediction_type_ = "epsilon";
    torch::Tensor betas_;           // F32 [T]
    torch::Tensor alphas_cumprod_;  // F32 [T]
    torch::Tensor timesteps_;
    torch::Tensor sigmas_;
};

// Makes a scheduler by sampler name (see sampler_names()) from a model's scheduler config: the
// config's stated fields win, unstated ones take the named class's defaults (as from_config).
// "euler"/"dpmpp_2m" force use_karras_sigmas off, the *_karras names force it on.
// Throws kto::Error for an unknown name or an unsupported config.
std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const SchedulerConfig& config);

}  // namespace kto
