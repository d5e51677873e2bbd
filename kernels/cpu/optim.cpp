// kernels/cpu/optim.cpp: the reference loops declared in kernels/cpu/optim.h.
#include "kernels/cpu/optim.h"

#include <cmath>

namespace ddpm::cpu {

template <class T>
void adamw_step(T* p, const T* g, T* m, T* v, std::int64_t n, const AdamWScalars<T>& s) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T mi = s.beta1 * m[i] + s.one_minus_beta1 * gi;       // first moment
    const T vi = s.beta2 * v[i] + s.one_minus_beta2 * gi * gi;  // second moment
    m[i] = mi;
    v[i] = vi;
    const T denom = std::sqrt(vi) * s.inv_sqrt_bc2 + s.eps;     // sqrt(v_hat) + eps
    p[i] = s.decay * p[i] - s.step_size * mi / denom;
  }
}

template <class T>
double sum_squares(const T* x, std::int64_t n) {
  double acc = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double xi = static_cast<double>(x[i]);
    acc += xi * xi;
  }
  return acc;
}

template <class T>
void scale_inplace(T* x, std::int64_t n, T alpha) {
  for (std::int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

template <class T>
void ema_update(T* ema, const T* p, std::int64_t n, T decay, T one_minus_decay) {
  for (std::int64_t i = 0; i < n; ++i) ema[i] = decay * ema[i] + one_minus_decay * p[i];
}

#define DDPM_INSTANTIATE_OPTIM(T)                                                          \
  template void adamw_step<T>(T*, const T*, T*, T*, std::int64_t, const AdamWScalars<T>&); \
  template double sum_squares<T>(const T*, std::int64_t);                                  \
  template void scale_inplace<T>(T*, std::int64_t, T);                                     \
  template void ema_update<T>(T*, const T*, std::int64_t, T, T);
DDPM_INSTANTIATE_OPTIM(float)
DDPM_INSTANTIATE_OPTIM(double)
#undef DDPM_INSTANTIATE_OPTIM

}  // namespace ddpm::cpu
