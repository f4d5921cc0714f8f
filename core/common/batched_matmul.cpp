#include "core/common/batched_matmul.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace kto {
namespace {

// The Fortran BLAS entry point every BLAS exports (OpenBLAS, the reference BLAS, MKL's shared build).
using Sgemm = void (*)(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);

Sgemm sgemm() {
#if TORCH_VERSION_MAJOR < 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 1)
    static const Sgemm f = [] {
        const char* env = std::getenv("KTO_CPU_BMM");
        if (env && std::strcmp(env, "0") == 0) return Sgemm(nullptr);
        // libtorch links its BLAS at load time, so the symbol is in the process's global scope.
        return reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "sgemm_"));
    }();
    return f;
#else
    return nullptr;
#endif
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

// One operand's matrices as BLAS reads them in place: the offset of each matrix (over the flattened
// leading dimensions), whether each is stored row-major (else column-major), and its leading dimension.
struct Operand {
    torch::Tensor keep;  // the tensor read (a contiguous copy where the strides fit neither layout)
    std::vector<int64_t> offsets;
    bool row_major = true;
    int64_t ld = 1;
};

Operand operand(const torch::Tensor& t) {
    Operand o;
    const int64_t r = t.size(-2), c = t.size(-1), sr = t.stride(-2), sc = t.stride(-1);
    o.keep = t;
    if ((sc == 1 || c == 1) && (r == 1 || sr >= std::max<int64_t>(1, c))) {
        o.row_major = true;
        o.ld = r == 1 ? std::max<int64_t>(1, c) : sr;
    } else if ((sr == 1 || r == 1) && (c == 1 || sc >= std::max<int64_t>(1, r))) {
        o.row_major = false;
        o.ld = c == 1 ? std::max<int64_t>(1, r) : sc;
    } else {
        o.keep = t.contiguous();
        o.row_major = true;
        o.ld = std::max<int64_t>(1, c);
    }
    // Offsets of the matrices, leading dimensions flattened in row-major order (strides may be 0).
    const int64_t lead = t.dim() - 2;
    int64_t count = 1;
    for (int64_t d = 0; d < lead; ++d) count *= t.size(d);
    o.offsets.assign(static_cast<size_t>(count), 0);
    for (int64_t i = 0; i < count; ++i) {
        int64_t rest = i, off = 0;
        for (int64_t d = lead - 1; d >= 0; --d) {
            off += (rest % o.keep.size(d)) * o.keep.stride(d);
            rest /= o.keep.size(d);
        }
        o.offsets[static_cast<size_t>(i)] = off;
    }
    return o;
}

// Whether the fast path takes a and b: fp32 CPU tensors of 3+ dims with the same leading sizes,
// matrix sizes that fit BLAS's int, and something to compute.
bool fast_path(const torch::Tensor& a, const torch::Tensor& b) {
    if (!sgemm() || a.dim() < 3 || a.dim() != b.dim()) return false;
    if (!a.device().is_cpu() || !b.device().is_cpu()) return false;
    if (a.scalar_type() != torch::kFloat32 || b.scalar_type() != torch::kFloat32) return false;
    if (a.size(-1) != b.size(-2)) return false;
    for (int64_t d = 0; d + 2 < a.dim(); ++d)
        if (a.size(d) != b.size(d)) return false;
    if (a.numel() == 0 || b.numel() == 0) return false;
    for (const auto& t : {a, b})
        for (int64_t d = 0; d < t.dim(); ++d)
            if (!fits_int(t.size(d)) || !fits_int(t.stride(d) * std::max<int64_t>(1, t.size(d)))) return false;
    return true;
}

// alpha * a @ b for tensors fast_path accepts: a contiguous result.
torch::Tensor product(const torch::Tensor& a, const torch::Tensor& b, double alpha) {
    const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
    std::vector<int64_t> shape(a.sizes().begin(), a.sizes().end());
    shape.back() = n;
    auto c = torch::empty(shape, a.options());
    const Operand oa = operand(a), ob = operand(b);
    const float* pa = oa.keep.data_ptr<float>();
    const float* pb = ob.keep.data_ptr<float>();
    float* pc = c.data_ptr<float>();
    const int64_t count = static_cast<int64_t>(oa.offsets.size());
    // Row-major C = A B is column-major C^T = B^T A^T: a row-major operand is, read column-major, its
    // own transpose ('N'); a column-major one needs 'T'.
    const char tb = ob.row_major ? 'N' : 'T', ta = oa.row_major ? 'N' : 'T';
    const int im = static_cast<int>(n), in = static_cast<int>(m), ik = static_cast<int>(k);
    const int ldb = static_cast<int>(ob.ld), lda = static_cast<int>(oa.ld), ldc = static_cast<int>(n);
    const float fa = static_cast<float>(alpha), zero = 0.0f;
    const Sgemm f = sgemm();
    auto one = [&](int64_t i) {
        f(&tb, &ta, &im, &in, &ik, &fa, pb + ob.offsets[static_cast<size_t>(i)], &ldb,
          pa + oa.offsets[static_cast<size_t>(i)], &lda, &zero, pc + i * m * n, &ldc);
    };
    // Small matrices (attention's): one matrix per thread at a time, BLAS single-threaded inside the
    // parallel region. A few large ones: one after another, each on BLAS's own threads.
    const double macs = double(m) * double(n) * double(k);
    if (count == 1 || (macs >= double(1 << 22) && count < 2 * at::get_num_threads())) {
        for (int64_t i = 0; i < count; ++i) one(i);
    } else {
        at::parallel_for(0, count, 1, [&](int64_t s, int64_t e) {
            for (int64_t i = s; i < e; ++i) one(i);
        });
    }
    return c;
}

struct BatchedMatmulFunction : public torch::autograd::Function<BatchedMatmulFunction> {
    static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a,
                                 const torch::Tensor& b, double alpha) {
        ctx->save_for_backward({a, b});
        ctx->saved_data["alpha"] = alpha;
        return product(a, b, alpha);
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        const auto saved = ctx->get_saved_variables();
        const auto& a = saved[0];
        const auto& b = saved[1];
        const double alpha = ctx->saved_data["alpha"].toDouble();
        const auto& g = grads[0];
        torch::Tensor ga, gb;
        // d(alpha a b)/da = alpha g b^T, d/db = alpha a^T g: transposes are strides, not copies.
        if (ctx->needs_input_grad(0)) ga = fast_path(g, b.transpose(-1, -2)) ? product(g, b.transpose(-1, -2), alpha)
                                                                             : torch::matmul(g, b.transpose(-1, -2)).mul(alpha);
        if (ctx->needs_input_grad(1)) gb = fast_path(a.transpose(-1, -2), g) ? product(a.transpose(-1, -2), g, alpha)
                                                                             : torch::matmul(a.transpose(-1, -2), g).mul(alpha);
        return {ga, gb, torch::Tensor()};
    }
};

}  // namespace

bool cpu_batched_matmul_available() { return sgemm() != nullptr; }

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b, double alpha) {
    if (!fast_path(a, b)) {
        auto p = torch::matmul(a, b);
        return alpha == 1.0 ? p : p.mul(alpha);
    }
    if (torch::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad()))
        return BatchedMatmulFunction::apply(a, b, alpha);
    return product(a, b, alpha);
}

}  // namespace kto
