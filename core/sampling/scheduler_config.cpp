#include "core/sampling/scheduler_config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>

#include "core/common/error.h"
#include "core/io/json_nesting.h"

namespace kto {
namespace {

using nlohmann::json;

std::string where(const std::string& source, const std::string& key) {
    return source + ": '" + key + "'";
}

// Reads j[key] into `out` when present and not null; throws naming the field on a wrong type.
template <typename T>
void read_field(const json& j, const std::set<std::string>& defaulted, const std::string& key,
                const std::string& source, std::optional<T>& out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null() || defaulted.count(key)) return;
    if constexpr (std::is_same_v<T, bool>) {
        if (!it->is_boolean()) throw Error(where(source, key) + " must be true or false");
        out = it->get<bool>();
    } else if constexpr (std::is_same_v<T, int>) {
        if (!it->is_number_integer() &&
            !(it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()))
            throw Error(where(source, key) + " must be an integer");
        double v = it->get<double>();
        if (v < -1e9 || v > 1e9) throw Error(where(source, key) + " is out of range");
        out = static_cast<int>(v);
    } else if constexpr (std::is_same_v<T, double>) {
        if (!it->is_number()) throw Error(where(source, key) + " must be a number");
        out = it->get<double>();
    } else if constexpr (std::is_same_v<T, std::string>) {
        if (!it->is_string()) throw Error(where(source, key) + " must be a string");
        out = it->get<std::string>();
    } else {
        if (!it->is_array()) throw Error(where(source, key) + " must be a list of numbers");
        std::vector<double> v;
        for (const auto& e : *it) {
            if (!e.is_number()) throw Error(where(source, key) + " must be a list of numbers");
            v.push_back(e.get<double>());
        }
        out = v;
    }
}

void check_one_of(const std::optional<std::string>& value, const std::vector<std::string>& allowed,
                  const std::string& source, const std::string& key) {
    if (!value) return;
    if (std::find(allowed.begin(), allowed.end(), *value) != allowed.end()) return;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    throw Error(where(source, key) + ": unsupported value '" + *value + "' (supported: " + list + ")");
}

// Turns the marker strings written by parse_json_with_infinity back into doubles.
void restore_non_finite(json& j) {
    if (j.is_string()) {
        const auto& s = j.get_ref<const std::string&>();
        if (s == "\x01kto:-inf") j = -std::numeric_limits<double>::infinity();
        else if (s == "\x01kto:inf") j = std::numeric_limits<double>::infinity();
        else if (s == "\x01kto:nan") j = std::numeric_limits<double>::quiet_NaN();
    } else if (j.is_structured()) {
        for (auto& e : j) restore_non_finite(e);
    }
}

}  // namespace

json parse_json_with_infinity(const std::string& text, const std::string& source) {
    check_json_nesting(text, source);  // restore_non_finite and copies recurse per level
    // Rewrite Infinity / -Infinity / NaN outside strings as marker strings, parse, restore.
    std::string out;
    out.reserve(text.size() + 32);
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char ch = text[i];
        if (in_string) {
            out += ch;
            if (ch == '\\' && i + 1 < text.size()) out += text[++i];
            else if (ch == '"') in_string = false;
            continue;
        }
        if (ch == '"') {
            in_string = true;
            out += ch;
            continue;
        }
        if (text.compare(i, 9, "-Infinity") == 0) {
            out += "\"\\u0001kto:-inf\"";
            i += 8;
        } else if (text.compare(i, 8, "Infinity") == 0) {
            out += "\"\\u0001kto:inf\"";
            i += 7;
        } else if (text.compare(i, 3, "NaN") == 0) {
            out += "\"\\u0001kto:nan\"";
            i += 2;
        } else {
            out += ch;
        }
    }
    json j;
    try {
        j = json::parse(out);
    } catch (const json::exception& e) {
        throw Error(source + ": not valid JSON (" + e.what() + ")");
    }
    restore_non_finite(j);
    return j;
}

SchedulerConfig SchedulerConfig::from_json(const json& j, const std::string& source) {
    if (!j.is_object()) throw Error(source + ": a scheduler config must be a JSON object");
    SchedulerConfig c;
    c.source = source;
    std::set<std::string> defaulted;
    if (auto it = j.find("_use_default_values"); it != j.end() && it->is_array())
        for (const auto& k : *it)
            if (k.is_string()) defaulted.insert(k.get<std::string>());
    if (auto it = j.find("_class_name"); it != j.end()) {
        if (!it->is_string()) throw Error(where(source, "_class_name") + " must be a string");
        c.class_name = it->get<std::string>();
    }
    read_field(j, defaulted, "num_train_timesteps", source, c.num_train_timesteps);
    read_field(j, defaulted, "beta_start", source, c.beta_start);
    read_field(j, defaulted, "beta_end", source, c.beta_end);
    read_field(j, defaulted, "beta_schedule", source, c.beta_schedule);
    read_field(j, defaulted, "trained_betas", source, c.trained_betas);
    read_field(j, defaulted, "prediction_type", source, c.prediction_type);
    read_field(j, defaulted, "timestep_spacing", source, c.timestep_spacing);
    read_field(j, defaulted, "steps_offset", source, c.steps_offset);
    read_field(j, defaulted, "set_alpha_to_one", source, c.set_alpha_to_one);
    read_field(j, defaulted, "clip_sample", source, c.clip_sample);
    read_field(j, defaulted, "clip_sample_range", source, c.clip_sample_range);
    read_field(j, defaulted, "thresholding", source, c.thresholding);
    read_field(j, defaulted, "dynamic_thresholding_ratio", source, c.dynamic_thresholding_ratio);
    read_field(j, defaulted, "sample_max_value", source, c.sample_max_value);
    read_field(j, defaulted, "skip_prk_steps", source, c.skip_prk_steps);
    read_field(j, defaulted, "variance_type", source, c.variance_type);
    read_field(j, defaulted, "rescale_betas_zero_snr", source, c.rescale_betas_zero_snr);
    read_field(j, defaulted, "use_karras_sigmas", source, c.use_karras_sigmas);
    read_field(j, defaulted, "interpolation_type", source, c.interpolation_type);
    read_field(j, defaulted, "timestep_type", source, c.timestep_type);
    read_field(j, defaulted, "sigma_min", source, c.sigma_min);
    read_field(j, defaulted, "sigma_max", source, c.sigma_max);
    read_field(j, defaulted, "solver_order", source, c.solver_order);
    read_field(j, defaulted, "algorithm_type", source, c.algorithm_type);
    read_field(j, defaulted, "solver_type", source, c.solver_type);
    read_field(j, defaulted, "lower_order_final", source, c.lower_order_final);
    read_field(j, defaulted, "euler_at_final", source, c.euler_at_final);
    read_field(j, defaulted, "use_lu_lambdas", source, c.use_lu_lambdas);
    read_field(j, defaulted, "lambda_min_clipped", source, c.lambda_min_clipped);
    read_field(j, defaulted, "final_sigmas_type", source, c.final_sigmas_type);

    if (c.num_train_timesteps && (*c.num_train_timesteps < 2 || *c.num_train_timesteps > 100000))
        throw Error(where(source, "num_train_timesteps") + " must be between 2 and 100000");
    check_one_of(c.beta_schedule, {"linear", "scaled_linear", "squaredcos_cap_v2"}, source,
                 "beta_schedule");
    check_one_of(c.prediction_type, {"epsilon", "v_prediction", "sample"}, source, "prediction_type");
    check_one_of(c.timestep_spacing, {"leading", "trailing", "linspace"}, source, "timestep_spacing");
    check_one_of(c.variance_type, {"fixed_small", "fixed_small_log", "fixed_large"},
                 source, "variance_type");
    check_one_of(c.interpolation_type, {"linear", "log_linear"}, source, "interpolation_type");
    check_one_of(c.timestep_type, {"discrete", "continuous"}, source, "timestep_type");
    check_one_of(c.algorithm_type, {"dpmsolver++", "dpmsolver"}, source, "algorithm_type");
    check_one_of(c.solver_type, {"midpoint", "heun"}, source, "solver_type");
    check_one_of(c.final_sigmas_type, {"sigma_min"}, source, "final_sigmas_type");
    if (c.solver_order && (*c.solver_order < 1 || *c.solver_order > 3))
        throw Error(where(source, "solver_order") + " must be 1, 2 or 3");
    if (c.trained_betas) {
        if (c.trained_betas->size() != static_cast<size_t>(c.num_train_timesteps.value_or(1000)))
            throw Error(where(source, "trained_betas") + " must hold num_train_timesteps values");
        for (double b : *c.trained_betas)
            if (!(b > 0.0 && b < 1.0)) throw Error(where(source, "trained_betas") + " values must lie in (0, 1)");
    }
    if (c.beta_start && !(*c.beta_start > 0.0 && *c.beta_start < 1.0))
        throw Error(where(source, "beta_start") + " must lie in (0, 1)");
    if (c.beta_end && !(*c.beta_end > 0.0 && *c.beta_end < 1.0))
        throw Error(where(source, "beta_end") + " must lie in (0, 1)");
    if (c.steps_offset && (*c.steps_offset < 0 || *c.steps_offset > 100))
        throw Error(where(source, "steps_offset") + " must be between 0 and 100");
    return c;
}

SchedulerConfig SchedulerConfig::from_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open the scheduler config");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return from_json(parse_json_with_infinity(text, path), path);
}

SchedulerConfig SchedulerConfig::stable_diffusion_v1() {
    SchedulerConfig c;
    c.class_name = "PNDMScheduler";
    c.source = "<stable diffusion v1 defaults>";
    c.num_train_timesteps = 1000;
    c.beta_start = 0.00085;
    c.beta_end = 0.012;
    c.beta_schedule = "scaled_linear";
    c.clip_sample = false;
    c.set_alpha_to_one = false;
    c.skip_prk_steps = true;
    c.steps_offset = 1;
    return c;
}

json SchedulerConfig::to_json() const {
    json j = json::object();
    if (!class_name.empty()) j["_class_name"] = class_name;
    auto put = [&j](const char* key, const auto& v) {
        if (v) j[key] = *v;
    };
    put("num_train_timesteps", num_train_timesteps);
    put("beta_start", beta_start);
    put("beta_end", beta_end);
    put("beta_schedule", beta_schedule);
    put("trained_betas", trained_betas);
    put("prediction_type", prediction_type);
    put("timestep_spacing", timestep_spacing);
    put("steps_offset", steps_offset);
    put("set_alpha_to_one", set_alpha_to_one);
    put("clip_sample", clip_sample);
    put("clip_sample_range", clip_sample_range);
    put("thresholding", thresholding);
    put("dynamic_thresholding_ratio", dynamic_thresholding_ratio);
    put("sample_max_value", sample_max_value);
    put("skip_prk_steps", skip_prk_steps);
    put("variance_type", variance_type);
    put("rescale_betas_zero_snr", rescale_betas_zero_snr);
    put("use_karras_sigmas", use_karras_sigmas);
    put("interpolation_type", interpolation_type);
    put("timestep_type", timestep_type);
    put("sigma_min", sigma_min);
    put("sigma_max", sigma_max);
    put("solver_order", solver_order);
    put("algorithm_type", algorithm_type);
    put("solver_type", solver_type);
    put("lower_order_final", lower_order_final);
    put("euler_at_final", euler_at_final);
    put("use_lu_lambdas", use_lu_lambdas);
    if (lambda_min_clipped && std::isfinite(*lambda_min_clipped))
        j["lambda_min_clipped"] = *lambda_min_clipped;
    put("final_sigmas_type", final_sigmas_type);
    return j;
}

const std::vector<std::string>& sampler_names() {
    static const std::vector<std::string> names = {"ddim",      "pndm",           "euler",
                                                   "euler_karras", "euler_ancestral", "dpmpp_2m",
                                                   "dpmpp_2m_karras", "ddpm"};
    return names;
}

std::string default_sampler_for(const SchedulerConfig& config) {
    const std::string& c = config.class_name;
    const bool karras = config.use_karras_sigmas.value_or(false);
    if (c.empty() || c == "PNDMScheduler") return "pndm";
    if (c == "DDIMScheduler") return "ddim";
    if (c == "DDPMScheduler") return "ddpm";
    if (c == "EulerDiscreteScheduler") return karras ? "euler_karras" : "euler";
    if (c == "EulerAncestralDiscreteScheduler") return "euler_ancestral";
    if (c == "DPMSolverMultistepScheduler") return karras ? "dpmpp_2m_karras" : "dpmpp_2m";
    return "euler";
}

}  // namespace kto
