// kernels/cuda/group_norm.h: fp32 CUDA GroupNorm (+ AdaGN scale-shift, + SiLU), forward
// and backward. Same layouts, same equations and same outputs as kernels/cpu/group_norm.h:
//   x, y, dy, dx [N, HW, C] channels fastest;  gamma, beta [C];  scale, shift [N, C] or
//   null (AdaGN);  mean, rstd [N, G] (written by the forward, read by the backward).
// Outputs are written, not accumulated; dscale and dshift may be null.
//
// Three paths, chosen per call (see group_norm.cu and group_norm_slab.cu for the design):
//   slab:     C % 32 == 0 and C / G in {4, 8, 16, 32} (the UNet's shapes): blocks own whole
//             128-byte lines (32 channels) of a pixel range; a thread-block cluster (sm_90)
//             covers a sample's pixels; x (and dy) read once, y (dx) written once.
//   fused:    one thread block per (n, a few adjacent groups) holds its slice of x (and of
//             dy in the backward) in registers, so x is read from DRAM once and y written
//             once; used while the slice fits (about 16K floats forward, 8K backward).
//   two-pass: statistics kernel, then an elementwise kernel (big groups).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

void group_norm_forward(const float* x, const float* gamma, const float* beta, const float* scale,
                        const float* shift, float* y, float* mean, float* rstd, std::int64_t N, std::int64_t HW,
                        std::int64_t C, std::int64_t G, float eps, bool fuse_silu, cudaStream_t stream);

void group_norm_backward(const float* x, const float* gamma, const float* beta, const float* scale,
                         const float* shift, const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dgamma, float* dbeta, float* dscale, float* dshift, std::int64_t N, std::int64_t HW,
                         std::int64_t C, std::int64_t G, bool fuse_silu, cudaStream_t stream);

// True when a call with this shape (and 16-byte aligned pointers) takes the slab or fused path;
// tests use it to make sure both paths are exercised.
bool group_norm_forward_is_fused(std::int64_t HW, std::int64_t C, std::int64_t G);
bool group_norm_backward_is_fused(std::int64_t HW, std::int64_t C, std::int64_t G);

}  // namespace ddpm::cuda
