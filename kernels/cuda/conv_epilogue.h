// kernels/cuda/conv_epilogue.h: the elementwise tail of a convolution, fused into one pass
// over its output, and the per-sample reduction its backward needs. fp32, NHWC, plain
// pointers; the CPU reference is cpu::conv2d_epilogue / cpu::conv2d_backward_sample_bias
// (kernels/cpu/conv2d.h), and the GPU test compares the two bit for bit (forward).
//
//   y           [n, pixels, c]   the convolution output (pixels = ho*wo), updated in place
//   bias        [c]              per output channel (the layer's own bias)
//   sample_bias [n, c]           per sample and channel (the UNet's timestep-embedding projection)
//   residual    [n, pixels, c]   per element (the ResnetBlock's skip connection)
//   y = ((y + bias[c]) + sample_bias[n, c]) + residual[n, p, c]
// Any of the three may be nullptr. The additions run in that order, the order of the separate
// adds this replaces, so the fused result is bitwise the unfused one. y must not alias them.
//
// Bytes per call, for E = n*pixels*c elements: read y (4E), read the residual (4E when
// present), write y (4E); bias and sample_bias are c and n*c floats, served from cache.
// cudnnAddTensor for the bias alone moved 8E, and each separate add another 12E
// (read two operands, write a third tensor).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

// Requires n*pixels*c <= 2^31 - 1 (as the cuDNN path does). Runs on `stream`.
void conv2d_epilogue(float* y, const float* bias, const float* sample_bias, const float* residual, std::int64_t n,
                     std::int64_t pixels, std::int64_t c, cudaStream_t stream);

// gsb [n, c] = sum over pixels of gy [n, pixels, c]; when gb is not nullptr, also
// gb [c] = sum over n of gsb[n, c]. Deterministic (no atomics): each sum has a fixed order.
void conv2d_backward_sample_bias(const float* gy, float* gsb, float* gb, std::int64_t n, std::int64_t pixels,
                                 std::int64_t c, cudaStream_t stream);

}  // namespace ddpm::cuda
