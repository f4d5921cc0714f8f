#include "core/nn/lora.h"

#include <cmath>
#include <sstream>

#include "core/common/error.h"
#include "core/io/safetensors.h"

namespace kto {

LoRAAdapter::LoRAAdapter(torch::Tensor a, torch::Tensor b, double s, std::shared_ptr<bool> enabled)
    : A(std::move(a)), B(std::move(b)), scale(s), enabled_(std::move(enabled)) {}

torch::Tensor LoRAAdapter::delta(const torch::Tensor& x) {
    auto h = torch::linear(torch::linear(x.to(A.scalar_type()), A), B);
    return (scale == 1.0 ? h : h * scale).to(x.scalar_type());
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0 &&
           (s.size() == suffix.size() || s[s.size() - suffix.size() - 1] == '.');
}

std::map<std::string, LinearImpl*> linear_layers(torch::nn::Module& root) {
    std::map<std::string, LinearImpl*> out;
    for (const auto& item : root.named_modules("", /*include_self=*/false))
        if (auto* lin = dynamic_cast<LinearImpl*>(item.value().get())) out[item.key()] = lin;
    return out;
}

}  // namespace

UNetLoRA::UNetLoRA(UNet2DConditionModel unet, LoRAConfig config, bool)
    : unet_(std::move(unet)), config_(std::move(config)), enabled_(std::make_shared<bool>(true)) {}

UNetLoRA::UNetLoRA(UNet2DConditionModel unet, const LoRAConfig& config) : UNetLoRA(std::move(unet), config, true) {
    if (config_.rank < 1) throw Error("LoRA: rank must be at least 1");
    if (config_.targets.empty()) throw Error("LoRA: no target layers given");
    const double scale = config_.alpha / static_cast<double>(config_.rank);
    for (const auto& [path, lin] : linear_layers(*unet_)) {
        bool match = false;
        for (const auto& t : config_.targets) match = match || ends_with(path, t);
        if (!match) continue;
        auto opts = lin->weight.options().requires_grad(false);
        if (config_.dtype) opts = opts.dtype(*config_.dtype);
        auto A = torch::empty({config_.rank, lin->in_features}, opts);
        auto B = torch::zeros({lin->out_features, config_.rank}, opts);
        {
            torch::NoGradGuard ng;
            const double bound = 1.0 / std::sqrt(static_cast<double>(lin->in_features));  // kaiming_uniform(a=sqrt(5))
            A.uniform_(-bound, bound);
        }
        A.requires_grad_(true);
        B.requires_grad_(true);
        attach(path, lin, std::make_shared<LoRAAdapter>(A, B, scale, enabled_));
    }
    if (adapters_.empty()) {
        std::string list;
        for (const auto& t : config_.targets) list += (list.empty() ? "" : ", ") + t;
        throw Error("LoRA: no Linear layer of the UNet matches the targets (" + list + ")");
    }
}

UNetLoRA::~UNetLoRA() {
    for (auto& [path, lin] : layers_)
        if (lin->adapter == adapters_[path]) lin->adapter.reset();
}

void UNetLoRA::attach(const std::string& path, LinearImpl* layer, std::shared_ptr<LoRAAdapter> adapter) {
    if (layer->adapter) throw Error("LoRA: layer '" + path + "' already has an adapter attached");
    layer->adapter = adapter;
    layers_[path] = layer;
    adapters_[path] = std::move(adapter);
}

std::vector<torch::Tensor> UNetLoRA::parameters() const {
    std::vector<torch::Tensor> out;
    for (const auto& [path, a] : adapters_) {
        out.push_back(a->A);
        out.push_back(a->B);
    }
    return out;
}

std::map<std::string, torch::Tensor> UNetLoRA::state_dict() const {
    std::map<std::string, torch::Tensor> out;
    for (const auto& [path, a] : adapters_) {
        out["unet." + path + ".lora_A.weight"] = a->A.detach().contiguous();
        out["unet." + path + ".lora_B.weight"] = (a->B.detach() * a->scale).contiguous();
    }
    return out;
}

void UNetLoRA::save(const std::string& path) const { write_safetensors(path, state_dict(), {{"format", "pt"}}); }

std::unique_ptr<UNetLoRA> UNetLoRA::load(UNet2DConditionModel unet, const std::string& path) {
    auto tensors = load_safetensors(path);
    struct Pair {
        torch::Tensor down, up, alpha;
    };
    std::map<std::string, Pair> pairs;
    std::vector<std::string> unknown;
    // (suffix, role): role 0 = down/A, 1 = up/B, 2 = alpha.
    static const std::pair<const char*, int> suffixes[] = {
        {".lora_A.weight", 0}, {".lora_B.weight", 1}, {".lora.down.weight", 0}, {".lora.up.weight", 1},
        {"_lora.down.weight", 0}, {"_lora.up.weight", 1}, {".alpha", 2}};
    for (const auto& [name, t] : tensors) {
        std::string n = name;
        if (n.rfind("unet.", 0) == 0) n = n.substr(5);
        int role = -1;
        for (const auto& [suffix, r] : suffixes) {
            const std::string s(suffix);
            if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0) {
                n = n.substr(0, n.size() - s.size());
                role = r;
                break;
            }
        }
        if (role < 0) {
            unknown.push_back(name);
            continue;
        }
        // Old attention-processor layout: "...attn1.processor.to_q" -> "...attn1.to_q", "to_out" -> "to_out.0".
        auto pos = n.find(".processor.");
        if (pos != std::string::npos) {
            n = n.substr(0, pos) + "." + n.substr(pos + 11);
            if (ends_with(n, "to_out")) n += ".0";
        }
        auto& p = pairs[n];
        (role == 0 ? p.down : role == 1 ? p.up : p.alpha) = t;
    }
    if (!unknown.empty())
        throw Error(path + ": not a UNet LoRA file in diffusers/PEFT naming; unexpected tensor '" + unknown.front() +
                    "'" + (unknown.size() > 1 ? " (and " + std::to_string(unknown.size() - 1) + " more)" : ""));
    if (pairs.empty()) throw Error(path + ": holds no LoRA tensors");

    LoRAConfig config;
    config.targets.clear();
    std::unique_ptr<UNetLoRA> lora(new UNetLoRA(unet, config, true));
    const auto layers = linear_layers(*unet);
    int64_t rank = -1;
    for (auto& [module_path, p] : pairs) {
        if (!p.down.defined() || !p.up.defined())
            throw Error(path + ": adapter '" + module_path + "' lacks its " + (p.down.defined() ? "up/lora_B" : "down/lora_A") + " tensor");
        auto it = layers.find(module_path);
        if (it == layers.end()) throw Error(path + ": adapter for '" + module_path + "', which is not a Linear layer of this UNet");
        auto* lin = it->second;
        const int64_t r = p.down.dim() == 2 ? p.down.size(0) : -1;
        if (p.down.dim() != 2 || p.up.dim() != 2 || p.down.size(1) != lin->in_features ||
            p.up.size(0) != lin->out_features || p.up.size(1) != r) {
            std::ostringstream os;
            os << path << ": adapter '" << module_path << "' has shapes " << p.down.sizes() << " / " << p.up.sizes()
               << ", layer is [" << lin->out_features << "," << lin->in_features << "]";
            throw Error(os.str());
        }
        double scale = 1.0;
        if (p.alpha.defined()) scale = p.alpha.to(torch::kFloat64).item<double>() / static_cast<double>(r);
        auto opts = lin->weight.options();
        auto A = p.down.to(opts).clone().requires_grad_(true);
        auto B = p.up.to(opts).clone().requires_grad_(true);
        lora->attach(module_path, lin, std::make_shared<LoRAAdapter>(A, B, scale, lora->enabled_));
        rank = std::max(rank, r);
        // The target suffix (the part after attnN.) for config().
        const auto dot = module_path.find(".attn");
        std::string suffix = module_path;
        if (dot != std::string::npos) {
            const auto next = module_path.find('.', dot + 1);
            if (next != std::string::npos) suffix = module_path.substr(next + 1);
        }
        if (std::find(lora->config_.targets.begin(), lora->config_.targets.end(), suffix) == lora->config_.targets.end())
            lora->config_.targets.push_back(suffix);
    }
    lora->config_.rank = rank;
    lora->config_.alpha = static_cast<double>(rank);
    return lora;
}

}  // namespace kto
