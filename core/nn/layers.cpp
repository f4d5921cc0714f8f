#include "core/nn/layers.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/common/batched_matmul.h"

namespace kto {

namespace F = torch::nn::functional;

ModuleOptions ModuleOptions::shapes_only() {
    ModuleOptions o;
    o.tensor = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kMeta);
    o.random_init = false;
    return o;
}

ModuleOptions ModuleOptions::for_loading(torch::Device device, torch::ScalarType dtype) {
    ModuleOptions o;
    o.tensor = torch::TensorOptions().dtype(dtype).device(device);
    o.random_init = false;
    return o;
}

namespace {

// PyTorch's default for Linear/Conv (kaiming_uniform with a=sqrt(5)): U(-1/sqrt(fan_in), +).
torch::Tensor make_weight(torch::IntArrayRef shape, int64_t fan_in, const ModuleOptions& o) {
    auto t = torch::empty(shape, o.tensor);
    if (o.random_init) {
        torch::NoGradGuard ng;
        const double bound = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(fan_in, 1)));
        t.uniform_(-bound, bound);
    }
    return t;
}

torch::Tensor make_filled(torch::IntArrayRef shape, double value, const ModuleOptions& o) {
    auto t = torch::empty(shape, o.tensor);
    if (o.random_init) {
        torch::NoGradGuard ng;
        t.fill_(value);
    }
    return t;
}

}  // namespace

// ---- Linear / Conv2d / norms ------------------------------------------------------------------

LinearImpl::LinearImpl(int64_t in, int64_t out, bool has_bias, const ModuleOptions& o)
    : in_features(in), out_features(out) {
    weight = register_parameter("weight", make_weight({out, in}, in, o));
    if (has_bias) bias = register_parameter("bias", make_weight({out}, in, o));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
    auto y = torch::linear(x, weight, bias);
    if (adapter && adapter->active()) y = y + adapter->delta(x);
    return y;
}

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride_, int64_t padding_,
                       const ModuleOptions& o)
    : stride(stride_), padding(padding_) {
    const int64_t fan_in = in * kernel * kernel;
    weight = register_parameter("weight", make_weight({out, in, kernel, kernel}, fan_in, o));
    bias = register_parameter("bias", make_weight({out}, fan_in, o));
}

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
    return torch::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}

GroupNormImpl::GroupNormImpl(int64_t groups, int64_t channels, double eps_, const ModuleOptions& o)
    : num_groups(groups), eps(eps_) {
    weight = register_parameter("weight", make_filled({channels}, 1.0, o));
    bias = register_parameter("bias", make_filled({channels}, 0.0, o));
}

namespace {
// libtorch 1.13's CPU group and layer norms are scalar loops in bf16 (10x the fp32 time) and need
// the input and the weights in one dtype, which CPU autocast (bf16 activations, fp32 weights) does
// not give. On the CPU a reduced-precision input or weight is normalised in fp32 and the result
// cast back to the input's dtype: the statistics in fp32, as the reduced-precision kernels keep them.
bool reduced(const torch::Tensor& t) {
    return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kHalf;
}
bool upcast_norm(const torch::Tensor& x, const torch::Tensor& weight) {
    return x.device().is_cpu() && (reduced(x) || reduced(weight));
}
}  // namespace

torch::Tensor GroupNormImpl::forward(const torch::Tensor& x) {
    if (upcast_norm(x, weight))
        return torch::group_norm(x.to(torch::kFloat32), num_groups, weight.to(torch::kFloat32),
                                 bias.to(torch::kFloat32), eps)
            .to(x.scalar_type());
    return torch::group_norm(x, num_groups, weight, bias, eps);
}

LayerNormImpl::LayerNormImpl(int64_t dim_, double eps_, const ModuleOptions& o) : dim(dim_), eps(eps_) {
    weight = register_parameter("weight", make_filled({dim}, 1.0, o));
    bias = register_parameter("bias", make_filled({dim}, 0.0, o));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
    if (upcast_norm(x, weight))
        return torch::layer_norm(x.to(torch::kFloat32), {dim}, weight.to(torch::kFloat32), bias.to(torch::kFloat32), eps)
            .to(x.scalar_type());
    return torch::layer_norm(x, {dim}, weight, bias, eps);
}

// ---- attention --------------------------------------------------------------------------------

torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, int64_t heads, bool upcast_scores,
                                   bool upcast_softmax, int64_t max_score_bytes) {
    const int64_t b = q.size(0), nq = q.size(1), inner = q.size(2);
    const int64_t d = inner / heads;
    const auto dtype = q.scalar_type();
#if TORCH_VERSION_MAJOR >= 2
    (void)max_score_bytes;
    auto to4 = [&](const torch::Tensor& t) { return t.view({b, t.size(1), heads, d}).transpose(1, 2); };
    auto q4 = to4(q), k4 = to4(k), v4 = to4(v);
    if ((upcast_scores || upcast_softmax) && dtype != torch::kFloat32) {
        q4 = q4.to(torch::kFloat32);
        k4 = k4.to(torch::kFloat32);
        v4 = v4.to(torch::kFloat32);
    }
    auto o4 = at::scaled_dot_product_attention(q4, k4, v4);
    return o4.transpose(1, 2).reshape({b, nq, inner}).to(dtype);
#else
    const int64_t nk = k.size(1);
    // diffusers AttnProcessor: head_to_batch_dim, baddbmm(beta=0, alpha=scale), softmax, bmm.
    auto to3 = [&](const torch::Tensor& t) {
        return t.reshape({b, t.size(1), heads, d}).permute({0, 2, 1, 3}).reshape({b * heads, t.size(1), d});
    };
    auto q3 = to3(q), k3 = to3(k), v3 = to3(v);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    // Slice over batch*heads to bound the score memory (64x64 latents: 4096^2 scores per head).
    const int64_t score_bytes = nq * nk * 4;
    const int64_t per_slice = std::max<int64_t>(1, max_score_bytes / std::max<int64_t>(score_bytes, 1));
    auto one = [&](const torch::Tensor& qs, const torch::Tensor& ks, const torch::Tensor& vs) {
        auto qq = upcast_scores ? qs.to(torch::kFloat32) : qs;
        auto kk = upcast_scores ? ks.to(torch::kFloat32) : ks;
        // baddbmm(beta=0, alpha=scale) and bmm, through batched_matmul (libtorch 1.13's CPU bmm loops).
        auto scores = batched_matmul(qq, kk.transpose(1, 2), scale);
        if (upcast_softmax) scores = scores.to(torch::kFloat32);
        auto probs = scores.softmax(-1).to(dtype);
        return batched_matmul(probs, vs);
    };
    torch::Tensor out;
    if (per_slice >= b * heads) {
        out = one(q3, k3, v3);
    } else {
        out = torch::empty({b * heads, nq, d}, q3.options());
        for (int64_t s = 0; s < b * heads; s += per_slice) {
            const int64_t e = std::min(b * heads, s + per_slice);
            out.slice(0, s, e).copy_(one(q3.slice(0, s, e), k3.slice(0, s, e), v3.slice(0, s, e)));
        }
    }
    return out.reshape({b, heads, nq, d}).permute({0, 2, 1, 3}).reshape({b, nq, inner});
#endif
}

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t cross_dim, int64_t heads_, int64_t dim_head,
                             bool upcast, const ModuleOptions& o)
    : heads(heads_), upcast_attention(upcast) {
    const int64_t inner = heads * dim_head;
    const int64_t kv_dim = cross_dim > 0 ? cross_dim : query_dim;
    to_q = register_module("to_q", Linear(query_dim, inner, false, o));
    to_k = register_module("to_k", Linear(kv_dim, inner, false, o));
    to_v = register_module("to_v", Linear(kv_dim, inner, false, o));
    auto to_out = register_module("to_out", torch::nn::ModuleList());
    to_out0 = Linear(inner, query_dim, true, o);
    to_out->push_back(to_out0);
}

AttentionProbe*& thread_attention_probe() {
    thread_local AttentionProbe* probe = nullptr;
    return probe;
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
    const auto& ctx = context.defined() ? context : x;
    auto q = to_q->forward(x);
    auto k = to_k->forward(ctx);
    auto v = to_v->forward(ctx);
    if (probe && context.defined()) {
        const int64_t b = q.size(0), nq = q.size(1), nk = k.size(1), inner = q.size(2), d = inner / heads;
        const auto dtype = q.scalar_type();
        auto to4 = [&](const torch::Tensor& t, int64_t n) {
            return t.reshape({b, n, heads, d}).transpose(1, 2).to(torch::kFloat32);
        };
        const auto probs = batched_matmul(to4(q, nq), to4(k, nk).transpose(-1, -2), 1.0 / std::sqrt(double(d)))
                               .softmax(-1);  // [b, heads, nq, nk]
        AttentionProbe* target = thread_attention_probe();
        (target ? target : probe)->push_back(probs.mean(1));
        auto h = batched_matmul(probs, to4(v, nk)).transpose(1, 2).reshape({b, nq, inner}).to(dtype);
        return to_out0->forward(h);
    }
    auto h = multi_head_attention(q, k, v, heads, upcast_attention, false);
    return to_out0->forward(h);
}

SpatialAttentionImpl::SpatialAttentionImpl(int64_t channels, int64_t heads_, int64_t num_groups,
                                           double eps, double rescale, const ModuleOptions& o)
    : heads(heads_), rescale_output_factor(rescale) {
    group_norm = register_module("group_norm", GroupNorm(num_groups, channels, eps, o));
    to_q = register_module("to_q", Linear(channels, channels, true, o));
    to_k = register_module("to_k", Linear(channels, channels, true, o));
    to_v = register_module("to_v", Linear(channels, channels, true, o));
    auto to_out = register_module("to_out", torch::nn::ModuleList());
    to_out0 = Linear(channels, channels, true, o);
    to_out->push_back(to_out0);
}

torch::Tensor SpatialAttentionImpl::forward(const torch::Tensor& x) {
    const int64_t b = x.size(0), c = x.size(1), hh = x.size(2), ww = x.size(3);
    auto h = group_norm->forward(x).view({b, c, hh * ww}).transpose(1, 2);
    auto q = to_q->forward(h);
    auto k = to_k->forward(h);
    auto v = to_v->forward(h);
    h = multi_head_attention(q, k, v, heads, false, true);
    h = to_out0->forward(h);
    h = h.transpose(-1, -2).reshape({b, c, hh, ww});
    return (h + x) / rescale_output_factor;
}

// ---- resnet / resampling ----------------------------------------------------------------------

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in, int64_t out, int64_t temb_channels, int64_t groups,
                                     double eps, double scale, const ModuleOptions& o)
    : output_scale_factor(scale) {
    norm1 = register_module("norm1", GroupNorm(groups, in, eps, o));
    conv1 = register_module("conv1", Conv2d(in, out, 3, 1, 1, o));
    if (temb_channels > 0) time_emb_proj = register_module("time_emb_proj", Linear(temb_channels, out, true, o));
    norm2 = register_module("norm2", GroupNorm(groups, out, eps, o));
    conv2 = register_module("conv2", Conv2d(out, out, 3, 1, 1, o));
    if (in != out) conv_shortcut = register_module("conv_shortcut", Conv2d(in, out, 1, 1, 0, o));
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
    auto h = conv1->forward(torch::silu(norm1->forward(x)));
    if (time_emb_proj && temb.defined()) {
        auto t = time_emb_proj->forward(torch::silu(temb));
        h = h + t.unsqueeze(-1).unsqueeze(-1);
    }
    h = conv2->forward(torch::silu(norm2->forward(h)));
    auto shortcut = conv_shortcut ? conv_shortcut->forward(x) : x;
    auto y = shortcut + h;
    return output_scale_factor == 1.0 ? y : y / output_scale_factor;
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t out, int64_t padding_, const ModuleOptions& o)
    : padding(padding_) {
    conv = register_module("conv", Conv2d(channels, out, 3, 2, padding, o));
}

torch::Tensor Downsample2DImpl::forward(const torch::Tensor& x) {
    if (padding == 0) return conv->forward(F::pad(x, F::PadFuncOptions({0, 1, 0, 1}).value(0.0)));
    return conv->forward(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels, int64_t out, const ModuleOptions& o) {
    conv = register_module("conv", Conv2d(channels, out, 3, 1, 1, o));
}

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, c10::optional<std::vector<int64_t>> size) {
    // Nearest interpolation has no bf16 kernel on older libtorch: go through fp32 as diffusers does.
    auto in = x.scalar_type() == torch::kBFloat16 ? x.to(torch::kFloat32) : x;
    auto opts = F::InterpolateFuncOptions().mode(torch::kNearest);
    if (size) opts.size(*size);
    else opts.scale_factor(std::vector<double>{2.0, 2.0});
    auto up = F::interpolate(in.contiguous(), opts).to(x.scalar_type());
    return conv->forward(up);
}

// ---- transformer ------------------------------------------------------------------------------

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t mult, const ModuleOptions& o) {
    const int64_t inner = dim * mult;
    auto net = register_module("net", torch::nn::ModuleList());
    auto geglu = std::make_shared<torch::nn::Module>("GEGLU");
    proj = geglu->register_module("proj", Linear(dim, inner * 2, true, o));
    net->push_back(geglu);
    net->push_back(torch::nn::Dropout(0.0));  // index 1 holds no parameters, as in diffusers
    out = Linear(inner, dim, true, o);
    net->push_back(out);
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
    auto hg = proj->forward(x).chunk(2, -1);
    return out->forward(hg[0] * torch::gelu(hg[1]));
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head,
                                                     int64_t cross_dim, bool only_cross,
                                                     bool upcast, const ModuleOptions& o)
    : only_cross_attention(only_cross) {
    norm1 = register_module("norm1", LayerNorm(dim, 1e-5, o));
    attn1 = register_module("attn1", Attention(dim, only_cross ? cross_dim : 0, heads, dim_head, upcast, o));
    norm2 = register_module("norm2", LayerNorm(dim, 1e-5, o));
    attn2 = register_module("attn2", Attention(dim, cross_dim, heads, dim_head, upcast, o));
    norm3 = register_module("norm3", LayerNorm(dim, 1e-5, o));
    ff = register_module("ff", FeedForward(dim, 4, o));
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
    auto h = attn1->forward(norm1->forward(x), only_cross_attention ? context : torch::Tensor()) + x;
    h = attn2->forward(norm2->forward(h), context) + h;
    return ff->forward(norm3->forward(h)) + h;
}

Transformer2DModelImpl::Transformer2DModelImpl(const Transformer2DOptions& t, const ModuleOptions& o)
    : use_linear_projection(t.use_linear_projection) {
    const int64_t inner = t.heads * t.dim_head;
    norm = register_module("norm", GroupNorm(t.norm_num_groups, t.in_channels, 1e-6, o));
    if (use_linear_projection) proj_in_linear = register_module("proj_in", Linear(t.in_channels, inner, true, o));
    else proj_in_conv = register_module("proj_in", Conv2d(t.in_channels, inner, 1, 1, 0, o));
    auto list = register_module("transformer_blocks", torch::nn::ModuleList());
    for (int64_t i = 0; i < t.num_layers; ++i) {
        blocks.push_back(BasicTransformerBlock(inner, t.heads, t.dim_head, t.cross_attention_dim,
                                               t.only_cross_attention, t.upcast_attention, o));
        list->push_back(blocks.back());
    }
    if (use_linear_projection) proj_out_linear = register_module("proj_out", Linear(inner, t.in_channels, true, o));
    else proj_out_conv = register_module("proj_out", Conv2d(inner, t.in_channels, 1, 1, 0, o));
}

torch::Tensor Transformer2DModelImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                              ActivationTrace* trace, const std::string& prefix) {
    const int64_t b = x.size(0), hh = x.size(2), ww = x.size(3);
    auto h = norm->forward(x);
    int64_t inner;
    if (!use_linear_projection) {
        h = proj_in_conv->forward(h);
        inner = h.size(1);
        h = h.permute({0, 2, 3, 1}).reshape({b, hh * ww, inner});
    } else {
        inner = h.size(1);
        h = proj_in_linear->forward(h.permute({0, 2, 3, 1}).reshape({b, hh * ww, inner}));
        inner = h.size(2);
    }
    for (size_t i = 0; i < blocks.size(); ++i) {
        h = blocks[i]->forward(h, context);
        if (trace) (*trace)[prefix + ".transformer_blocks." + std::to_string(i)] = h;
    }
    if (!use_linear_projection) {
        h = h.reshape({b, hh, ww, inner}).permute({0, 3, 1, 2}).contiguous();
        h = proj_out_conv->forward(h);
    } else {
        h = proj_out_linear->forward(h);
        h = h.reshape({b, hh, ww, h.size(2)}).permute({0, 3, 1, 2}).contiguous();
    }
    return h + x;
}

// ---- introspection ----------------------------------------------------------------------------

std::vector<std::string> describe_parameters(torch::nn::Module& module) {
    std::vector<std::string> lines;
    auto add = [&](const std::string& name, const torch::Tensor& t) {
        std::ostringstream os;
        os << name << " [";
        for (int64_t i = 0; i < t.dim(); ++i) os << (i ? "," : "") << t.size(i);
        os << "]";
        lines.push_back(os.str());
    };
    for (const auto& p : module.named_parameters(true)) add(p.key(), p.value());
    for (const auto& p : module.named_buffers(true)) add(p.key(), p.value());
    std::sort(lines.begin(), lines.end());
    return lines;
}

int64_t count_parameters(torch::nn::Module& module) {
    int64_t n = 0;
    for (const auto& p : module.parameters(true)) n += p.numel();
    return n;
}

}  // namespace kto

// ---- activation checkpointing ------------------------------------------------------------------

#include "core/nn/autocast.h"
#include "core/nn/checkpoint.h"

namespace kto {
namespace {

struct BlockFunctionHolder : torch::CustomClassHolder {
    BlockFunction fn;
    size_t num_inputs = 0;
    std::vector<torch::Tensor> params;  // the trainable parameters fn reads
    // CUDA and CPU autocast at forward time: the recomputation in backward runs under the same state.
    bool autocast = false;
    torch::ScalarType autocast_dtype = torch::kHalf;
    bool cpu_autocast = false;
    torch::ScalarType cpu_autocast_dtype = torch::kBFloat16;
};

// Inputs: [block inputs..., trainable parameters...]; parameters are listed so the autograd node
// connects to them even when no block input requires grad (frozen layers before a LoRA block).
struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
    static torch::Tensor forward(torch::autograd::AutogradContext* ctx,
                                 c10::intrusive_ptr<BlockFunctionHolder> holder, torch::TensorList tensors) {
        std::vector<torch::Tensor> inputs(tensors.begin(), tensors.begin() + holder->num_inputs);
        ctx->save_for_backward(inputs);
        ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
        return holder->fn(inputs);  // apply() runs this with grad mode off
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grad_out) {
        auto holder = c10::static_intrusive_pointer_cast<BlockFunctionHolder>(ctx->saved_data["fn"].toCapsule());
        auto saved = ctx->get_saved_variables();
        std::vector<torch::Tensor> inputs, targets;
        std::vector<int64_t> target_of;
        for (const auto& s : saved) {
            auto t = s.detach();
            t.requires_grad_(s.requires_grad());
            inputs.push_back(t);
            target_of.push_back(t.requires_grad() ? static_cast<int64_t>(targets.size()) : -1);
            if (t.requires_grad()) targets.push_back(t);
        }
        for (const auto& p : holder->params) {
            target_of.push_back(static_cast<int64_t>(targets.size()));
            targets.push_back(p);
        }
        torch::Tensor out;
        {
            torch::AutoGradMode on(true);
            AutocastScope autocast(holder->autocast, holder->autocast_dtype);
            AutocastScope cpu_autocast(holder->cpu_autocast, holder->cpu_autocast_dtype, /*cpu=*/true);
            out = holder->fn(inputs);
        }
        auto grads = torch::autograd::grad({out}, targets, {grad_out[0]}, /*retain_graph=*/false,
                                           /*create_graph=*/false, /*allow_unused=*/true);
        torch::autograd::variable_list result{torch::Tensor()};  // for the holder argument
        for (auto idx : target_of) result.push_back(idx >= 0 ? grads[idx] : torch::Tensor());
        return result;
    }
};

}  // namespace

torch::Tensor checkpoint_call(torch::nn::Module& module, BlockFunction fn, const std::vector<torch::Tensor>& inputs,
                              const std::vector<torch::Tensor>& extra_params) {
    if (!torch::GradMode::is_enabled()) return fn(inputs);
    for (const auto& t : inputs)
        if (!t.defined()) return fn(inputs);
    std::vector<torch::Tensor> all(inputs.begin(), inputs.end());
    bool any = false;
    for (const auto& t : inputs) any = any || t.requires_grad();
    for (const auto& p : module.parameters(true))
        if (p.requires_grad()) {
            all.push_back(p);
            any = true;
        }
    for (const auto& m : module.modules(true))
        if (auto* lin = dynamic_cast<LinearImpl*>(m.get()); lin && lin->adapter && lin->adapter->active())
            for (const auto& p : lin->adapter->adapter_parameters())
                if (p.requires_grad()) {
                    all.push_back(p);
                    any = true;
                }
    for (const auto& p : extra_params)
        if (p.defined() && p.requires_grad()) {
            all.push_back(p);
            any = true;
        }
    if (!any) return fn(inputs);
    auto holder = c10::make_intrusive<BlockFunctionHolder>();
    holder->fn = std::move(fn);
    holder->num_inputs = inputs.size();
    holder->autocast = cuda_autocast_enabled();
    holder->autocast_dtype = cuda_autocast_dtype();
    holder->cpu_autocast = cpu_autocast_enabled();
    holder->cpu_autocast_dtype = kto::cpu_autocast_dtype();
    holder->params.assign(all.begin() + inputs.size(), all.end());
    return CheckpointFunction::apply(holder, torch::TensorList(all));
}

}  // namespace kto
