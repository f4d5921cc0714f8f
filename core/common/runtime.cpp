#include "core/common/runtime.h"

#include "core/common/error.h"

#include <torch/torch.h>
#include <sys/mman.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <dlfcn.h>
#include <strings.h>
#include <unistd.h>
#if TORCH_VERSION_MAJOR < 2
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#endif
#if defined(KTO_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

namespace kto {

namespace {

#if TORCH_VERSION_MAJOR < 2
// libtorch's CPU allocator with transparent huge pages for large blocks, as libtorch 2.x does with
// THP_MEM_ALLOC_ENABLE=1: blocks of 4 MiB and more are 2 MiB-aligned and madvise'd MADV_HUGEPAGE,
// so activations and attention scores fault in 2 MiB at a time instead of 4 KiB. Measured on the
// SD 1.5 UNet step at 512x512 (2 cores, a VM where every page fault is expensive): 21-32 s per
// step with 4 KiB pages, 12 s with huge pages.
class HugePageCpuAllocator final : public c10::Allocator {
public:
    c10::DataPtr allocate(size_t n) const override {
        void* p = allocate_raw(n);
        return {p, p, &c10::free_cpu, c10::Device(c10::DeviceType::CPU)};
    }
    c10::DeleterFnPtr raw_deleter() const override { return &c10::free_cpu; }

private:
    static void* allocate_raw(size_t n) {
        constexpr size_t kHuge = size_t(2) << 20;
        if (n >= 2 * kHuge) {
            const size_t size = (n + kHuge - 1) / kHuge * kHuge;
            void* p = nullptr;
            if (posix_memalign(&p, kHuge, size) == 0 && p) {
                madvise(p, size, MADV_HUGEPAGE);  // advice only: without THP it changes nothing
                return p;
            }
        }
        return c10::alloc_cpu(n);  // 64-byte aligned; throws c10::Error when memory is exhausted
    }
};
#endif

void enable_huge_pages_for_tensors() {
#if TORCH_VERSION_MAJOR < 2
    static HugePageCpuAllocator allocator;
    c10::SetCPUAllocator(&allocator, /*priority=*/1);
#else
    setenv("THP_MEM_ALLOC_ENABLE", "1", /*overwrite=*/0);  // read by libtorch at its first CPU allocation
#endif
}

// What the CPU offers and the OS enables (CPUID, and xgetbv for the register states the OS saves),
// read once. All false where not x86.
struct CpuFeatures {
    bool avx2 = false, fma = false;
    bool avx512_skx = false;   // AVX-512 F, DQ, CD, BW, VL (Skylake-X and later)
    bool avx512_bf16 = false, amx_bf16 = false;
    bool ymm_state = false, zmm_state = false, amx_state = false;
};

const CpuFeatures& cpu_features() {
    static const CpuFeatures f = [] {
        CpuFeatures r;
#if defined(__x86_64__) || defined(__i386__)
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (__get_cpuid_max(0, nullptr) < 7) return r;
        __cpuid_count(1, 0, a, b, c, d);
        if (!(c & (1u << 27))) return r;  // OSXSAVE: xgetbv tells which register states the OS saves
        r.fma = (c >> 12) & 1u;
        unsigned lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        r.ymm_state = (lo & 0x6u) == 0x6u;                // XMM, YMM
        r.zmm_state = (lo & 0xE6u) == 0xE6u;              // XMM, YMM, opmask, ZMM
        r.amx_state = ((lo >> 17) & 3u) == 3u;            // XTILECFG, XTILEDATA
        __cpuid_count(7, 0, a, b, c, d);
        r.avx2 = (b >> 5) & 1u;
        const unsigned avx512 = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);  // F DQ CD BW VL
        r.avx512_skx = (b & avx512) == avx512;
        r.amx_bf16 = (d >> 22) & 1u;
        __cpuid_count(7, 1, a, b, c, d);
        r.avx512_bf16 = (a >> 5) & 1u;
#endif
        return r;
    }();
    return f;
}

// The OpenBLAS kernel set that suits this CPU by its features: "Cooperlake" (AVX-512 with BF16),
// "SkylakeX" (AVX-512 F/CD/BW/DQ/VL), "Haswell" (AVX2 + FMA), each only where the OS saves the
// register state it needs; "" for none of them.
std::string openblas_core_for_cpu_features() {
    const CpuFeatures& f = cpu_features();
    if (f.avx512_skx && f.zmm_state) return f.avx512_bf16 ? "Cooperlake" : "SkylakeX";
    if (f.avx2 && f.fma && f.ymm_state) return "Haswell";
    return {};
}

std::string g_openblas_note;  // set once by configure_openblas_kernels

// Debian 12's OpenBLAS (0.3.21, built for many CPUs) picks its kernels by CPU model number, and
// on a CPU newer than itself (Emerald Rapids, model 0xCF) it takes its Prescott (SSE3) kernels:
// fp32 matrix products 4x slower (1024x1024 sgemm on 2 cores: 13 against 54 GFLOP/s), the VAE
// phase of train-demo 25% slower. Where it reports Prescott on a CPU with AVX2 or AVX-512, this
// sets OPENBLAS_CORETYPE (OpenBLAS's own override) to the kernels the features allow and has
// OpenBLAS choose again, before any matrix product runs. A user's OPENBLAS_CORETYPE is left alone;
// without OpenBLAS (MKL in libtorch 2.x builds) nothing happens: its entry points are looked up
// at run time.
void configure_openblas_kernels() {
    using NameFn = char* (*)();
    using VoidFn = void (*)();
    const auto corename = reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
    const auto quit = reinterpret_cast<VoidFn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
    const auto init = reinterpret_cast<VoidFn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
    if (!corename) return;
    const std::string detected = corename() ? corename() : "";
    g_openblas_note = "OpenBLAS " + detected;
    if (std::getenv("OPENBLAS_CORETYPE") || !quit || !init || strcasecmp(detected.c_str(), "Prescott") != 0) return;
    const std::string wanted = openblas_core_for_cpu_features();
    if (wanted.empty()) return;
    setenv("OPENBLAS_CORETYPE", wanted.c_str(), 0);
    quit();
    init();
    const std::string now = corename() ? corename() : "";
    g_openblas_note = "OpenBLAS " + now + (now != detected ? " (it detected " + detected + ")" : "");
}

}  // namespace

bool configure_allocator() {
#if defined(__GLIBC__)
    static const bool tuned = [] {
        if (const char* env = std::getenv("KTO_MALLOC_TUNING"); env && std::string(env) == "0") return false;
        enable_huge_pages_for_tensors();
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

void release_free_heap(size_t keep_bytes) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    const struct mallinfo2 info = mallinfo2();
    if (info.fordblks > keep_bytes) malloc_trim(0);
#else
    (void)keep_bytes;
#endif
}

std::string openblas_kernels() {
    configure_blas();
    return g_openblas_note;
}

void configure_blas() {
    static std::once_flag once;
    std::call_once(once, configure_openblas_kernels);
}

int configure_torch_threads(int threads) {
    configure_allocator();
    configure_blas();
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

bool cpu_has_bf16_matrix_units() {
    const CpuFeatures& f = cpu_features();
    return at::hasMKLDNN() && ((f.amx_bf16 && f.amx_state) || (f.avx512_bf16 && f.zmm_state));
}

bool cpu_bf16_matmul_sums_in_fp32() {
    // 4096 ones summed in bf16 stop at 256 (8 bits of mantissa: 256 + 1 rounds back to 256); in fp32
    // they reach 4096, which bf16 holds exactly. Both operands in the layout of a plain x @ w.
    static const bool fp32_sums = [] {
        torch::NoGradGuard no_grad;
        const auto ones = torch::ones({8, 4096}, torch::kBFloat16);
        const auto w = torch::ones({4096, 8}, torch::kBFloat16);
        return torch::mm(ones, w).to(torch::kFloat32).min().item<float>() > 4000.0f;
    }();
    return fp32_sums;
}

namespace {
using OmpSetThreads = void (*)(int);
using OmpMaxThreads = int (*)();
// libtorch's OpenMP runtime, whichever it is (Debian's libgomp, or the renamed copy pytorch.org's
// builds bundle): the symbols the process already has, not a second runtime linked in here.
OmpSetThreads omp_set_threads() {
    static const auto f = reinterpret_cast<OmpSetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    return f;
}
OmpMaxThreads omp_max_threads() {
    static const auto f = reinterpret_cast<OmpMaxThreads>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
    return f;
}
}  // namespace

struct CpuPairRunner::State {
    std::mutex mutex;
    std::condition_variable cv;
    const std::function<void()>* task = nullptr;  // guarded by mutex
    bool done = false, quit = false;              // guarded by mutex
    std::exception_ptr error;                     // guarded by mutex
    int worker_threads = 1, caller_threads = 1;
    std::thread thread;
};

bool CpuPairRunner::available() {
    if (const char* e = std::getenv("KTO_CPU_PAIRS"); e && std::string(e) == "0") return false;
    return omp_set_threads() && omp_max_threads() && torch::get_num_threads() >= 2;
}

CpuPairRunner::CpuPairRunner() : state_(std::make_unique<State>()) {
    if (!available())
        throw Error("CpuPairRunner: needs 2 or more threads and libtorch's OpenMP runtime (or KTO_CPU_PAIRS is 0)");
    const int n = torch::get_num_threads();
    State* s = state_.get();
    s->worker_threads = n / 2;
    s->caller_threads = n - n / 2;
    s->thread = std::thread([s] {
        at::get_num_threads();  // libtorch's per-thread OpenMP set-up first, then this thread's share
        omp_set_threads()(s->worker_threads);
        torch::NoGradGuard no_grad;
        std::unique_lock<std::mutex> lock(s->mutex);
        for (;;) {
            s->cv.wait(lock, [s] { return s->quit || s->task; });
            if (s->quit) return;
            const std::function<void()>* task = s->task;
            lock.unlock();
            std::exception_ptr error;
            try {
                (*task)();
            } catch (...) {
                error = std::current_exception();
            }
            lock.lock();
            s->error = error;
            s->task = nullptr;
            s->done = true;
            s->cv.notify_all();
        }
    });
}

CpuPairRunner::~CpuPairRunner() {
    {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->quit = true;
    }
    state_->cv.notify_all();
    state_->thread.join();
}

void CpuPairRunner::run(const std::function<void()>& worker, const std::function<void()>& caller) {
    State* s = state_.get();
    {
        std::lock_guard<std::mutex> lock(s->mutex);
        s->task = &worker;
        s->done = false;
        s->error = nullptr;
    }
    s->cv.notify_all();
    const int before = omp_max_threads()();
    omp_set_threads()(s->caller_threads);
    std::exception_ptr error;
    try {
        caller();
    } catch (...) {
        error = std::current_exception();
    }
    omp_set_threads()(before);
    std::unique_lock<std::mutex> lock(s->mutex);
    s->cv.wait(lock, [s] { return s->done; });
    if (error) std::rethrow_exception(error);
    if (s->error) std::rethrow_exception(s->error);
}

namespace {
std::mutex cpu_dtype_mutex;
std::string cpu_dtype_choice;  // guarded by cpu_dtype_mutex
}  // namespace

void set_cpu_dtype_choice(const std::string& choice) {
    if (!choice.empty() && choice != "auto" && choice != "fp32" && choice != "bf16")
        throw Error("CPU precision '" + choice + "': expected auto, fp32 or bf16");
    std::lock_guard<std::mutex> lock(cpu_dtype_mutex);
    cpu_dtype_choice = choice == "auto" ? std::string() : choice;
}

namespace {
// The dtype the user chose for the CPU: the app's Settings choice, else KTO_CPU_DTYPE (any other
// value is an error naming the variable); nullopt when left automatic.
std::optional<c10::ScalarType> chosen_cpu_dtype() {
    {
        std::lock_guard<std::mutex> lock(cpu_dtype_mutex);
        if (cpu_dtype_choice == "fp32") return c10::ScalarType::Float;
        if (cpu_dtype_choice == "bf16") return c10::ScalarType::BFloat16;
    }
    if (const char* env = std::getenv("KTO_CPU_DTYPE"); env && *env) {
        const std::string v(env);
        if (v == "fp32" || v == "float32") return c10::ScalarType::Float;
        if (v == "bf16" || v == "bfloat16") return c10::ScalarType::BFloat16;
        throw Error("KTO_CPU_DTYPE=" + v + ": expected fp32 or bf16 (or unset it)");
    }
    return std::nullopt;
}
}  // namespace

c10::ScalarType default_cpu_dtype() {
    return chosen_cpu_dtype().value_or(cpu_has_bf16_matrix_units() ? c10::ScalarType::BFloat16
                                                                     : c10::ScalarType::Float);
}

bool cpu_dtype_chosen() { return chosen_cpu_dtype().has_value(); }

c10::ScalarType default_inference_dtype(bool cuda) {
    return cuda ? c10::ScalarType::Half : default_cpu_dtype();
}

std::string torch_runtime_summary() {
    std::ostringstream os;
    os << "libtorch " << TORCH_VERSION_MAJOR << "." << TORCH_VERSION_MINOR << "."
       << TORCH_VERSION_PATCH << " (" << (torch::cuda::is_available() ? "CUDA available" : "CPU")
       << ", " << torch::get_num_threads() << " threads"
       << (cpu_has_bf16_matrix_units() ? ", bf16 matrix units" : "")
       << (cpu_bf16_matmul_sums_in_fp32() ? "" : ", bf16 products sum in bf16");
    if (const std::string blas = openblas_kernels(); !blas.empty()) os << ", " << blas;
    os << ")";
    return os.str();
}

bool is_out_of_memory(const std::exception& e) {
    if (dynamic_cast<const std::bad_alloc*>(&e)) return true;
    if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
    if (dynamic_cast<const c10::Error*>(&e)) {
        // libtorch 1.13's CPU allocator and some CUDA paths raise a plain c10::Error.
        const std::string m = short_error_message(e);
        return m.find("not enough memory") != std::string::npos || m.find("out of memory") != std::string::npos ||
               m.find("can't allocate memory") != std::string::npos;
    }
    return false;
}

std::string short_error_message(const std::exception& e) {
    std::string m;
    if (const auto* ce = dynamic_cast<const c10::Error*>(&e))
        m = ce->what_without_backtrace();
    else if (dynamic_cast<const std::bad_alloc*>(&e))
        m = "an allocation failed";
    else
        m = e.what();
    if (auto nl = m.find('\n'); nl != std::string::npos) m.resize(nl);
    // CUDA's out-of-memory text goes on about the caching allocator's internals after the figures.
    if (auto more = m.find(" Including non-PyTorch memory"); more != std::string::npos) m.resize(more);
    while (!m.empty() && (m.back() == ' ' || m.back() == '.')) m.pop_back();
    return m;
}

void release_cached_device_memory() {
#if defined(KTO_WITH_CUDA)
    if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

long long peak_device_memory(int device) {
#if defined(KTO_WITH_CUDA)
    if (!torch::cuda::is_available()) return -1;
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    // Index 0 is StatType::AGGREGATE (an enum whose namespace moved between libtorch versions).
    return static_cast<long long>(stats.allocated_bytes[0].peak);
#else
    (void)device;
    return -1;
#endif
}

void reset_peak_device_memory(int device) {
#if defined(KTO_WITH_CUDA)
    if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
#else
    (void)device;
#endif
}

namespace {
std::mutex fault_mutex;
std::map<std::string, long> fault_passes;  // per site
}  // namespace

void fault_point(const char* site) {
    const char* env = std::getenv("KTO_FAULT_OOM");
    if (!env || !*env) return;
    std::string spec(env);
    long nth = 1;
    if (auto colon = spec.find(':'); colon != std::string::npos) {
        nth = std::atol(spec.c_str() + colon + 1);
        spec.resize(colon);
    }
    if (spec != site) return;
    std::lock_guard<std::mutex> lock(fault_mutex);
    if (++fault_passes[spec] == nth) throw std::bad_alloc();
}

void reset_fault_points() {
    std::lock_guard<std::mutex> lock(fault_mutex);
    fault_passes.clear();
}

}  // namespace kto
