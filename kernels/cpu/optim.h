// kernels/cpu/optim.h: reference loops for the optimizer-side updates over a flat slab:
// AdamW, the sum of squares behind the gradient norm, in-place scaling (clipping) and the
// EMA update. T is float or double. Plain pointers and sizes; no engine types.
// The CUDA versions (kernels/cuda/optim.h) compute the same per-element formulas.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

// Per-step constants of AdamW, computed once in double by the caller and rounded to T:
//   one_minus_beta1 = 1 - beta1,  one_minus_beta2 = 1 - beta2   (from double, so 1 - 0.999
//                                                                 keeps its digits in float)
//   step_size       = lr / (1 - beta1^t)                          (bias correction of m)
//   inv_sqrt_bc2    = 1 / sqrt(1 - beta2^t)                       (bias correction of v)
//   decay           = 1 - lr * weight_decay                       (decoupled weight decay)
template <class T>
struct AdamWScalars {
  T beta1, beta2, one_minus_beta1, one_minus_beta2, step_size, inv_sqrt_bc2, eps, decay;
};

// AdamW (Loshchilov & Hutter 2019, Algorithm 2), for every i < n:
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = decay p - step_size m / (sqrt(v) inv_sqrt_bc2 + eps)
// which is p -= lr wd p; p -= lr m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - beta1^t),
// v_hat = v / (1 - beta2^t), rearranged so the bias corrections are two scalars.
template <class T>
void adamw_step(T* p, const T* g, T* m, T* v, std::int64_t n, const AdamWScalars<T>& s);

// sum_i x[i]^2, accumulated in double.
template <class T>
double sum_squares(const T* x, std::int64_t n);

// x[i] *= alpha
template <class T>
void scale_inplace(T* x, std::int64_t n, T alpha);

// ema[i] = decay ema[i] + (1 - decay) p[i]; both coefficients given (1 - decay from double).
template <class T>
void ema_update(T* ema, const T* p, std::int64_t n, T decay, T one_minus_decay);

}  // namespace ddpm::cpu
