// kernels/cuda/layer_norm.h: fp32 CUDA LayerNorm over the last axis, forward and backward.
// Same layouts, equations and outputs as kernels/cpu/layer_norm.h:
//   x, y, dy, dx [R, C] row-major;  gamma, beta, dgamma, dbeta [C];  mean, rstd [R]
// (written by the forward, read by the backward). Outputs are written, not accumulated.
//
// Forward: one warp per row, statistics in fp32 with two passes over the row (mean, then the
// mean squared deviation; the re-reads of a row of a few KiB hit L1).
// Backward, three kernels:
//   1. dx, one warp per row: the two row means of the dx formula by warp reductions.
//   2. dgamma/dbeta partials: block (32 columns x 8 row lanes) per (column tile, row part);
//      each block sums its rows of g * xhat and g and writes one partial per column.
//   3. dgamma, dbeta = the sum of the partials over the row parts (one thread per column).
// No atomics: the column sums are deterministic run to run. The partials ([parts, C] twice,
// parts <= 256) come from cuda::pool_alloc on `stream` (which must be cuda::stream()).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                        std::int64_t R, std::int64_t C, float eps, cudaStream_t stream);

void layer_norm_backward(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy,
                         float* dx, float* dgamma, float* dbeta, std::int64_t R, std::int64_t C,
                         cudaStream_t stream);

}  // namespace ddpm::cuda
