// kernels/cuda/optim.h: CUDA versions of kernels/cpu/optim.h (fp32): fused AdamW, the
// two-level sum of squares behind the gradient norm, in-place scaling and the EMA update.
// Each update is one grid-stride kernel over the whole flat slab.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

// Per-step constants of AdamW, rounded from double by the caller; see kernels/cpu/optim.h.
struct AdamWScalars {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, step_size, inv_sqrt_bc2, eps, decay;
};

// One fused kernel: m, v and p updated in a single pass (7 floats of traffic per element).
void adamw_step(float* p, const float* g, float* m, float* v, std::int64_t n, const AdamWScalars& s,
                cudaStream_t stream);

// sum_i x[i]^2 in double: each block reduces a grid-stride share into one double partial,
// then one block sums the partials. The grid depends only on n, so the result is the same
// bits run after run. Scratch comes from the pool; waits for `stream` to return the value.
// `stream` must be ddpm::cuda::stream() (the pool's stream).
double sum_squares(const float* x, std::int64_t n, cudaStream_t stream);

// x[i] *= alpha
void scale_inplace(float* x, std::int64_t n, float alpha, cudaStream_t stream);

// ema[i] = decay ema[i] + one_minus_decay p[i]
void ema_update(float* ema, const float* p, std::int64_t n, float decay, float one_minus_decay,
                cudaStream_t stream);

}  // namespace ddpm::cuda
