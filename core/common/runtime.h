#pragma once
// Process-wide libtorch set-up shared by the app and the CLI.
#include <c10/core/ScalarType.h>

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <string>

namespace kto {

// Tunes memory for tensor workloads, once per process: glibc malloc keeps large blocks in the heap
// instead of a fresh mmap per tensor, and tensors of 4 MiB and more get transparent huge pages
// (libtorch 1.13: an allocator of ours; 2.x: THP_MEM_ALLOC_ENABLE). KTO_MALLOC_TUNING=0 turns both
// off. Returns whether it is on. configure_torch_threads calls it; call it before the first tensor.
bool configure_allocator();

// Makes sure OpenBLAS (when libtorch uses it) runs kernels that fit this CPU: Debian 12's OpenBLAS
// falls back to its SSE3 (Prescott) kernels on CPUs newer than itself, 4x slower for fp32 matrix
// products; there it is told the kernels that the CPU's AVX2 / AVX-512 allow. Once per process, before
// the first matrix product; configure_torch_threads calls it. A set OPENBLAS_CORETYPE is kept.
void configure_blas();
// "OpenBLAS SkylakeX", "OpenBLAS Cooperlake (it detected Prescott)", or "" without OpenBLAS.
std::string openblas_kernels();

// Sets libtorch's intra-op thread count: `threads` if > 0, else KTO_THREADS, else the
// number of online cores (Debian's libtorch starts with one thread). Returns the count set.
int configure_torch_threads(int threads = 0);

// Returns free heap memory to the OS (glibc malloc_trim) when more than `keep_bytes` of it is held,
// e.g. between the phases of a large generation (the UNet's activations are freed before the VAE
// decodes at full resolution). Cheap when little is free. No-op without glibc.
void release_free_heap(size_t keep_bytes = size_t(256) << 20);

// Whether this CPU has bf16 matrix instructions (AMX-BF16 or AVX512-BF16, enabled by the OS) and
// libtorch has oneDNN to use them: there bf16 convolutions and matmuls run several times faster than
// fp32 (SD 1.5's UNet step at 512x512, 2 cores: 4.1 s against 28.5 s). Elsewhere bf16 is emulated
// and slower than fp32.
bool cpu_has_bf16_matrix_units();

// Whether a bf16 matrix product on the CPU sums its terms in fp32, as oneDNN does (AVX-512 CPUs and
// newer) and libtorch 2.x's own kernels do. libtorch 1.13's fallback kernel (a CPU without AVX-512,
// e.g. AMD Zen 3) sums in bf16: a 4096-term product then errs by about 7% (fp32 sums: 0.2%), so a
// model in bf16 drifts well beyond bf16's rounding there. Measured once per process by a small product.
bool cpu_bf16_matmul_sums_in_fp32();

// Runs two independent pieces of CPU work at the same time, each on half of libtorch's intra-op
// threads (the caller's share on the calling thread, the other on a worker thread that lives as long as
// this object): for a small model two half-batches on one thread each beat one batch on two, whose
// operators are too small to keep two threads busy (the demo UNet's CFG step on 2 cores: see
// tests/bench/bench_unet demoModelStep). Grad mode is per thread: `worker` runs with gradients off.
// An exception from either piece is rethrown here after both finished.
class CpuPairRunner {
public:
    // Whether it can run here: at least 2 intra-op threads and an OpenMP runtime (libtorch's own,
    // found at run time) whose per-thread thread count it can set. KTO_CPU_PAIRS=0 turns it off.
    static bool available();
    CpuPairRunner();
    ~CpuPairRunner();
    CpuPairRunner(const CpuPairRunner&) = delete;
    CpuPairRunner& operator=(const CpuPairRunner&) = delete;
    void run(const std::function<void()>& worker, const std::function<void()>& caller);

private:
    struct State;
    std::unique_ptr<State> state_;
};

// The dtype a model runs in on the CPU when the user chose none: the app's Settings choice
// (set_cpu_dtype_choice) if any, else KTO_CPU_DTYPE=fp32 or bf16 (any other value is an error
// naming the variable), else bf16 where cpu_has_bf16_matrix_units() and fp32 elsewhere.
c10::ScalarType default_cpu_dtype();
// Whether the CPU dtype was chosen (the app's Settings choice or KTO_CPU_DTYPE), not left automatic;
// a wrong KTO_CPU_DTYPE is the same error as in default_cpu_dtype.
bool cpu_dtype_chosen();
// The app's "Precision on the CPU" setting: "fp32", "bf16", or "" / "auto" for no choice. Process-wide.
void set_cpu_dtype_choice(const std::string& choice);

// fp16 on CUDA, default_cpu_dtype() on the CPU: what generation, comparison and the demo
// model's evaluation run in unless told otherwise.
c10::ScalarType default_inference_dtype(bool cuda);

// "libtorch 1.13.1 (CPU, 2 threads)": a one-line description for --version and logs.
std::string torch_runtime_summary();

// Allocation failures: c10::OutOfMemoryError (CUDA, and CPU in libtorch 2.x), the CPU allocator's
// "not enough memory" error (libtorch 1.13) and std::bad_alloc.
bool is_out_of_memory(const std::exception& e);

// The first line of an exception's message, without libtorch's C++ backtrace.
std::string short_error_message(const std::exception& e);

// Hands the CUDA caching allocator's free blocks back to the driver (after an out-of-memory
// error, before the next job). No-op without CUDA.
void release_cached_device_memory();

// Peak bytes allocated on a CUDA device since the last reset_peak_device_memory(), or -1 when
// libtorch has no CUDA. For benchmarks and the GPU check.
long long peak_device_memory(int device = 0);
void reset_peak_device_memory(int device = 0);

// Fault injection for tests of the out-of-memory paths (a "forced allocation failure"):
// with KTO_FAULT_OOM=<site>[:<n>] the n-th pass (default 1st) of this process through
// fault_point(<site>) throws std::bad_alloc. Sites: "generate-step", "train-step".
void fault_point(const char* site);
// Forgets the passes counted so far (tests that inject more than one fault in a process).
void reset_fault_points();

}  // namespace kto
