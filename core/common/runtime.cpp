#include "core/common/runtime.h"

#include <torch/torch.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdlib>
#include <sstream>
#include <string>

namespace kto {

bool configure_allocator() {
#if defined(__GLIBC__)
    static const bool tuned = [] {
        if (const char* env = std::getenv("KTO_MALLOC_TUNING"); env && std::string(env) == "0") return false;
        // libtorch's CPU allocator is plain malloc. Attention maps and activations of a training
        // step are tens of MB each; above glibc's mmap threshold (32 MiB at most, adaptive) every
        // one is a fresh mmap + page faults + munmap, and freed heap tops are trimmed back to the
        // kernel. Measured on the demo UNet (batch 32, 2 cores): 2.1 s/step with the defaults,
        // 0.45 s/step with large blocks kept in the heap. Memory freed stays reusable by the
        // process instead of going back to the OS at once (bounded by the trim threshold).
        constexpr int kThreshold = 1 << 30;  // 1 GiB
        const bool ok = mallopt(M_MMAP_THRESHOLD, kThreshold) == 1 &&
                        mallopt(M_TRIM_THRESHOLD, kThreshold) == 1 &&
                        mallopt(M_TOP_PAD, 64 << 20) == 1;
        return ok;
    }();
    return tuned;
#else
    return false;
#endif
}

int configure_torch_threads(int threads) {
    configure_allocator();
    if (threads <= 0) {
        if (const char* env = std::getenv("KTO_THREADS")) threads = std::atoi(env);
    }
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? static_cast<int>(n) : 1;
    }
    torch::set_num_threads(threads);
    return threads;
}

std::string torch_runtime_summary() {
    std::ostringstream os;
    os << "libtorch " << TORCH_VERSION_MAJOR << "." << TORCH_VERSION_MINOR << "."
       << TORCH_VERSION_PATCH << " (" << (torch::cuda::is_available() ? "CUDA available" : "CPU")
       << ", " << torch::get_num_threads() << " threads)";
    return os.str();
}

}  // namespace kto
