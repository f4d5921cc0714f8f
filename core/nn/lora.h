#pragma once
// LoRA adapters on the UNet's Linear layers (attention projections by default), applied at forward
// time without fusing: y = W x + b + scale * B(A x), scale = alpha / rank. Disabling the adapters
// gives back the base UNet exactly, so a trainer's reference model is the same UNet with adapters off.
//
// Files: `pytorch_lora_weights.safetensors` in diffusers/PEFT naming
// (`unet.<module path>.lora_A.weight` [rank,in], `unet.<module path>.lora_B.weight` [out,rank]);
// loading also reads the older diffusers names `<path>.lora.down.weight` / `.lora.up.weight`
// (with or without the `unet.` prefix) and `<path>.processor.<proj>_lora.down/up.weight`.
// Thread-safety: not thread-safe; attach/enable/disable between forward passes only.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/nn/unet.h"

namespace kto {

struct LoRAConfig {
    int64_t rank = 4;
    // scale = alpha / rank; alpha == rank gives scale 1 (what diffusers assumes when loading).
    double alpha = 4;
    // Module-path suffixes of the Linear layers to adapt.
    std::vector<std::string> targets = {"to_q", "to_k", "to_v", "to_out.0"};
    // Adapter dtype; undefined: the dtype of the adapted weight.
    c10::optional<torch::ScalarType> dtype;
};

// One adapter: A [rank,in] (Kaiming-uniform init), B [out,rank] (zero init).
class LoRAAdapter : public LinearDelta {
public:
    LoRAAdapter(torch::Tensor A, torch::Tensor B, double scale, std::shared_ptr<bool> enabled);
    bool active() const override { return *enabled_; }
    torch::Tensor delta(const torch::Tensor& x) override;
    std::vector<torch::Tensor> adapter_parameters() const override { return {A, B}; }

    torch::Tensor A, B;
    double scale;

private:
    std::shared_ptr<bool> enabled_;
};

// The set of adapters attached to one UNet. Detaches them when destroyed.
class UNetLoRA {
public:
    // Attaches fresh adapters (B = 0, so the output is unchanged) to every Linear whose module path
    // ends with one of config.targets. Throws kto::Error when no layer matches.
    UNetLoRA(UNet2DConditionModel unet, const LoRAConfig& config);
    ~UNetLoRA();
    UNetLoRA(const UNetLoRA&) = delete;
    UNetLoRA& operator=(const UNetLoRA&) = delete;

    // Reads a LoRA file and attaches its adapters (rank from the tensors; scale from `.alpha` entries
    // when present, else 1). Every adapter must name a Linear layer of `unet` with matching shapes.
    static std::unique_ptr<UNetLoRA> load(UNet2DConditionModel unet, const std::string& path);

    void set_enabled(bool on) { *enabled_ = on; }
    bool enabled() const { return *enabled_; }

    // Trainable tensors (A and B of every adapter).
    std::vector<torch::Tensor> parameters() const;
    // PEFT-named tensors; B is stored multiplied by alpha/rank so that loaders assuming
    // alpha == rank (diffusers) compute the same function.
    std::map<std::string, torch::Tensor> state_dict() const;
    // Writes state_dict() to `path` (atomic) with {"format":"pt"} metadata.
    void save(const std::string& path) const;

    const LoRAConfig& config() const { return config_; }
    // module path -> adapter
    const std::map<std::string, std::shared_ptr<LoRAAdapter>>& adapters() const { return adapters_; }

private:
    UNetLoRA(UNet2DConditionModel unet, LoRAConfig config, bool);
    void attach(const std::string& path, LinearImpl* layer, std::shared_ptr<LoRAAdapter> adapter);

    UNet2DConditionModel unet_;
    LoRAConfig config_;
    std::shared_ptr<bool> enabled_;
    std::map<std::string, std::shared_ptr<LoRAAdapter>> adapters_;
    std::map<std::string, LinearImpl*> layers_;
};

}  // namespace kto
