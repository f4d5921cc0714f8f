#pragma once
// Batched matrix products for attention on the CPU.
#include <torch/torch.h>

namespace kto {

// alpha * (a @ b) over equal leading (batch) dimensions: a [..., m, k], b [..., k, n] -> [..., m, n],
// with autograd; what torch::matmul(a, b).mul(alpha) computes for such tensors.
//
// libtorch 1.13's CPU bmm runs an fp32 batch as a loop of dispatched single-matrix products, each
// after three `select` calls, on one thread: for attention's many small matrices (the demo UNet's
// training batch: 128 matrices of 64 x 24 x 77 per product) that costs 2 to 3 times the arithmetic.
// Where it pays (fp32 CPU tensors, libtorch before 2.1, the BLAS `sgemm_` that libtorch loaded found
// at run time), this spreads the matrices over the intra-op threads and calls `sgemm_` on each in
// place: no copies for a transposed operand, the BLAS libtorch's loop calls, so the same results up to
// rounding; forward and backward both. Elsewhere (CUDA, other dtypes, libtorch 2.1+, whose
// bmm calls its BLAS without the per-matrix dispatch) it is torch::matmul. KTO_CPU_BMM=0 turns the
// fast path off (for comparisons).
torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b, double alpha = 1.0);

// Whether batched_matmul takes its own path for fp32 CPU tensors in this process.
bool cpu_batched_matmul_available();

}  // namespace kto
