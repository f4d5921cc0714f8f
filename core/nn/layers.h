#pragma once
// Building blocks shared by the UNet and the VAE, written as in diffusers 0.25 (models/attention*.py,
// models/resnet.py, models/transformer_2d.py). Parameters are created by hand (not torch::nn::Conv2d
// etc.) so a model can be built without initialising memory: "shapes only" on the meta device, or
// uninitialised on the target device right before a state dict is copied in.
// Thread-safety: a module may run forward on one thread at a time.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kto {

// How a module creates its parameters.
struct ModuleOptions {
    // dtype and device of every parameter.
    torch::TensorOptions tensor = torch::TensorOptions().dtype(torch::kFloat32);
    // true: PyTorch-style default initialisation; false: uninitialised (weights are loaded next).
    bool random_init = true;

    // Parameters on the meta device: names and shapes only, no memory (for key listings).
    static ModuleOptions shapes_only();
    // Uninitialised parameters on `device` in `dtype`, to be filled by a state-dict load.
    static ModuleOptions for_loading(torch::Device device, torch::ScalarType dtype);
};

// Named intermediate activations a forward pass records on request (parity debugging).
using ActivationTrace = std::map<std::string, torch::Tensor>;

// Cross-attention maps a forward pass records on request (attention supervision in training): each
// cross-attention layer it is attached to appends its attention probabilities averaged over heads,
// [B, queries, keys], with their autograd history.
using AttentionProbe = std::vector<torch::Tensor>;
// While set on a thread, every attention layer with a probe attached appends its maps here instead of
// to its own probe, so that two threads can run one probed UNet side by side (train-demo
// --unet-batch-halves), each recording its own maps. Null (the default): the layer's own probe.
AttentionProbe*& thread_attention_probe();

// A change added to a Linear layer's output at forward time (LoRA); see core/nn/lora.h.
class LinearDelta {
public:
    virtual ~LinearDelta() = default;
    // false: the layer behaves as if no delta were attached.
    virtual bool active() const = 0;
    // Term added to the base output for input x.
    virtual torch::Tensor delta(const torch::Tensor& x) = 0;
    // Its parameters (they are not registered in the base model).
    virtual std::vector<torch::Tensor> adapter_parameters() const = 0;
};

class LinearImpl : public torch::nn::Module {
public:
    LinearImpl(int64_t in_features, int64_t out_features, bool bias, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x);

    int64_t in_features, out_features;
    torch::Tensor weight, bias;
    // Not a registered submodule: the base model's state dict stays exactly the diffusers one.
    std::shared_ptr<LinearDelta> adapter;
};
TORCH_MODULE(Linear);

class Conv2dImpl : public torch::nn::Module {
public:
    Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
               int64_t padding, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x);

    int64_t stride, padding;
    torch::Tensor weight, bias;
};
TORCH_MODULE(Conv2d);

class GroupNormImpl : public torch::nn::Module {
public:
    GroupNormImpl(int64_t num_groups, int64_t num_channels, double eps, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x);

    int64_t num_groups;
    double eps;
    torch::Tensor weight, bias;
};
TORCH_MODULE(GroupNorm);

class LayerNormImpl : public torch::nn::Module {
public:
    LayerNormImpl(int64_t dim, double eps, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x);

    int64_t dim;
    double eps;
    torch::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm);

// Multi-head scaled dot-product attention on [B, N, heads*d] projections -> [B, N, heads*d].
// upcast_scores: q.k and softmax in fp32 (diffusers upcast_attention); upcast_softmax: softmax in
// fp32 only. Uses at::scaled_dot_product_attention on libtorch >= 2, else a baddbmm path computed
// in slices over batch*heads so that one slice's score matrix stays below max_score_bytes.
torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, int64_t heads, bool upcast_scores,
                                   bool upcast_softmax, int64_t max_score_bytes = int64_t(256) << 20);

// diffusers Attention as used in transformer blocks: to_q, to_k, to_v (no bias), to_out.0.
class AttentionImpl : public torch::nn::Module {
public:
    // cross_attention_dim 0: self-attention (keys/values from the query input).
    AttentionImpl(int64_t query_dim, int64_t cross_attention_dim, int64_t heads, int64_t dim_head,
                  bool upcast_attention, const ModuleOptions& o);
    // context undefined: self-attention.
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});

    int64_t heads;
    bool upcast_attention;
    // If set, a cross-attention forward computes its probabilities explicitly (no fused kernel) and
    // appends their mean over heads here (AttentionProbe).
    AttentionProbe* probe = nullptr;
    Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out0{nullptr};
};
TORCH_MODULE(Attention);

// The VAE mid-block attention (diffusers Attention with group_norm, residual and rescale,
// upcast_softmax, biased projections; one head of width `channels`).
class SpatialAttentionImpl : public torch::nn::Module {
public:
    SpatialAttentionImpl(int64_t channels, int64_t heads, int64_t num_groups, double eps,
                         double rescale_output_factor, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x);

    int64_t heads;
    double rescale_output_factor;
    GroupNorm group_norm{nullptr};
    Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out0{nullptr};
};
TORCH_MODULE(SpatialAttention);

// diffusers ResnetBlock2D with time_embedding_norm "default"; temb_channels 0: no time embedding.
class ResnetBlock2DImpl : public torch::nn::Module {
public:
    ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels,
                      int64_t groups, double eps, double output_scale_factor, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});

    double output_scale_factor;
    GroupNorm norm1{nullptr}, norm2{nullptr};
    Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
    Linear time_emb_proj{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

// Stride-2 conv; padding 0 means diffusers' asymmetric (0,1,0,1) pad first (VAE encoder).
class Downsample2DImpl : public torch::nn::Module {
public:
    Downsample2DImpl(int64_t channels, int64_t out_channels, int64_t padding, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x);

    int64_t padding;
    Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample2D);

// Nearest-neighbour x2 (or to `size`) then a 3x3 conv.
class Upsample2DImpl : public torch::nn::Module {
public:
    Upsample2DImpl(int64_t channels, int64_t out_channels, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x, c10::optional<std::vector<int64_t>> size = {});

    Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

// GEGLU feed-forward: ff.net.0.proj (dim -> 2*inner), ff.net.2 (inner -> dim).
class FeedForwardImpl : public torch::nn::Module {
public:
    FeedForwardImpl(int64_t dim, int64_t mult, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x);

    Linear proj{nullptr}, out{nullptr};
};
TORCH_MODULE(FeedForward);

class BasicTransformerBlockImpl : public torch::nn::Module {
public:
    BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head,
                              int64_t cross_attention_dim, bool only_cross_attention,
                              bool upcast_attention, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

    bool only_cross_attention;
    LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
    Attention attn1{nullptr}, attn2{nullptr};
    FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

struct Transformer2DOptions {
    int64_t heads = 8;
    int64_t dim_head = 40;
    int64_t in_channels = 320;
    int64_t num_layers = 1;
    int64_t cross_attention_dim = 768;
    int64_t norm_num_groups = 32;
    bool use_linear_projection = false;
    bool only_cross_attention = false;
    bool upcast_attention = false;
};

// Continuous-input Transformer2DModel: norm, proj_in, transformer_blocks, proj_out, residual.
class Transformer2DModelImpl : public torch::nn::Module {
public:
    Transformer2DModelImpl(const Transformer2DOptions& t, const ModuleOptions& o);
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context,
                          ActivationTrace* trace = nullptr, const std::string& prefix = {});

    bool use_linear_projection;
    GroupNorm norm{nullptr};
    // Conv2d 1x1 or Linear, depending on use_linear_projection.
    Conv2d proj_in_conv{nullptr}, proj_out_conv{nullptr};
    Linear proj_in_linear{nullptr}, proj_out_linear{nullptr};
    std::vector<BasicTransformerBlock> blocks;
};
TORCH_MODULE(Transformer2DModel);

// "name [a,b,c]" lines for every parameter and buffer of `module`, sorted by name.
std::vector<std::string> describe_parameters(torch::nn::Module& module);

// Total element count of all parameters.
int64_t count_parameters(torch::nn::Module& module);

}  // namespace kto
