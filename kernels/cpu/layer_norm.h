// kernels/cpu/layer_norm.h: the reference LayerNorm over the last axis, forward and
// backward. T is float or double; statistics and sums are accumulated in double.
//
// Layout: x, y, dy, dx are [R, C] row-major: any tensor [..., C] seen as R = numel / C rows
// of C channels (tokens [N, L, C] give R = N*L). gamma, beta: [C]. mean, rstd: [R].
//
// Forward (Ba et al. 2016, PyTorch LayerNorm semantics: biased variance, eps inside the
// square root), per row r:
//   mu = (1/C) sum_c x_c,   var = (1/C) sum_c (x_c - mu)^2,   rstd = 1 / sqrt(var + eps)
//   xhat_c = (x_c - mu) * rstd
//   y_c    = xhat_c * gamma_c + beta_c
//
// Backward, with g = dL/dy:
//   dbeta_c  = sum_r g_rc                    dgamma_c = sum_r g_rc * xhat_rc
//   dxhat_c  = g_c * gamma_c
//   dx_c     = rstd * (dxhat_c - mean_c(dxhat) - xhat_c * mean_c(dxhat * xhat))
// The last line is the chain rule through mu and rstd: d mu / d x_c = 1/C and
// d rstd / d x_c = -rstd^3 (x_c - mu) / C, so the two means are the gradient's projections
// onto the constant direction and onto xhat, which the normalization removes.
// Outputs are written (not accumulated).
#pragma once

#include <cstdint>

namespace ddpm::cpu {

template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, std::int64_t R,
                        std::int64_t C, double eps);

template <class T>
void layer_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma,
                         T* dbeta, std::int64_t R, std::int64_t C);

}  // namespace ddpm::cpu
