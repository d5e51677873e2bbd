// kernels/cpu/layer_norm.cpp: reference loops for LayerNorm over the last axis; the
// equations are in the header. One row at a time, two passes for the statistics (mean,
// then the mean squared deviation, which keeps the variance of an offset row exact), all
// in double.
#include "kernels/cpu/layer_norm.h"

#include <cmath>
#include <vector>

namespace ddpm::cpu {

template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, std::int64_t R,
                        std::int64_t C, double eps) {
  const double inv_c = 1.0 / static_cast<double>(C);
  for (std::int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    double sum = 0;
    for (std::int64_t c = 0; c < C; ++c) sum += static_cast<double>(xr[c]);
    const double mu = sum * inv_c;
    double sq = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      const double d = static_cast<double>(xr[c]) - mu;
      sq += d * d;
    }
    const double rs = 1.0 / std::sqrt(sq * inv_c + eps);
    mean[r] = static_cast<T>(mu);
    rstd[r] = static_cast<T>(rs);
    for (std::int64_t c = 0; c < C; ++c) {
      const double xhat = (static_cast<double>(xr[c]) - mu) * rs;
      yr[c] = static_cast<T>(xhat * static_cast<double>(gamma[c]) + static_cast<double>(beta[c]));
    }
  }
}

template <class T>
void layer_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma,
                         T* dbeta, std::int64_t R, std::int64_t C) {
  const double inv_c = 1.0 / static_cast<double>(C);
  std::vector<double> dgamma_acc(static_cast<std::size_t>(C), 0.0), dbeta_acc(static_cast<std::size_t>(C), 0.0);
  for (std::int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * C;
    const T* gr = dy + r * C;
    T* dxr = dx + r * C;
    const double mu = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
    // Pass 1: the parameter gradients and the two row means of the dx formula.
    double sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      const std::size_t cu = static_cast<std::size_t>(c);
      const double g = static_cast<double>(gr[c]);
      const double xhat = (static_cast<double>(xr[c]) - mu) * rs;
      const double dxhat = g * static_cast<double>(gamma[c]);
      dbeta_acc[cu] += g;
      dgamma_acc[cu] += g * xhat;
      sum_dxhat += dxhat;
      sum_dxhat_xhat += dxhat * xhat;
    }
    const double mean_dxhat = sum_dxhat * inv_c, mean_dxhat_xhat = sum_dxhat_xhat * inv_c;
    // Pass 2: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
    for (std::int64_t c = 0; c < C; ++c) {
      const double xhat = (static_cast<double>(xr[c]) - mu) * rs;
      const double dxhat = static_cast<double>(gr[c]) * static_cast<double>(gamma[c]);
      dxr[c] = static_cast<T>(rs * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
    }
  }
  for (std::int64_t c = 0; c < C; ++c) {
    dgamma[c] = static_cast<T>(dgamma_acc[static_cast<std::size_t>(c)]);
    dbeta[c] = static_cast<T>(dbeta_acc[static_cast<std::size_t>(c)]);
  }
}

#define DDPM_INSTANTIATE_LAYER_NORM(T)                                                                          \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, std::int64_t, std::int64_t,     \
                                      double);                                                                  \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, std::int64_t, \
                                       std::int64_t);
DDPM_INSTANTIATE_LAYER_NORM(float)
DDPM_INSTANTIATE_LAYER_NORM(double)
#undef DDPM_INSTANTIATE_LAYER_NORM

}  // namespace ddpm::cpu
