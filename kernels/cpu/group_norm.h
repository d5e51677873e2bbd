// kernels/cpu/group_norm.h: the reference GroupNorm (+ AdaGN scale-shift, + SiLU), forward
// and backward. T is float or double; statistics and sums are accumulated in double.
//
// Layout: x, y, dy, dx are [N, HW, C] with channels fastest (NHWC with H*W flattened, or
// [N, S, C] tokens). Group g owns channels [g*Cg, (g+1)*Cg), Cg = C / G, over every
// pixel: its M = HW * Cg elements are a strided set of channel runs.
//   gamma, beta: [C]   scale, shift: [N, C] or null (AdaGN)   mean, rstd: [N, G]
//
// Forward (PyTorch GroupNorm semantics: biased variance, eps inside the square root):
//   mu = mean_group(x),  var = mean_group((x - mu)^2),  rstd = 1 / sqrt(var + eps)
//   xhat = (x - mu) * rstd
//   a = xhat * gamma[c] + beta[c]
//   z = a * (1 + scale[n,c]) + shift[n,c]      (z = a without AdaGN)
//   y = silu(z) = z * sigmoid(z)                 (y = z without SiLU)
//
// Backward, with s1 = 1 + scale[n,c] (1 without AdaGN) and dz = dy * act'(z),
// silu'(z) = sig(z) * (1 + z * (1 - sig(z))):
//   dshift[n,c] = sum_hw dz                      dscale[n,c] = sum_hw dz * a
//   dbeta[c]    = sum_{n,hw} dz * s1             dgamma[c]   = sum_{n,hw} dz * s1 * xhat
//   dxhat       = dz * s1 * gamma[c]
//   dx          = rstd * (dxhat - mean_group(dxhat) - xhat * mean_group(dxhat * xhat))
// The last line is the derivative of the normalization through mu and rstd:
// d mu/dx = 1/M and d rstd/dx = -rstd^3 (x - mu) / M.
// Outputs are written, not accumulated; dscale and dshift may be null.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

template <class T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, const T* scale, const T* shift, T* y, T* mean,
                        T* rstd, std::int64_t N, std::int64_t HW, std::int64_t C, std::int64_t G, double eps,
                        bool fuse_silu);

template <class T>
void group_norm_backward(const T* x, const T* gamma, const T* beta, const T* scale, const T* shift, const T* mean,
                         const T* rstd, const T* dy, T* dx, T* dgamma, T* dbeta, T* dscale, T* dshift,
                         std::int64_t N, std::int64_t HW, std::int64_t C, std::int64_t G, bool fuse_silu);

}  // namespace ddpm::cpu
