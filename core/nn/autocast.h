#pragma once
// CUDA and CPU autocast (mixed precision) as a scope, across libtorch versions (the API moved in 2.4).
// Used by the trainer's forward passes and by activation checkpointing, whose recomputation in
// backward must run under the autocast state its forward ran under (as torch.utils.checkpoint).
#include <torch/torch.h>
#include <torch/version.h>

#include <ATen/autocast_mode.h>

namespace kto {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
inline bool cuda_autocast_enabled() { return at::autocast::is_autocast_enabled(at::kCUDA); }
inline torch::ScalarType cuda_autocast_dtype() { return at::autocast::get_autocast_dtype(at::kCUDA); }
inline void set_cuda_autocast(bool on, torch::ScalarType dtype) {
    at::autocast::set_autocast_enabled(at::kCUDA, on);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
}
#else
inline bool cuda_autocast_enabled() { return at::autocast::is_enabled(); }
inline torch::ScalarType cuda_autocast_dtype() { return at::autocast::get_autocast_gpu_dtype(); }
inline void set_cuda_autocast(bool on, torch::ScalarType dtype) {
    at::autocast::set_enabled(on);
    at::autocast::set_autocast_gpu_dtype(dtype);
}
#endif

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
inline bool cpu_autocast_enabled() { return at::autocast::is_autocast_enabled(at::kCPU); }
inline torch::ScalarType cpu_autocast_dtype() { return at::autocast::get_autocast_dtype(at::kCPU); }
inline void set_cpu_autocast(bool on, torch::ScalarType dtype) {
    at::autocast::set_autocast_enabled(at::kCPU, on);
    at::autocast::set_autocast_dtype(at::kCPU, dtype);
}
#else
inline bool cpu_autocast_enabled() { return at::autocast::is_cpu_enabled(); }
inline torch::ScalarType cpu_autocast_dtype() { return at::autocast::get_autocast_cpu_dtype(); }
inline void set_cpu_autocast(bool on, torch::ScalarType dtype) {
    at::autocast::set_cpu_enabled(on);
    at::autocast::set_autocast_cpu_dtype(dtype);
}
#endif

// Autocast as a scope: on CUDA (fp16 or bf16), or with `cpu` on the CPU (bf16: convolutions and
// matmuls in bf16, which oneDNN runs on AMX / AVX512-BF16; see cpu_has_bf16_matrix_units).
class AutocastScope {
public:
    AutocastScope(bool on, torch::ScalarType dtype, bool cpu = false) : on_(on), cpu_(cpu) {
        if (!on_) return;
        prev_enabled_ = cpu_ ? cpu_autocast_enabled() : cuda_autocast_enabled();
        prev_dtype_ = cpu_ ? cpu_autocast_dtype() : cuda_autocast_dtype();
        if (cpu_) set_cpu_autocast(true, dtype);
        else set_cuda_autocast(true, dtype);
        at::autocast::increment_nesting();
    }
    ~AutocastScope() {
        if (!on_) return;
        if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        if (cpu_) set_cpu_autocast(prev_enabled_, prev_dtype_);
        else set_cuda_autocast(prev_enabled_, prev_dtype_);
    }
    AutocastScope(const AutocastScope&) = delete;
    AutocastScope& operator=(const AutocastScope&) = delete;

private:
    bool on_;
    bool cpu_;
    bool prev_enabled_ = false;
    torch::ScalarType prev_dtype_ = torch::kHalf;
};

}  // namespace kto
