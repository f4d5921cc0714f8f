#include "core/train/objectives.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "core/common/error.h"

namespace kto {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_vector(const torch::Tensor& t, int64_t n, const char* name) {
    if (!t.defined() || t.dim() != 1 || t.size(0) != n) {
        std::ostringstream os;
        os << "objective: '" << name << "' must be a 1-D tensor of " << n << " per-sample values, got "
           << (t.defined() ? t.sizes() : c10::IntArrayRef{});
        throw Error(os.str());
    }
}

torch::Tensor as_bool_labels(const torch::Tensor& desirable) {
    return desirable.scalar_type() == torch::kBool ? desirable : desirable.ne(0);
}

// Mean of g over the samples selected by `mask`; NaN when none is selected.
double masked_mean(const torch::Tensor& g, const torch::Tensor& mask) {
    const int64_t n = mask.sum().item<int64_t>();
    if (n == 0) return kNaN;
    return g.masked_select(mask).mean().item<double>();
}

}  // namespace

std::string to_string(ObjectiveKind kind) {
    switch (kind) {
        case ObjectiveKind::kto: return "kto";
        case ObjectiveKind::sft: return "sft";
        case ObjectiveKind::dpo: return "dpo";
    }
    return "?";
}
std::string to_string(ReferencePoint point) {
    return point == ReferencePoint::batch_mean ? "batch_mean" : "class_mean";
}
std::string to_string(Utility utility) {
    return utility == Utility::sigmoid ? "sigmoid" : "loss_averse";
}

ObjectiveKind parse_objective(const std::string& text, const std::string& what) {
    if (text == "kto") return ObjectiveKind::kto;
    if (text == "sft") return ObjectiveKind::sft;
    if (text == "dpo") return ObjectiveKind::dpo;
    throw Error(what + ": unknown objective '" + text + "' (expected kto, sft or dpo)");
}
ReferencePoint parse_reference_point(const std::string& text, const std::string& what) {
    if (text == "batch_mean" || text == "batch-mean") return ReferencePoint::batch_mean;
    if (text == "class_mean" || text == "class-mean") return ReferencePoint::class_mean;
    throw Error(what + ": unknown reference point '" + text + "' (expected batch_mean or class_mean)");
}
Utility parse_utility(const std::string& text, const std::string& what) {
    if (text == "sigmoid") return Utility::sigmoid;
    if (text == "loss_averse" || text == "loss-averse") return Utility::loss_averse;
    throw Error(what + ": unknown utility '" + text + "' (expected sigmoid or loss_averse)");
}

double default_beta(ObjectiveKind kind) {
    switch (kind) {
        case ObjectiveKind::kto: return 1000.0;
        case ObjectiveKind::dpo: return 5000.0;
        case ObjectiveKind::sft: return 0.0;
    }
    return 0.0;
}

torch::Tensor per_sample_mse(const torch::Tensor& prediction, const torch::Tensor& target) {
    if (prediction.sizes() != target.sizes()) {
        std::ostringstream os;
        os << "objective: prediction " << prediction.sizes() << " and target " << target.sizes()
           << " differ in shape";
        throw Error(os.str());
    }
    auto err = (prediction.to(torch::kFloat) - target.to(torch::kFloat)).pow(2);
    if (err.dim() <= 1) return err.reshape({-1});
    return err.flatten(1).mean(1);
}

ObjectiveResult kto_objective(const torch::Tensor& model_err, const torch::Tensor& ref_err,
                              const torch::Tensor& desirable, const KtoParams& params) {
    const int64_t b = model_err.defined() && model_err.dim() == 1 ? model_err.size(0) : -1;
    check_vector(model_err, b, "model_err");
    check_vector(ref_err, b, "ref_err");
    check_vector(desirable, b, "desirable");
    if (b == 0) throw Error("objective: empty batch");

    const auto m = model_err.to(torch::kFloat);
    const auto r = ref_err.to(torch::kFloat).detach();
    const auto y = as_bool_labels(desirable).to(m.device());
    // KTO.md: implicit reward g_i = r_i - m_i.
    const auto g = r - m;
    const auto g_const = g.detach();

    // KTO.md: reference point kl = max(0, mean g).detach(), averaged across workers.
    torch::Tensor point;
    if (params.reference_point == ReferencePoint::batch_mean) {
        point = g_const.mean();
    } else {
        // Mean of the two class means; with one class in the batch that class's mean is all there is.
        const auto yf = y.to(torch::kFloat);
        const auto n_d = yf.sum();
        const auto n_u = (1.0f - yf).sum();
        const auto mean_d = (g_const * yf).sum() / n_d.clamp_min(1.0f);
        const auto mean_u = (g_const * (1.0f - yf)).sum() / n_u.clamp_min(1.0f);
        const bool has_d = n_d.item<float>() > 0, has_u = n_u.item<float>() > 0;
        point = has_d && has_u ? 0.5f * (mean_d + mean_u) : (has_d ? mean_d : mean_u);
    }
    if (params.all_reduce_mean) point = params.all_reduce_mean(point);
    const auto kl = point.clamp_min(0.0).detach();

    // KTO.md: s_i = +1 desirable / -1 undesirable; h_i = sigmoid(beta * s_i * (g_i - kl)).
    const auto sign = y.to(torch::kFloat) * 2.0f - 1.0f;
    const auto z = sign * static_cast<float>(params.beta) * (g - kl);
    const auto h = params.utility == Utility::sigmoid ? torch::sigmoid(z) : torch::log_sigmoid(z);
    const auto w = torch::where(y, torch::full_like(m, params.lambda_desirable),
                                torch::full_like(m, params.lambda_undesirable));
    ObjectiveResult out;
    out.loss = (w * (1.0f - h)).mean();
    out.reward = g_const;
    out.loss_value = out.loss.item<double>();
    out.reward_margin = masked_mean(g_const, y) - masked_mean(g_const, y.logical_not());
    out.kl = kl.item<double>();
    return out;
}

ObjectiveResult sft_objective(const torch::Tensor& model_err, const torch::Tensor& desirable) {
    const int64_t b = model_err.defined() && model_err.dim() == 1 ? model_err.size(0) : -1;
    check_vector(model_err, b, "model_err");
    check_vector(desirable, b, "desirable");
    if (b == 0) throw Error("objective: empty batch");
    const auto m = model_err.to(torch::kFloat);
    const auto y = as_bool_labels(desirable).to(m.device()).to(torch::kFloat);
    ObjectiveResult out;
    out.loss = (m * y).mean();
    out.loss_value = out.loss.item<double>();
    out.reward_margin = kNaN;
    out.kl = kNaN;
    return out;
}

ObjectiveResult dpo_objective(const torch::Tensor& model_err_win, const torch::Tensor& model_err_lose,
                              const torch::Tensor& ref_err_win, const torch::Tensor& ref_err_lose,
                              double beta) {
    const int64_t p = model_err_win.defined() && model_err_win.dim() == 1 ? model_err_win.size(0) : -1;
    check_vector(model_err_win, p, "model_err_win");
    check_vector(model_err_lose, p, "model_err_lose");
    check_vector(ref_err_win, p, "ref_err_win");
    check_vector(ref_err_lose, p, "ref_err_lose");
    if (p == 0) throw Error("objective: no pairs in the batch");
    // KTO.md, "Diffusion-DPO": model_diff = m_w - m_l, ref_diff = r_w - r_l.
    const auto model_diff = model_err_win.to(torch::kFloat) - model_err_lose.to(torch::kFloat);
    const auto ref_diff =
        (ref_err_win.to(torch::kFloat) - ref_err_lose.to(torch::kFloat)).detach();
    const auto inside = -0.5f * static_cast<float>(beta) * (model_diff - ref_diff);
    ObjectiveResult out;
    out.loss = -torch::log_sigmoid(inside).mean();
    out.reward = (ref_diff - model_diff).detach();  // g_w - g_l per pair
    out.loss_value = out.loss.item<double>();
    out.reward_margin = out.reward.mean().item<double>();
    out.kl = kNaN;
    return out;
}

}  // namespace kto
