#pragma once
// Process-wide libtorch set-up shared by the app and the CLI.
#include <string>

namespace kto {

// Tunes glibc malloc for tensor workloads (keeps large blocks in the heap instead of a fresh
// mmap per tensor); once per process, KTO_MALLOC_TUNING=0 turns it off. Returns whether it is on.
// configure_torch_threads calls it.
bool configure_allocator();

// Sets libtorch's intra-op thread count: `threads` if > 0, else KTO_THREADS, else the
// number of online cores (Debian's libtorch starts with one thread). Returns the count set.
int configure_torch_threads(int threads = 0);

// "libtorch 1.13.1 (CPU, 2 threads)": a one-line description for --version and logs.
std::string torch_runtime_summary();

}  // namespace kto
