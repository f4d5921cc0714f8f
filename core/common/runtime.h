#pragma once
// Process-wide libtorch set-up shared by the app and the CLI.
#include <string>

namespace kto {

// Sets libtorch's intra-op thread count: `threads` if > 0, else KTO_THREADS, else the
// number of online cores (Debian's libtorch starts with one thread). Returns the count set.
int configure_torch_threads(int threads = 0);

// "libtorch 1.13.1 (CPU, 2 threads)": a one-line description for --version and logs.
std::string torch_runtime_summary();

}  // namespace kto
