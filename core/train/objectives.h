#pragma once
// Training objectives on per-sample denoising errors: Diffusion-KTO (shared/guide/KTO.md, "Per-sample
// loss"), plain SFT on liked images, and Diffusion-DPO on win/lose pairs. Pure tensor functions: the
// trainer runs the UNets, these turn the errors into a loss and its metrics. Stateless, thread-safe.
#include <torch/torch.h>

#include <functional>
#include <string>

namespace kto {

enum class ObjectiveKind { kto, sft, dpo };
// KTO reference point (the "kl" term): batch mean of g over all samples (reference default) or the
// mean of the desirable mean and the undesirable mean of g (KTO.md, "Alternatives").
enum class ReferencePoint { batch_mean, class_mean };
// KTO value function: sigmoid (default) or `loss_averse`, which the reference trainer writes as
// h = logsigmoid(s * beta * (g - kl)) in place of the sigmoid.
enum class Utility { sigmoid, loss_averse };

std::string to_string(ObjectiveKind kind);
std::string to_string(ReferencePoint point);
std::string to_string(Utility utility);
// Parse "kto"/"sft"/"dpo", "batch_mean"/"class_mean", "sigmoid"/"loss_averse"; throw kto::Error
// naming `what` and the accepted values otherwise.
ObjectiveKind parse_objective(const std::string& text, const std::string& what = "objective");
ReferencePoint parse_reference_point(const std::string& text,
                                     const std::string& what = "reference point");
Utility parse_utility(const std::string& text, const std::string& what = "utility");

// Default beta per objective: 1000 for KTO (reference script; the paper's ablation prefers 5000),
// 5000 for Diffusion-DPO, unused (0) for SFT.
double default_beta(ObjectiveKind kind);

// Averages a 0-dim tensor across data-parallel workers (returns it unchanged on one worker). The
// KTO reference point is averaged this way, as the reference trainer does with accelerator.reduce.
using ScalarAllReduce = std::function<torch::Tensor(const torch::Tensor&)>;

struct KtoParams {
    double beta = 1000.0;            // scale of the implicit reward inside the value function
    double lambda_desirable = 1.0;   // lambda_D: weight of liked samples
    double lambda_undesirable = 1.0; // lambda_U: weight of disliked samples
    ReferencePoint reference_point = ReferencePoint::batch_mean;
    Utility utility = Utility::sigmoid;
    ScalarAllReduce all_reduce_mean;  // empty = single worker
};

struct ObjectiveResult {
    torch::Tensor loss;          // 0-dim fp32, differentiable w.r.t. the model errors
    torch::Tensor reward;        // [B] (pairs: [P] win-minus-lose) implicit reward g = r - m, detached
    double loss_value = 0.0;
    // Mean g of desirable minus mean g of undesirable samples (DPO: mean over pairs of g_w - g_l);
    // NaN when the batch holds only one class, or for SFT (no reference model is run).
    double reward_margin = 0.0;
    // The KTO reference point actually used (after max(0, .)); NaN for SFT and DPO.
    double kl = 0.0;
};

// Per-sample denoising error: mean over all but the batch dimension of (pred - target)^2, in fp32
// whatever the input dtype (KTO.md: m_i, r_i "in fp32"). Returns [B].
torch::Tensor per_sample_mse(const torch::Tensor& prediction, const torch::Tensor& target);

// KTO (KTO.md, "Per-sample loss"): g = r - m, kl = max(0, mean g).detach() (averaged across workers),
// h = sigmoid(beta * s * (g - kl)), loss = mean w * (1 - h). `model_err` [B] carries the gradient,
// `ref_err` [B] is treated as constant, `desirable` [B] is bool or 0/1. Throws on shape mismatch.
ObjectiveResult kto_objective(const torch::Tensor& model_err, const torch::Tensor& ref_err,
                              const torch::Tensor& desirable, const KtoParams& params);

// SFT on liked images only: loss = mean_i(m_i * y_i) (mean over the whole batch, as the reference
// trainer computes it, so an all-disliked batch gives a zero loss).
ObjectiveResult sft_objective(const torch::Tensor& model_err, const torch::Tensor& desirable);

// Diffusion-DPO (KTO.md, "Diffusion-DPO"): pair p shares noise and timestep between its winner and
// loser; loss = mean_p -logsigmoid(-0.5 * beta * ((m_w - m_l) - (r_w - r_l))).
ObjectiveResult dpo_objective(const torch::Tensor& model_err_win, const torch::Tensor& model_err_lose,
                              const torch::Tensor& ref_err_win, const torch::Tensor& ref_err_lose,
                              double beta);

}  // namespace kto
