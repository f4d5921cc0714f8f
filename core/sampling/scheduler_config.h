#pragma once
// A diffusers scheduler_config.json, parsed. Fields the file does not state stay unset (nullopt),
// so each scheduler class fills in its own default exactly as diffusers' from_config does
// (e.g. timestep_spacing defaults to "leading" for DDPM/DDIM/PNDM but "linspace" for Euler and
// DPM-Solver). Keys listed in "_use_default_values" count as unstated, as diffusers treats them.
#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>
#include <vector>

namespace kto {

struct SchedulerConfig {
    std::string class_name;  // "_class_name", e.g. "PNDMScheduler"; empty when absent
    std::string source;      // the file (or "<json>") the config came from, for error messages

    std::optional<int> num_train_timesteps;         // default 1000
    std::optional<double> beta_start;               // default 0.0001
    std::optional<double> beta_end;                 // default 0.02
    std::optional<std::string> beta_schedule;       // linear | scaled_linear | squaredcos_cap_v2
    std::optional<std::vector<double>> trained_betas;  // overrides the beta schedule when set
    std::optional<std::string> prediction_type;     // epsilon | v_prediction | sample
    std::optional<std::string> timestep_spacing;    // leading | trailing | linspace
    std::optional<int> steps_offset;                // default 0
    std::optional<bool> set_alpha_to_one;           // DDIM default true, PNDM false
    std::optional<bool> clip_sample;                // DDPM/DDIM default true
    std::optional<double> clip_sample_range;        // default 1.0
    std::optional<bool> thresholding;               // default false
    std::optional<double> dynamic_thresholding_ratio;  // default 0.995
    std::optional<double> sample_max_value;         // default 1.0
    std::optional<bool> skip_prk_steps;             // PNDM default false
    std::optional<std::string> variance_type;       // DDPM default fixed_small
    std::optional<bool> rescale_betas_zero_snr;     // default false
    std::optional<bool> use_karras_sigmas;          // default false
    std::optional<std::string> interpolation_type;  // Euler: linear | log_linear
    std::optional<std::string> timestep_type;       // Euler: discrete | continuous
    std::optional<double> sigma_min;                // Euler: Karras range override
    std::optional<double> sigma_max;
    std::optional<int> solver_order;                // DPM-Solver default 2
    std::optional<std::string> algorithm_type;      // DPM-Solver default dpmsolver++
    std::optional<std::string> solver_type;         // DPM-Solver default midpoint
    std::optional<bool> lower_order_final;          // DPM-Solver default true
    std::optional<bool> euler_at_final;             // DPM-Solver default false
    std::optional<bool> use_lu_lambdas;             // DPM-Solver default false
    std::optional<double> lambda_min_clipped;       // DPM-Solver default -inf
    std::optional<std::string> final_sigmas_type;   // newer diffusers; only "sigma_min" behaviour here

    // Parses a scheduler_config.json object; throws kto::Error naming `source` and the field for
    // a wrong type or an unsupported value.
    static SchedulerConfig from_json(const nlohmann::json& j, const std::string& source = "<json>");
    // Reads and parses a file.
    static SchedulerConfig from_file(const std::string& path);
    // Stable Diffusion 1.x's scheduler config (PNDM, scaled_linear 0.00085..0.012, steps_offset 1).
    static SchedulerConfig stable_diffusion_v1();
    // The fields that are set, as a scheduler_config.json object (with _class_name when known).
    nlohmann::json to_json() const;
};

// Parses JSON text that may hold the non-standard tokens Python's json writes for floats
// (Infinity, -Infinity, NaN; e.g. DPM-Solver's "lambda_min_clipped": -Infinity) as doubles.
// Throws kto::Error naming `source` on a syntax error.
nlohmann::json parse_json_with_infinity(const std::string& text, const std::string& source);

// The sampler names make_scheduler accepts.
const std::vector<std::string>& sampler_names();

// The sampler a config's _class_name stands for (PNDMScheduler -> "pndm", EulerDiscreteScheduler
// with use_karras_sigmas -> "euler_karras", ...). Classes this project does not implement map to
// "euler", the common default in UIs; empty class_name maps to "pndm" (SD 1.x's default).
std::string default_sampler_for(const SchedulerConfig& config);

}  // namespace kto
