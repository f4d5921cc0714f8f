#include "core/common/runtime.h"

#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

namespace kto {

int configure_torch_threads(int threads) {
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
