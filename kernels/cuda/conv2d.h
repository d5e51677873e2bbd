// kernels/cuda/conv2d.h: 2-D convolution on CUDA through cuDNN (fp32, NHWC tensors,
// KRSC filter), the fast path of kernels/cpu/conv2d.h with the same sizes and meaning.
//
// Each distinct geometry (n, h, w, cin, cout, kh, kw, stride, pad) gets a plan on first
// use: cuDNN descriptors plus the forward, data-gradient and filter-gradient algorithms
// chosen by cuDNN's heuristic, and their workspace sizes. Plans are cached for the life of
// the process; workspaces come from the stream-ordered pool (cuda::pool_alloc), which
// allocates on cuda::stream(), so `stream` must be cuda::stream().
// Math is exact fp32 (CUDNN_FMA_MATH): no TF32 tensor cores.
// Outputs are overwritten (not accumulated).
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

#include "kernels/common/conv2d_geometry.h"

namespace ddpm::cuda {

// y [n, ho, wo, cout] = conv(x, w) + bias; bias [cout] may be nullptr.
void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g,
                    cudaStream_t stream);
// gx [n, h, w, cin] = dL/dx from gy [n, ho, wo, cout].
void conv2d_backward_data(const float* gy, const float* w, float* gx, const Conv2dGeometry& g, cudaStream_t stream);
// gw [cout, kh, kw, cin] = dL/dW, summed over the batch.
void conv2d_backward_filter(const float* x, const float* gy, float* gw, const Conv2dGeometry& g, cudaStream_t stream);
// gb [cout] = sum of gy over n, oy, ox.
void conv2d_backward_bias(const float* gy, float* gb, const Conv2dGeometry& g, cudaStream_t stream);

// Number of cached plans (one per distinct geometry seen so far); for tests.
std::size_t conv2d_plan_count();

}  // namespace ddpm::cuda
