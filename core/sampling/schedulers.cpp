// All scheduler classes in one translation unit (libtorch TUs are expensive to compile).
// Each mirrors the diffusers 0.25.1 class named in its comment, line for line where precision
// matters: float32 tensor arithmetic where diffusers uses torch, double where it uses numpy.
#include <cmath>
#include <limits>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>

#include "core/common/error.h"
#include "core/sampling/scheduler.h"

namespace kto {
namespace {

// numpy.linspace(start, stop, num) in float64: y[i] = i * step + start, last = stop exactly.
std::vector<double> np_linspace(double start, double stop, int num) {
    std::vector<double> y(static_cast<size_t>(std::max(num, 0)));
    if (num <= 0) return y;
    if (num == 1) {
        y[0] = start;
        return y;
    }
    const double delta = stop - start;
    const double step = delta / static_cast<double>(num - 1);
    for (int i = 0; i < num; ++i) y[static_cast<size_t>(i)] = static_cast<double>(i) * step + start;
    y.back() = stop;
    return y;
}

// numpy.round: round half to even.
double np_round(double v) { return std::nearbyint(v); }

// numpy.interp(x, arange(len(fp)), fp) for one x (fp float32 values promoted to double).
double np_interp(double x, const std::vector<double>& fp) {
    const int64_t n = static_cast<int64_t>(fp.size());
    if (x <= 0.0) return fp.front();
    if (x >= static_cast<double>(n - 1)) return fp.back();
    const int64_t j = static_cast<int64_t>(std::floor(x));
    const double slope = (fp[static_cast<size_t>(j + 1)] - fp[static_cast<size_t>(j)]) /
                         (static_cast<double>(j + 1) - static_cast<double>(j));
    double r = slope * (x - static_cast<double>(j)) + fp[static_cast<size_t>(j)];
    if (std::isnan(r)) r = slope * (x - static_cast<double>(j + 1)) + fp[static_cast<size_t>(j + 1)];
    return r;
}

std::vector<double> to_doubles(const torch::Tensor& t) {
    auto c = t.to(torch::kDouble).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

torch::Tensor f32_tensor(const std::vector<double>& v) {
    return torch::tensor(v, torch::kDouble).to(torch::kFloat32);
}

torch::Tensor i64_tensor(const std::vector<int64_t>& v) {
    return torch::tensor(v, torch::kLong);
}

// Karras et al. (2022) sigma ramp: (max^(1/7) + ramp (min^(1/7) - max^(1/7)))^7, ramp in [0, 1].
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n) {
    const double rho = 7.0;
    const auto ramp = np_linspace(0.0, 1.0, n);
    const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
    const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
    std::vector<double> s(ramp.size());
    for (size_t i = 0; i < ramp.size(); ++i)
        s[i] = std::pow(max_inv_rho + ramp[i] * (min_inv_rho - max_inv_rho), rho);
    return s;
}

// diffusers _sigma_to_t: fractional training timestep whose log-sigma matches, by linear
// interpolation in log-sigma space. log_sigmas holds float32 values (increasing with t). numpy
// 1.x value-based casting makes the scalar-with-float32-array parts float32, as mirrored here.
double sigma_to_t(double sigma, const std::vector<double>& log_sigmas) {
    const float log_sigma = static_cast<float>(std::log(std::max(sigma, 1e-10)));
    const int64_t n = static_cast<int64_t>(log_sigmas.size());
    // argmax of cumsum(dists >= 0): the last index whose log-sigma is <= log_sigma (0 if none).
    int64_t low = 0;
    for (int64_t i = 0; i < n; ++i)
        if (log_sigma - static_cast<float>(log_sigmas[static_cast<size_t>(i)]) >= 0.0f) low = i;
    low = std::min(low, n - 2);
    const int64_t high = low + 1;
    const float lo = static_cast<float>(log_sigmas[static_cast<size_t>(low)]);
    const float hi = static_cast<float>(log_sigmas[static_cast<size_t>(high)]);
    float w = (lo - log_sigma) / (lo - hi);
    w = std::min(std::max(w, 0.0f), 1.0f);
    return static_cast<double>(1.0f - w) * static_cast<double>(low) + static_cast<double>(w) * static_cast<double>(high);
}

// Float32 scalar arithmetic, as diffusers does on 0-dim float32 tensors.
float fsqrt(float v) { return std::sqrt(v); }

// sigmas[t] = sqrt((1 - acp) / acp) computed in float32 as the torch expression does.
std::vector<double> train_sigmas_f32(const torch::Tensor& alphas_cumprod) {
    return to_doubles(((1 - alphas_cumprod) / alphas_cumprod).pow(0.5));
}

std::string fmt(double v) {
    std::ostringstream os;
    os << v;
    return os.str();
}

// Dynamic thresholding (Imagen): clamps x0 per sample at its `ratio` quantile of |x0|.
torch::Tensor threshold_sample(const torch::Tensor& sample, double ratio, double max_value) {
    const auto dtype = sample.scalar_type();
    auto s = sample;
    if (dtype != torch::kFloat32 && dtype != torch::kDouble) s = s.to(torch::kFloat32);
    const auto sizes = s.sizes().vec();
    s = s.reshape({sizes[0], -1});
    auto q = torch::quantile(s.abs(), ratio, 1);
    q = torch::clamp(q, 1.0, max_value).unsqueeze(1);
    s = torch::max(torch::min(s, q), -q) / q;
    return s.reshape(sizes).to(dtype);
}

// Common config resolution shared by the classes.
struct Resolved {
    std::string spacing;
    int steps_offset = 0;
    std::string prediction_type;
};

Resolved resolve_common(const SchedulerConfig& c, const char* default_spacing) {
    Resolved r;
    r.spacing = c.timestep_spacing.value_or(default_spacing);
    r.steps_offset = c.steps_offset.value_or(0);
    r.prediction_type = c.prediction_type.value_or("epsilon");
    return r;
}

void check_steps(int n, int num_train, const std::string& who) {
    if (n < 1) throw Error(who + ": the number of inference steps must be at least 1 (got " + std::to_string(n) + ")");
    if (n > num_train)
        throw Error(who + ": " + std::to_string(n) + " inference steps exceed num_train_timesteps (" +
                    std::to_string(num_train) + ")");
}

// The integer grids of DDPM / DDIM (timesteps descending).
std::vector<int64_t> integer_grid(const std::string& spacing, int num_train, int n, int steps_offset) {
    std::vector<int64_t> ts;
    if (spacing == "linspace") {
        auto l = np_linspace(0.0, num_train - 1, n);
        for (auto it = l.rbegin(); it != l.rend(); ++it) ts.push_back(static_cast<int64_t>(np_round(*it)));
    } else if (spacing == "leading") {
        const int64_t ratio = num_train / n;
        for (int i = n - 1; i >= 0; --i) ts.push_back(static_cast<int64_t>(i) * ratio + steps_offset);
    } else {  // trailing: round(arange(T, 0, -T/n)) - 1
        const double ratio = static_cast<double>(num_train) / n;
        for (int64_t i = 0;; ++i) {
            const double v = static_cast<double>(num_train) - static_cast<double>(i) * ratio;
            if (!(v > 0.0)) break;
            ts.push_back(static_cast<int64_t>(np_round(v)) - 1);
        }
    }
    return ts;
}

// The float grids of the Euler family (timesteps descending, float32 values).
std::vector<double> float_grid(const std::string& spacing, int num_train, int n, int steps_offset) {
    std::vector<double> ts;
    if (spacing == "linspace") {
        auto l = np_linspace(0.0, num_train - 1, n);
        for (auto it = l.rbegin(); it != l.rend(); ++it) ts.push_back(static_cast<float>(*it));
    } else if (spacing == "leading") {
        const int64_t ratio = num_train / n;
        for (int i = n - 1; i >= 0; --i)
            ts.push_back(static_cast<float>(static_cast<float>(static_cast<double>(i) * ratio) +
                                            static_cast<float>(steps_offset)));
    } else {
        const double ratio = static_cast<double>(num_train) / n;
        for (int64_t i = 0;; ++i) {
            const double v = static_cast<double>(num_train) - static_cast<double>(i) * ratio;
            if (!(v > 0.0)) break;
            ts.push_back(static_cast<float>(static_cast<float>(np_round(v)) - 1.0f));
        }
    }
    return ts;
}

int64_t find_index(const torch::Tensor& timesteps, double t, bool second_if_repeated) {
    auto ts = to_doubles(timesteps);
    std::vector<int64_t> hits;
    for (size_t i = 0; i < ts.size(); ++i)
        if (ts[i] == t) hits.push_back(static_cast<int64_t>(i));
    if (hits.empty()) return -1;
    return (second_if_repeated && hits.size() > 1) ? hits[1] : hits[0];
}

torch::Tensor draw_noise(const StepNoise& noise, const torch::Tensor& like) {
    if (noise.noise.defined()) {
        if (noise.noise.sizes() != like.sizes())
            throw Error("scheduler step: injected noise has the wrong shape");
        return noise.noise.to(like.device(), like.scalar_type());
    }
    return randn_on_cpu(like.sizes(), noise.generator, like.device(), like.scalar_type());
}

// ---------------------------------------------------------------------------------------------
// DDPMScheduler
class DDPM final : public Scheduler {
public:
    explicit DDPM(const SchedulerConfig& c) {
        init_betas(c, true);
        r_ = resolve_common(c, "leading");
        prediction_type_ = r_.prediction_type;
        variance_type_ = c.variance_type.value_or("fixed_small");
        clip_sample_ = c.clip_sample.value_or(true);
        clip_range_ = c.clip_sample_range.value_or(1.0);
        thresholding_ = c.thresholding.value_or(false);
        thr_ratio_ = c.dynamic_thresholding_ratio.value_or(0.995);
        thr_max_ = c.sample_max_value.value_or(1.0);
        std::vector<int64_t> ts;
        for (int i = num_train_timesteps_ - 1; i >= 0; --i) ts.push_back(i);
        timesteps_ = i64_tensor(ts);
    }
    std::string name() const override { return "ddpm"; }
    std::string class_name() const override { return "DDPMScheduler"; }

    void set_timesteps(int n) override {
        check_steps(n, num_train_timesteps_, "ddpm");
        num_inference_steps_ = n;
        timesteps_ = i64_tensor(integer_grid(r_.spacing, num_train_timesteps_, n, r_.steps_offset));
    }
    torch::Tensor scale_model_input(const torch::Tensor& sample, double) override { return sample; }

    SchedulerStepOutput step(const torch::Tensor& model_output, double timestep, const torch::Tensor& sample,
                             const StepNoise& noise) override {
        const int64_t t = static_cast<int64_t>(timestep);
        check_t(t);
        const int64_t prev_t = previous_timestep(t);
        const float* acp = alphas_cumprod_.data_ptr<float>();
        const float alpha_prod_t = acp[t];
        const float alpha_prod_t_prev = prev_t >= 0 ? acp[prev_t] : 1.0f;
        const float beta_prod_t = 1.0f - alpha_prod_t;
        const float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;
        const float current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
        const float current_beta_t = 1.0f - current_alpha_t;

        torch::Tensor x0;
        if (prediction_type_ == "epsilon")
            x0 = (sample - fsqrt(beta_prod_t) * model_output) / fsqrt(alpha_prod_t);
        else if (prediction_type_ == "sample")
            x0 = model_output;
        else
            x0 = fsqrt(alpha_prod_t) * sample - fsqrt(beta_prod_t) * model_output;
        if (thresholding_)
            x0 = threshold_sample(x0, thr_ratio_, thr_max_);
        else if (clip_sample_)
            x0 = x0.clamp(-clip_range_, clip_range_);

        const float x0_coeff = (fsqrt(alpha_prod_t_prev) * current_beta_t) / beta_prod_t;
        const float cur_coeff = fsqrt(current_alpha_t) * beta_prod_t_prev / beta_prod_t;
        auto prev = x0_coeff * x0 + cur_coeff * sample;
        if (t > 0) {
            auto z = draw_noise(noise, model_output);
            float var = variance(t, prev_t);
            if (variance_type_ == "fixed_small_log") {
                prev = prev + var * z;
            } else {
                prev = prev + fsqrt(var) * z;
            }
        }
        return {prev, x0};
    }

private:
    void check_t(int64_t t) const {
        if (t < 0 || t >= num_train_timesteps_)
            throw Error("ddpm: timestep " + std::to_string(t) + " is outside [0, num_train_timesteps)");
    }
    int64_t previous_timestep(int64_t t) const {
        const int n = num_inference_steps_ ? num_inference_steps_ : num_train_timesteps_;
        return t - num_train_timesteps_ / n;
    }
    // _get_variance: the posterior variance beta~_t (clamped), per variance_type.
    float variance(int64_t t, int64_t prev_t) const {
        const float* acp = alphas_cumprod_.data_ptr<float>();
        const float alpha_prod_t = acp[t];
        const float alpha_prod_t_prev = prev_t >= 0 ? acp[prev_t] : 1.0f;
        const float current_beta_t = 1.0f - alpha_prod_t / alpha_prod_t_prev;
        float v = (1.0f - alpha_prod_t_prev) / (1.0f - alpha_prod_t) * current_beta_t;
        v = std::max(v, 1e-20f);
        if (variance_type_ == "fixed_small_log") return std::exp(0.5f * std::log(v));
        if (variance_type_ == "fixed_large") return current_beta_t;
        return v;
    }

    Resolved r_;
    std::string variance_type_;
    bool clip_sample_ = true;
    double clip_range_ = 1.0;
    bool thresholding_ = false;
    double thr_ratio_ = 0.995, thr_max_ = 1.0;
};

// ---------------------------------------------------------------------------------------------
// DDIMScheduler (eta = 0: deterministic)
class DDIM final : public Scheduler {
public:
    explicit DDIM(const SchedulerConfig& c) {
        init_betas(c, true);
        r_ = resolve_common(c, "leading");
        prediction_type_ = r_.prediction_type;
        clip_sample_ = c.clip_sample.value_or(true);
        clip_range_ = c.clip_sample_range.value_or(1.0);
        thresholding_ = c.thresholding.value_or(false);
        thr_ratio_ = c.dynamic_thresholding_ratio.value_or(0.995);
        thr_max_ = c.sample_max_value.value_or(1.0);
        final_alpha_cumprod_ = c.set_alpha_to_one.value_or(true) ? 1.0f : alphas_cumprod_[0].item<float>();
        std::vector<int64_t> ts;
        for (int i = num_train_timesteps_ - 1; i >= 0; --i) ts.push_back(i);
        timesteps_ = i64_tensor(ts);
    }
    std::string name() const override { return "ddim"; }
    std::string class_name() const override { return "DDIMScheduler"; }

    void set_timesteps(int n) override {
        check_steps(n, num_train_timesteps_, "ddim");
        num_inference_steps_ = n;
        timesteps_ = i64_tensor(integer_grid(r_.spacing, num_train_timesteps_, n, r_.steps_offset));
    }
    torch::Tensor scale_model_input(const torch::Tensor& sample, double) override { return sample; }

    SchedulerStepOutput step(const torch::Tensor& model_output, double timestep, const torch::Tensor& sample,
                             const StepNoise&) override {
        if (num_inference_steps_ == 0) throw Error("ddim: set_timesteps must be called before step");
        const int64_t t = static_cast<int64_t>(timestep);
        if (t < 0 || t >= num_train_timesteps_)
            throw Error("ddim: timestep " + std::to_string(t) + " is outside [0, num_train_timesteps)");
        const int64_t prev_t = t - num_train_timesteps_ / num_inference_steps_;
        const float* acp = alphas_cumprod_.data_ptr<float>();
        const float alpha_prod_t = acp[t];
        const float alpha_prod_t_prev = prev_t >= 0 ? acp[prev_t] : final_alpha_cumprod_;
        const float beta_prod_t = 1.0f - alpha_prod_t;

        torch::Tensor x0, eps;
        if (prediction_type_ == "epsilon") {
            x0 = (sample - fsqrt(beta_prod_t) * model_output) / fsqrt(alpha_prod_t);
            eps = model_output;
        } else if (prediction_type_ == "sample") {
            x0 = model_output;
            eps = (sample - fsqrt(alpha_prod_t) * x0) / fsqrt(beta_prod_t);
        } else {
            x0 = fsqrt(alpha_prod_t) * sample - fsqrt(beta_prod_t) * model_output;
            eps = fsqrt(alpha_prod_t) * model_output + fsqrt(beta_prod_t) * sample;
        }
        if (thresholding_)
            x0 = threshold_sample(x0, thr_ratio_, thr_max_);
        else if (clip_sample_)
            x0 = x0.clamp(-clip_range_, clip_range_);
        // eta = 0: std_dev_t = 0, so the direction term is sqrt(1 - acp_prev) eps.
        auto direction = fsqrt(1.0f - alpha_prod_t_prev) * eps;
        auto prev = fsqrt(alpha_prod_t_prev) * x0 + direction;
        return {prev, x0};
    }

private:
    Resolved r_;
    bool clip_sample_ = true;
    double clip_range_ = 1.0;
    bool thresholding_ = false;
    double thr_ratio_ = 0.995, thr_max_ = 1.0;
    float final_alpha_cumprod_ = 1.0f;
};

// ---------------------------------------------------------------------------------------------
// PNDMScheduler (pseudo numerical methods: Runge-Kutta warm-up unless skip_prk_steps, then PLMS)
class PNDM final : public Scheduler {
public:
    explicit PNDM(const SchedulerConfig& c) {
        init_betas(c, false);
        r_ = resolve_common(c, "leading");
        prediction_type_ = r_.prediction_type;
        if (prediction_type_ == "sample")
            throw Error(c.source + ": pndm supports prediction_type epsilon or v_prediction, not 'sample'");
        skip_prk_ = c.skip_prk_steps.value_or(false);
        final_alpha_cumprod_ = c.set_alpha_to_one.value_or(false) ? 1.0f : alphas_cumprod_[0].item<float>();
        std::vector<int64_t> ts;
        for (int i = num_train_timesteps_ - 1; i >= 0; --i) ts.push_back(i);
        timesteps_ = i64_tensor(ts);
    }
    std::string name() const override { return "pndm"; }
    std::string class_name() const override { return "PNDMScheduler"; }

    void set_timesteps(int n) override {
        check_steps(n, num_train_timesteps_, "pndm");
        num_inference_steps_ = n;
        const int T = num_train_timesteps_;
        std::vector<int64_t> base;  // ascending
        if (r_.spacing == "linspace") {
            for (double v : np_linspace(0.0, T - 1, n)) base.push_back(static_cast<int64_t>(np_round(v)));
        } else if (r_.spacing == "leading") {
            const int64_t ratio = T / n;
            for (int i = 0; i < n; ++i) base.push_back(static_cast<int64_t>(i) * ratio + r_.steps_offset);
        } else {
            auto desc = integer_grid("trailing", T, n, 0);
            base.assign(desc.rbegin(), desc.rend());
        }
        prk_.clear();
        plms_.clear();
        if (skip_prk_) {
            // concat(ts[:-1], ts[-2:-1], ts[-1:]) reversed: the second-to-last entry repeats.
            std::vector<int64_t> v(base.begin(), base.end() - 1);
            if (base.size() >= 2) v.push_back(base[base.size() - 2]);
            v.push_back(base.back());
            plms_.assign(v.rbegin(), v.rend());
        } else {
            if (n < 4) throw Error("pndm: the Runge-Kutta warm-up needs at least 4 steps (or skip_prk_steps)");
            const int64_t half = T / n / 2;
            std::vector<int64_t> prk;  // repeat(ts[-4:], 2) + tile([0, half], 4)
            for (size_t i = base.size() - 4; i < base.size(); ++i) {
                prk.push_back(base[i]);
                prk.push_back(base[i] + half);
            }
            std::vector<int64_t> rep;  // prk[:-1].repeat(2)[1:-1]
            for (size_t i = 0; i + 1 < prk.size(); ++i) {
                rep.push_back(prk[i]);
                rep.push_back(prk[i]);
            }
            std::vector<int64_t> mid(rep.begin() + 1, rep.end() - 1);
            prk_.assign(mid.rbegin(), mid.rend());
            std::vector<int64_t> pl(base.begin(), base.end() - 3);
            plms_.assign(pl.rbegin(), pl.rend());
        }
        std::vector<int64_t> all = prk_;
        all.insert(all.end(), plms_.begin(), plms_.end());
        timesteps_ = i64_tensor(all);
        ets_.clear();
        counter_ = 0;
        cur_model_output_ = torch::Tensor();
        cur_sample_ = torch::Tensor();
    }
    torch::Tensor scale_model_input(const torch::Tensor& sample, double) override { return sample; }

    SchedulerStepOutput step(const torch::Tensor& model_output, double timestep, const torch::Tensor& sample,
                             const StepNoise&) override {
        if (num_inference_steps_ == 0) throw Error("pndm: set_timesteps must be called before step");
        const int64_t t = static_cast<int64_t>(timestep);
        if (counter_ < static_cast<int64_t>(prk_.size()) && !skip_prk_) return {step_prk(model_output, t, sample), {}};
        return {step_plms(model_output, t, sample), {}};
    }

private:
    torch::Tensor step_prk(const torch::Tensor& model_output, int64_t timestep, const torch::Tensor& sample) {
        const int64_t diff_to_prev = (counter_ % 2) ? 0 : num_train_timesteps_ / num_inference_steps_ / 2;
        const int64_t prev_t = timestep - diff_to_prev;
        timestep = prk_[static_cast<size_t>(counter_ / 4 * 4)];
        torch::Tensor mo = model_output;
        auto add = [this](const torch::Tensor& v) {
            cur_model_output_ = cur_model_output_.defined() ? cur_model_output_ + v : v;
        };
        if (counter_ % 4 == 0) {
            add((1.0 / 6.0) * model_output);
            ets_.push_back(model_output);
            cur_sample_ = sample;
        } else if ((counter_ - 1) % 4 == 0 || (counter_ - 2) % 4 == 0) {
            add((1.0 / 3.0) * model_output);
        } else {
            mo = cur_model_output_ + (1.0 / 6.0) * model_output;
            cur_model_output_ = torch::Tensor();
        }
        auto cur = cur_sample_.defined() ? cur_sample_ : sample;
        auto prev = prev_sample(cur, timestep, prev_t, mo);
        ++counter_;
        return prev;
    }

    torch::Tensor step_plms(const torch::Tensor& model_output, int64_t timestep, const torch::Tensor& sample) {
        if (!skip_prk_ && ets_.size() < 3)
            throw Error("pndm: PLMS needs the Runge-Kutta warm-up steps first");
        const int64_t stride = num_train_timesteps_ / num_inference_steps_;
        int64_t prev_t = timestep - stride;
        if (counter_ != 1) {
            if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
            ets_.push_back(model_output);
        } else {
            prev_t = timestep;
            timestep = timestep + stride;
        }
        torch::Tensor mo = model_output;
        torch::Tensor smp = sample;
        const size_t k = ets_.size();
        if (k == 1 && counter_ == 0) {
            cur_sample_ = sample;
        } else if (k == 1 && counter_ == 1) {
            mo = (model_output + ets_.back()) / 2;
            smp = cur_sample_;
            cur_sample_ = torch::Tensor();
        } else if (k == 2) {
            mo = (3 * ets_[k - 1] - ets_[k - 2]) / 2;
        } else if (k == 3) {
            mo = (23 * ets_[k - 1] - 16 * ets_[k - 2] + 5 * ets_[k - 3]) / 12;
        } else {
            mo = (1.0 / 24.0) * (55 * ets_[k - 1] - 59 * ets_[k - 2] + 37 * ets_[k - 3] - 9 * ets_[k - 4]);
        }
        auto prev = prev_sample(smp, timestep, prev_t, mo);
        ++counter_;
        return prev;
    }

    // Formula (9) of the PNDM paper: x_{t-d} from x_t and the (combined) noise estimate.
    torch::Tensor prev_sample(const torch::Tensor& sample, int64_t t, int64_t prev_t, torch::Tensor model_output) const {
        if (t < 0 || t >= num_train_timesteps_)
            throw Error("pndm: timestep " + std::to_string(t) + " is outside [0, num_train_timesteps)");
        const float* acp = alphas_cumprod_.data_ptr<float>();
        const float alpha_prod_t = acp[t];
        const float alpha_prod_t_prev = prev_t >= 0 ? acp[prev_t] : final_alpha_cumprod_;
        const float beta_prod_t = 1.0f - alpha_prod_t;
        const float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;
        if (prediction_type_ == "v_prediction")
            model_output = fsqrt(alpha_prod_t) * model_output + fsqrt(beta_prod_t) * sample;
        const float sample_coeff = fsqrt(alpha_prod_t_prev / alpha_prod_t);
        const float denom = alpha_prod_t * fsqrt(beta_prod_t_prev) + fsqrt(alpha_prod_t * beta_prod_t * alpha_prod_t_prev);
        return sample_coeff * sample - (alpha_prod_t_prev - alpha_prod_t) * model_output / denom;
    }

    Resolved r_;
    bool skip_prk_ = false;
    float final_alpha_cumprod_ = 1.0f;
    std::vector<int64_t> prk_, plms_;
    std::vector<torch::Tensor> ets_;
    int64_t counter_ = 0;
    torch::Tensor cur_model_output_, cur_sample_;
};

// ---------------------------------------------------------------------------------------------
// Shared by EulerDiscreteScheduler and EulerAncestralDiscreteScheduler.
class EulerBase : public Scheduler {
public:
    double init_noise_sigma() const override {
        const float max_sigma = sigmas_.max().item<float>();
        if (r_.spacing == "linspace" || r_.spacing == "trailing") return max_sigma;
        return fsqrt(max_sigma * max_sigma + 1.0f);
    }
    torch::Tensor scale_model_input(const torch::Tensor& sample, double timestep) override {
        if (step_index_ < 0) init_step_index(timestep);
        const float sigma = sigma_at(step_index_);
        return sample / fsqrt(sigma * sigma + 1.0f);
    }

protected:
    void init_step_index(double timestep) {
        step_index_ = find_index(timesteps_, timestep, true);
        if (step_index_ < 0)
            throw Error(name() + ": timestep " + fmt(timestep) + " is not one of the scheduler's timesteps");
    }
    float sigma_at(int64_t i) const {
        if (i < 0 || i >= sigmas_.size(0)) throw Error(name() + ": stepped past the last timestep");
        return sigmas_.data_ptr<float>()[i];
    }
    Resolved r_;
    int64_t step_index_ = -1;
};

// EulerDiscreteScheduler (optionally with Karras sigmas)
class Euler final : public EulerBase {
public:
    Euler(const SchedulerConfig& c, bool karras) : karras_(karras) {
        init_betas(c, true);
        r_ = resolve_common(c, "linspace");
        prediction_type_ = r_.prediction_type;
        interpolation_ = c.interpolation_type.value_or("linear");
        timestep_type_ = c.timestep_type.value_or("discrete");
        sigma_min_ = c.sigma_min;
        sigma_max_ = c.sigma_max;
        if (c.rescale_betas_zero_snr.value_or(false))
            alphas_cumprod_[num_train_timesteps_ - 1] = std::pow(2.0, -24);  // avoid infinite sigma
        // Initial (training) grid: sigmas reversed plus a final 0, timesteps T-1..0.
        auto sig = ((1 - alphas_cumprod_) / alphas_cumprod_).pow(0.5).flip(0);
        std::vector<double> ts;
        for (int i = num_train_timesteps_ - 1; i >= 0; --i) ts.push_back(i);
        if (timestep_type_ == "continuous" && prediction_type_ == "v_prediction")
            timesteps_ = 0.25 * sig.log();
        else
            timesteps_ = f32_tensor(ts);
        sigmas_ = torch::cat({sig, torch::zeros({1})});
    }
    std::string name() const override { return karras_ ? "euler_karras" : "euler"; }
    std::string class_name() const override { return "EulerDiscreteScheduler"; }

    void set_timesteps(int n) override {
        check_steps(n, num_train_timesteps_, name());
        num_inference_steps_ = n;
        auto ts = float_grid(r_.spacing, num_train_timesteps_, n, r_.steps_offset);
        const auto train_sig = train_sigmas_f32(alphas_cumprod_);
        std::vector<double> log_sigmas(train_sig.size());
        for (size_t i = 0; i < train_sig.size(); ++i)
            log_sigmas[i] = static_cast<float>(std::log(static_cast<float>(train_sig[i])));
        torch::Tensor sig;
        std::vector<double> s;
        if (interpolation_ == "linear") {
            for (double t : ts) s.push_back(np_interp(t, train_sig));
        } else {
            auto l = torch::linspace(static_cast<double>(static_cast<float>(std::log(static_cast<float>(train_sig.back())))),
                                     static_cast<double>(static_cast<float>(std::log(static_cast<float>(train_sig.front())))),
                                     n + 1)
                         .exp();
            s = to_doubles(l);
        }
        if (karras_) {
            const double smin = sigma_min_ ? *sigma_min_ : s.back();
            const double smax = sigma_max_ ? *sigma_max_ : s.front();
            s = karras_sigmas(smin, smax, n);
            ts.clear();
            for (double v : s) ts.push_back(sigma_to_t(v, log_sigmas));
        }
        sig = f32_tensor(s);
        if (timestep_type_ == "continuous" && prediction_type_ == "v_prediction")
            timesteps_ = 0.25 * sig.log();
        else
            timesteps_ = f32_tensor(ts);
        sigmas_ = torch::cat({sig, torch::zeros({1})});
        step_index_ = -1;
    }

    SchedulerStepOutput step(const torch::Tensor& model_output, double timestep, const torch::Tensor& sample_in,
                             const StepNoise&) override {
        if (num_inference_steps_ == 0) throw Error(name() + ": set_timesteps must be called before step");
        if (step_index_ < 0) init_step_index(timestep);
        const float sigma = sigma_at(step_index_);
        // s_churn = 0 (the pipeline default): gamma = 0, no noise is added, sigma_hat = sigma.
        const float sigma_hat = sigma;
        auto sample = sample_in.to(torch::kFloat32);
        torch::Tensor x0;
        if (prediction_type_ == "sample")
            x0 = model_output;
        else if (prediction_type_ == "epsilon")
            x0 = sample - sigma_hat * model_output;
        else
            x0 = model_output * (-sigma / fsqrt(sigma * sigma + 1.0f)) + (sample / (sigma * sigma + 1.0f));
        auto derivative = (sample - x0) / sigma_hat;
        const float dt = sigma_at(step_index_ + 1) - sigma_hat;
        auto prev = (sample + derivative * dt).to(model_output.scalar_type());
        ++step_index_;
        return {prev, x0};
    }

private:
    bool karras_ = false;
    std::string interpolation_, timestep_type_;
    std::optional<double> sigma_min_, sigma_max_;
};

// EulerAncestralDiscreteScheduler
class EulerAncestral final : public EulerBase {
public:
    explicit EulerAncestral(const SchedulerConfig& c) {
        init_betas(c, true);
        r_ = resolve_common(c, "linspace");
        prediction_type_ = r_.prediction_type;
        if (prediction_type_ == "sample")
            throw Error(c.source + ": euler_ancestral supports prediction_type epsilon or v_prediction, not 'sample'");
        if (c.rescale_betas_zero_snr.value_or(false))
            alphas_cumprod_[num_train_timesteps_ - 1] = std::pow(2.0, -24);
        auto sig = train_sigmas_f32(alphas_cumprod_);
        std::vector<double> rev(sig.rbegin(), sig.rend());
        rev.push_back(0.0);
        sigmas_ = f32_tensor(rev);
        std::vector<double> ts;
        for (int i = num_train_timesteps_ - 1; i >= 0; --i) ts.push_back(i);
        timesteps_ = f32_tensor(ts);
    }
    std::string name() const override { return "euler_ancestral"; }
    std::string class_name() const override { return "EulerAncestralDiscreteScheduler"; }

    void set_timesteps(int n) override {
        check_steps(n, num_train_timesteps_, name());
        num_inference_steps_ = n;
        auto ts = float_grid(r_.spacing, num_train_timesteps_, n, r_.steps_offset);
        const auto train_sig = train_sigmas_f32(alphas_cumprod_);
        std::vector<double> s;
        for (double t : ts) s.push_back(np_interp(t, train_sig));
        s.push_back(0.0);
        sigmas_ = f32_tensor(s);
        timesteps_ = f32_tensor(ts);
        step_index_ = -1;
    }

    SchedulerStepOutput step(const torch::Tensor& model_output, double timestep, const torch::Tensor& sample_in,
                             const StepNoise& noise) override {
        if (num_inference_steps_ == 0) throw Error(name() + ": set_timesteps must be called before step");
        if (step_index_ < 0) init_step_index(timestep);
        const float sigma = sigma_at(step_index_);
        auto sample = sample_in.to(torch::kFloat32);
        torch::Tensor x0;
        if (prediction_type_ == "epsilon")
            x0 = sample - sigma * model_output;
        else
            x0 = model_output * (-sigma / fsqrt(sigma * sigma + 1.0f)) + (sample / (sigma * sigma + 1.0f));
        const float sigma_from = sigma;
        const float sigma_to = sigma_at(step_index_ + 1);
        const float sigma_up = fsqrt(sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) /
                                     (sigma_from * sigma_from));
        const float sigma_down = fsqrt(sigma_to * sigma_to - sigma_up * sigma_up);
        auto derivative = (sample - x0) / sigma;
        const float dt = sigma_down - sigma;
        auto prev = sample + derivative * dt;
        auto z = draw_noise(noise, model_output);
        prev = (prev + z * sigma_up).to(model_output.scalar_type());
        ++step_index_;
        return {prev, x0};
    }
};

// ---------------------------------------------------------------------------------------------
// DPMSolverMultistepScheduler (DPM-Solver++ by default; orders 1-3; optional Karras sigmas)
class DPMSolverMultistep final : public Scheduler {
public:
    DPMSolverMultistep(const SchedulerConfig& c, bool karras) : karras_(karras) {
        init_betas(c, true);
        // As diffusers: close to 0 without being 0, so the first sigma and lambda stay finite.
        if (c.rescale_betas_zero_snr.value_or(false))
            alphas_cumprod_[num_train_timesteps_ - 1] = std::pow(2.0, -24);
        r_ = resolve_common(c, "linspace");
        prediction_type_ = r_.prediction_type;
        order_ = c.solver_order.value_or(2);
        algorithm_ = c.algorithm_type.value_or("dpmsolver++");
        solver_type_ = c.solver_type.value_or("midpoint");
        lower_order_final_ = c.lower_order_final.value_or(true);
        euler_at_final_ = c.euler_at_final.value_or(false);
        lambda_min_clipped_ = c.lambda_min_clipped.value_or(-std::numeric_limits<double>::infinity());
        thresholding_ = c.thresholding.value_or(false);
        thr_ratio_ = c.dynamic_thresholding_ratio.value_or(0.995);
        thr_max_ = c.sample_max_value.value_or(1.0);
        if (c.use_lu_lambdas.value_or(false))
            throw Error(c.source + ": 'use_lu_lambdas' is not supported by this DPM-Solver implementation");
        auto alpha_t = alphas_cumprod_.sqrt();
        auto sigma_t = (1 - alphas_cumprod_).sqrt();
        lambda_t_ = alpha_t.log() - sigma_t.log();
        sigmas_ = ((1 - alphas_cumprod_) / alphas_cumprod_).pow(0.5);
        std::vector<double> ts;
        for (int i = num_train_timesteps_ - 1; i >= 0; --i) ts.push_back(i);
        timesteps_ = f32_tensor(ts);
    }
    std::string name() const override { return karras_ ? "dpmpp_2m_karras" : "dpmpp_2m"; }
    std::string class_name() const override { return "DPMSolverMultistepScheduler"; }

    void set_timesteps(int n) override {
        check_steps(n, num_train_timesteps_, name());
        const int T = num_train_timesteps_;
        // Clip the smallest lambdas (numerical stability): searchsorted over flipped lambda_t.
        auto flipped = to_doubles(lambda_t_.flip(0));
        int64_t clipped_idx = 0;
        while (clipped_idx < static_cast<int64_t>(flipped.size()) &&
               flipped[static_cast<size_t>(clipped_idx)] < static_cast<float>(lambda_min_clipped_))
            ++clipped_idx;
        const int64_t last_timestep = T - clipped_idx;
        std::vector<double> ts;
        if (r_.spacing == "linspace") {
            auto l = np_linspace(0.0, static_cast<double>(last_timestep - 1), n + 1);
            for (int i = n; i >= 1; --i) ts.push_back(np_round(l[static_cast<size_t>(i)]));
        } else if (r_.spacing == "leading") {
            const int64_t ratio = last_timestep / (n + 1);
            for (int i = n; i >= 1; --i) ts.push_back(static_cast<double>(i * ratio + r_.steps_offset));
        } else {
            const double ratio = static_cast<double>(T) / n;
            for (int64_t i = 0;; ++i) {
                const double v = static_cast<double>(last_timestep) - static_cast<double>(i) * ratio;
                if (!(v > 0.0)) break;
                ts.push_back(np_round(v) - 1.0);
            }
        }
        const auto train_sig = train_sigmas_f32(alphas_cumprod_);
        std::vector<double> s;
        if (karras_) {
            std::vector<double> log_sigmas(train_sig.size());
            for (size_t i = 0; i < train_sig.size(); ++i)
                log_sigmas[i] = static_cast<float>(std::log(static_cast<float>(train_sig[i])));
            s = karras_sigmas(train_sig.front(), train_sig.back(), n);
            ts.clear();
            for (double v : s) ts.push_back(np_round(sigma_to_t(v, log_sigmas)));
            s.push_back(s.back());
        } else {
            for (double t : ts) s.push_back(np_interp(t, train_sig));
            s.push_back(train_sig.front());
        }
        sigmas_ = f32_tensor(s);
        std::vector<int64_t> its;
        for (double t : ts) its.push_back(static_cast<int64_t>(t));
        timesteps_ = i64_tensor(its);
        num_inference_steps_ = static_cast<int>(its.size());
        model_outputs_.assign(static_cast<size_t>(order_), torch::Tensor());
        lower_order_nums_ = 0;
        step_index_ = -1;
    }

    torch::Tensor scale_model_input(const torch::Tensor& sample, double) override { return sample; }

    SchedulerStepOutput step(const torch::Tensor& model_output, double timestep, const torch::Tensor& sample,
                             const StepNoise&) override {
        if (num_inference_steps_ == 0) throw Error(name() + ": set_timesteps must be called before step");
        if (step_index_ < 0) {
            step_index_ = find_index(timesteps_, timestep, true);
            if (step_index_ < 0) step_index_ = timesteps_.size(0) - 1;
        }
        const int64_t n = timesteps_.size(0);
        if (step_index_ >= n) throw Error(name() + ": stepped past the last timestep");
        const bool lower_final =
            step_index_ == n - 1 && (euler_at_final_ || (lower_order_final_ && n < 15));
        const bool lower_second = step_index_ == n - 2 && lower_order_final_ && n < 15;

        auto converted = convert_model_output(model_output, sample);
        for (int i = 0; i + 1 < order_; ++i) model_outputs_[static_cast<size_t>(i)] = model_outputs_[static_cast<size_t>(i + 1)];
        model_outputs_.back() = converted;

        torch::Tensor prev;
        if (order_ == 1 || lower_order_nums_ < 1 || lower_final)
            prev = first_order(converted, sample);
        else if (order_ == 2 || lower_order_nums_ < 2 || lower_second)
            prev = second_order(sample);
        else
            prev = third_order(sample);
        if (lower_order_nums_ < order_) ++lower_order_nums_;
        ++step_index_;
        return {prev, {}};
    }

private:
    float sigma(int64_t i) const { return sigmas_.data_ptr<float>()[i]; }
    // alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t (VP parameterisation).
    static std::pair<float, float> alpha_sigma(float s) {
        const float a = 1.0f / fsqrt(s * s + 1.0f);
        return {a, s * a};
    }
    static float lambda(std::pair<float, float> as) { return std::log(as.first) - std::log(as.second); }

    torch::Tensor convert_model_output(const torch::Tensor& model_output, const torch::Tensor& sample) const {
        const auto [alpha_t, sigma_t] = alpha_sigma(sigma(step_index_));
        if (algorithm_ == "dpmsolver++") {
            torch::Tensor x0;
            if (prediction_type_ == "epsilon")
                x0 = (sample - sigma_t * model_output) / alpha_t;
            else if (prediction_type_ == "sample")
                x0 = model_output;
            else
                x0 = alpha_t * sample - sigma_t * model_output;
            if (thresholding_) x0 = threshold_sample(x0, thr_ratio_, thr_max_);
            return x0;
        }
        // dpmsolver: works on the noise prediction.
        if (prediction_type_ == "epsilon") return model_output;
        if (prediction_type_ == "sample") return (sample - alpha_t * model_output) / sigma_t;
        return alpha_t * model_output + sigma_t * sample;
    }

    torch::Tensor first_order(const torch::Tensor& m, const torch::Tensor& sample) const {
        const auto t = alpha_sigma(sigma(step_index_ + 1));
        const auto s = alpha_sigma(sigma(step_index_));
        const float h = lambda(t) - lambda(s);
        if (algorithm_ == "dpmsolver++")
            return (t.second / s.second) * sample - (t.first * (std::exp(-h) - 1.0f)) * m;
        return (t.first / s.first) * sample - (t.second * (std::exp(h) - 1.0f)) * m;
    }

    torch::Tensor second_order(const torch::Tensor& sample) const {
        const auto t = alpha_sigma(sigma(step_index_ + 1));
        const auto s0 = alpha_sigma(sigma(step_index_));
        const auto s1 = alpha_sigma(sigma(step_index_ - 1));
        const float lt = lambda(t), l0 = lambda(s0), l1 = lambda(s1);
        const auto& m0 = model_outputs_[model_outputs_.size() - 1];
        const auto& m1 = model_outputs_[model_outputs_.size() - 2];
        const float h = lt - l0, h0 = l0 - l1;
        const float r0 = h0 / h;
        const auto& D0 = m0;
        auto D1 = (1.0f / r0) * (m0 - m1);
        const float alpha_t = t.first, sigma_t = t.second;
        if (algorithm_ == "dpmsolver++") {
            const float e = std::exp(-h) - 1.0f;
            if (solver_type_ == "midpoint")
                return (sigma_t / s0.second) * sample - (alpha_t * e) * D0 - 0.5f * (alpha_t * e) * D1;
            return (sigma_t / s0.second) * sample - (alpha_t * e) * D0 + (alpha_t * (e / h + 1.0f)) * D1;
        }
        const float e = std::exp(h) - 1.0f;
        if (solver_type_ == "midpoint")
            return (alpha_t / s0.first) * sample - (sigma_t * e) * D0 - 0.5f * (sigma_t * e) * D1;
        return (alpha_t / s0.first) * sample - (sigma_t * e) * D0 - (sigma_t * (e / h - 1.0f)) * D1;
    }

    torch::Tensor third_order(const torch::Tensor& sample) const {
        const auto t = alpha_sigma(sigma(step_index_ + 1));
        const auto s0 = alpha_sigma(sigma(step_index_));
        const auto s1 = alpha_sigma(sigma(step_index_ - 1));
        const auto s2 = alpha_sigma(sigma(step_index_ - 2));
        const float lt = lambda(t), l0 = lambda(s0), l1 = lambda(s1), l2 = lambda(s2);
        const size_t k = model_outputs_.size();
        const auto& m0 = model_outputs_[k - 1];
        const auto& m1 = model_outputs_[k - 2];
        const auto& m2 = model_outputs_[k - 3];
        const float h = lt - l0, h0 = l0 - l1, h1 = l1 - l2;
        const float r0 = h0 / h, r1 = h1 / h;
        const auto& D0 = m0;
        auto D1_0 = (1.0f / r0) * (m0 - m1);
        auto D1_1 = (1.0f / r1) * (m1 - m2);
        auto D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1);
        auto D2 = (1.0f / (r0 + r1)) * (D1_0 - D1_1);
        const float alpha_t = t.first, sigma_t = t.second;
        if (algorithm_ == "dpmsolver++") {
            const float e = std::exp(-h) - 1.0f;
            return (sigma_t / s0.second) * sample - (alpha_t * e) * D0 + (alpha_t * (e / h + 1.0f)) * D1 -
                   (alpha_t * ((e + h) / (h * h) - 0.5f)) * D2;
        }
        const float e = std::exp(h) - 1.0f;
        return (alpha_t / s0.first) * sample - (sigma_t * e) * D0 - (sigma_t * (e / h - 1.0f)) * D1 -
               (sigma_t * ((e - h) / (h * h) - 0.5f)) * D2;
    }

    bool karras_ = false;
    Resolved r_;
    int order_ = 2;
    std::string algorithm_, solver_type_;
    bool lower_order_final_ = true, euler_at_final_ = false;
    double lambda_min_clipped_ = 0;
    bool thresholding_ = false;
    double thr_ratio_ = 0.995, thr_max_ = 1.0;
    torch::Tensor lambda_t_;
    std::vector<torch::Tensor> model_outputs_;
    int lower_order_nums_ = 0;
    int64_t step_index_ = -1;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

torch::Tensor randn_on_cpu(at::IntArrayRef shape, at::Generator* generator, torch::Device device,
                           torch::Dtype dtype) {
    torch::Tensor z;
    auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCPU);
    if (generator)
        z = torch::randn(shape, *generator, opts);
    else
        z = torch::randn(shape, opts);
    return z.to(device, dtype);
}

at::Generator make_cpu_generator(uint64_t seed) {
    return at::detail::createCPUGenerator(seed);
}

void Scheduler::init_betas(const SchedulerConfig& c, bool allow_zero_snr) {
    num_train_timesteps_ = c.num_train_timesteps.value_or(1000);
    const int T = num_train_timesteps_;
    const double beta_start = c.beta_start.value_or(0.0001);
    const double beta_end = c.beta_end.value_or(0.02);
    const std::string schedule = c.beta_schedule.value_or("linear");
    if (c.trained_betas) {
        if (static_cast<int>(c.trained_betas->size()) != T)
            throw Error(c.source + ": 'trained_betas' must hold num_train_timesteps values");
        betas_ = f32_tensor(*c.trained_betas);
    } else if (schedule == "linear") {
        betas_ = torch::linspace(beta_start, beta_end, T, torch::kFloat32);
    } else if (schedule == "scaled_linear") {
        betas_ = torch::linspace(std::sqrt(beta_start), std::sqrt(beta_end), T, torch::kFloat32).pow(2);
    } else {  // squaredcos_cap_v2: Glide cosine schedule, betas from alpha_bar(t) (max 0.999)
        auto alpha_bar = [](double t) {
            const double v = std::cos((t + 0.008) / 1.008 * 3.14159265358979323846 / 2);
            return v * v;
        };
        std::vector<double> b;
        for (int i = 0; i < T; ++i) {
            const double t1 = static_cast<double>(i) / T, t2 = static_cast<double>(i + 1) / T;
            b.push_back(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
        }
        betas_ = f32_tensor(b);
    }
    if (c.rescale_betas_zero_snr.value_or(false)) {
        if (!allow_zero_snr)
            throw Error(c.source + ": 'rescale_betas_zero_snr' is not supported by this scheduler class (diffusers "
                        "has no such option for it); choose another sampler, such as ddim, euler or dpmpp_2m");
        // Lin et al. 2023, Algorithm 1: shift/scale sqrt(alpha_bar) so the last step has zero SNR.
        auto alphas = 1.0 - betas_;
        auto abs = torch::cumprod(alphas, 0).sqrt();
        auto a0 = abs[0].clone();
        auto aT = abs[T - 1].clone();
        abs = (abs - aT) * (a0 / (a0 - aT));
        auto ab = abs.pow(2);
        auto a = torch::cat({ab.slice(0, 0, 1), ab.slice(0, 1) / ab.slice(0, 0, T - 1)});
        betas_ = 1 - a;
    }
    alphas_cumprod_ = torch::cumprod(1.0 - betas_, 0);
    prediction_type_ = c.prediction_type.value_or("epsilon");
}

namespace {
std::pair<torch::Tensor, torch::Tensor> sqrt_alpha_terms(const torch::Tensor& alphas_cumprod,
                                                          const torch::Tensor& original, const torch::Tensor& timesteps,
                                                          int num_train) {
    auto t = timesteps.to(torch::kCPU).to(torch::kLong).flatten();
    if (t.numel() > 0 && (t.min().item<int64_t>() < 0 || t.max().item<int64_t>() >= num_train))
        throw Error("add_noise: timesteps must lie in [0, num_train_timesteps)");
    auto acp = alphas_cumprod.to(original.scalar_type()).index_select(0, t).to(original.device());
    auto sa = acp.pow(0.5).flatten();
    auto so = (1 - acp).pow(0.5).flatten();
    while (sa.dim() < original.dim()) {
        sa = sa.unsqueeze(-1);
        so = so.unsqueeze(-1);
    }
    return {sa, so};
}
}  // namespace

torch::Tensor Scheduler::add_noise(const torch::Tensor& original_samples, const torch::Tensor& noise,
                                   const torch::Tensor& timesteps) const {
    auto [sa, so] = sqrt_alpha_terms(alphas_cumprod_, original_samples, timesteps, num_train_timesteps_);
    return sa * original_samples + so * noise;
}

torch::Tensor Scheduler::get_velocity(const torch::Tensor& sample, const torch::Tensor& noise,
                                      const torch::Tensor& timesteps) const {
    auto [sa, so] = sqrt_alpha_terms(alphas_cumprod_, sample, timesteps, num_train_timesteps_);
    return sa * noise - so * sample;
}

std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const SchedulerConfig& config) {
    SchedulerConfig c = config;
    if (c.source.empty()) c.source = "scheduler config";
    if (name == "ddpm") return std::make_unique<DDPM>(c);
    if (name == "ddim") return std::make_unique<DDIM>(c);
    if (name == "pndm") return std::make_unique<PNDM>(c);
    if (name == "euler") return std::make_unique<Euler>(c, false);
    if (name == "euler_karras") return std::make_unique<Euler>(c, true);
    if (name == "euler_ancestral") return std::make_unique<EulerAncestral>(c);
    if (name == "dpmpp_2m" || name == "dpmpp_2m_karras") {
        if (!c.solver_order) c.solver_order = 2;
        return std::make_unique<DPMSolverMultistep>(c, name == "dpmpp_2m_karras");
    }
    std::string list;
    for (const auto& n : sampler_names()) list += (list.empty() ? "" : ", ") + n;
    throw Error("unknown sampler '" + name + "' (available: " + list + ")");
}

}  // namespace kto
