// kernels/cpu/group_norm.cpp: reference loops for GroupNorm (+ AdaGN, + SiLU); the
// equations are in the header. Literal: one (n, group) at a time, two passes for the
// statistics (mean, then the mean squared deviation), all in double. The backward keeps a
// group's dxhat between its two passes (one SiLU derivative, so one exp, per element).
#include "kernels/cpu/group_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ddpm::cpu {

namespace {

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// act(z) and act'(z) for y = silu(z) or y = z.
double act(double z, bool silu) { return silu ? z * sigmoid(z) : z; }
double act_grad(double z, bool silu) {
  if (!silu) return 1.0;
  double s = sigmoid(z);
  return s * (1.0 + z * (1.0 - s));
}

}  // namespace

template <class T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, const T* scale, const T* shift, T* y, T* mean,
                        T* rstd, std::int64_t N, std::int64_t HW, std::int64_t C, std::int64_t G, double eps,
                        bool fuse_silu) {
  const std::int64_t Cg = C / G;
  const double M = static_cast<double>(HW * Cg);
  for (std::int64_t n = 0; n < N; ++n) {
    const T* xn = x + n * HW * C;
    T* yn = y + n * HW * C;
    for (std::int64_t g = 0; g < G; ++g) {
      const std::int64_t c0 = g * Cg;
      // mu = mean_group(x)
      double sum = 0;
      for (std::int64_t p = 0; p < HW; ++p)
        for (std::int64_t c = c0; c < c0 + Cg; ++c) sum += static_cast<double>(xn[p * C + c]);
      const double mu = sum / M;
      // var = mean_group((x - mu)^2), biased
      double sq = 0;
      for (std::int64_t p = 0; p < HW; ++p)
        for (std::int64_t c = c0; c < c0 + Cg; ++c) {
          double d = static_cast<double>(xn[p * C + c]) - mu;
          sq += d * d;
        }
      const double r = 1.0 / std::sqrt(sq / M + eps);
      mean[n * G + g] = static_cast<T>(mu);
      rstd[n * G + g] = static_cast<T>(r);
      for (std::int64_t p = 0; p < HW; ++p)
        for (std::int64_t c = c0; c < c0 + Cg; ++c) {
          double xhat = (static_cast<double>(xn[p * C + c]) - mu) * r;
          double z = xhat * static_cast<double>(gamma[c]) + static_cast<double>(beta[c]);
          if (scale) z = z * (1.0 + static_cast<double>(scale[n * C + c])) + static_cast<double>(shift[n * C + c]);
          yn[p * C + c] = static_cast<T>(act(z, fuse_silu));
        }
    }
  }
}

template <class T>
void group_norm_backward(const T* x, const T* gamma, const T* beta, const T* scale, const T* shift, const T* mean,
                         const T* rstd, const T* dy, T* dx, T* dgamma, T* dbeta, T* dscale, T* dshift,
                         std::int64_t N, std::int64_t HW, std::int64_t C, std::int64_t G, bool fuse_silu) {
  const std::int64_t Cg = C / G;
  const double M = static_cast<double>(HW * Cg);
  std::vector<double> dgamma_acc(static_cast<std::size_t>(C), 0.0), dbeta_acc(static_cast<std::size_t>(C), 0.0);
  // Per (n, c) sums of the current sample: dz and dz * a.
  std::vector<double> dshift_acc(static_cast<std::size_t>(C)), dscale_acc(static_cast<std::size_t>(C));
  std::vector<double> dxhat_of(static_cast<std::size_t>(HW * Cg));  // the current group's dxhat, [p, c - c0]
  for (std::int64_t n = 0; n < N; ++n) {
    const T* xn = x + n * HW * C;
    const T* dyn = dy + n * HW * C;
    T* dxn = dx + n * HW * C;
    std::fill(dshift_acc.begin(), dshift_acc.end(), 0.0);
    std::fill(dscale_acc.begin(), dscale_acc.end(), 0.0);
    for (std::int64_t g = 0; g < G; ++g) {
      const std::int64_t c0 = g * Cg;
      const double mu = static_cast<double>(mean[n * G + g]);
      const double r = static_cast<double>(rstd[n * G + g]);
      // Pass 1: recompute xhat, a, z and dz per element; the parameter gradients, dxhat
      // (kept for pass 2) and the two group means of the dx formula.
      double sum_dxhat = 0, sum_dxhat_xhat = 0;
      for (std::int64_t p = 0; p < HW; ++p)
        for (std::int64_t c = c0; c < c0 + Cg; ++c) {
          const double gam = static_cast<double>(gamma[c]);
          const double xhat = (static_cast<double>(xn[p * C + c]) - mu) * r;
          const double a = xhat * gam + static_cast<double>(beta[c]);
          const double s1 = scale ? 1.0 + static_cast<double>(scale[n * C + c]) : 1.0;
          const double z = scale ? a * s1 + static_cast<double>(shift[n * C + c]) : a;
          const double dz = static_cast<double>(dyn[p * C + c]) * act_grad(z, fuse_silu);
          dshift_acc[static_cast<std::size_t>(c)] += dz;
          dscale_acc[static_cast<std::size_t>(c)] += dz * a;
          dbeta_acc[static_cast<std::size_t>(c)] += dz * s1;
          dgamma_acc[static_cast<std::size_t>(c)] += dz * s1 * xhat;
          const double dxhat = dz * s1 * gam;
          dxhat_of[static_cast<std::size_t>(p * Cg + (c - c0))] = dxhat;
          sum_dxhat += dxhat;
          sum_dxhat_xhat += dxhat * xhat;
        }
      const double mean_dxhat = sum_dxhat / M, mean_dxhat_xhat = sum_dxhat_xhat / M;
      // Pass 2: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
      for (std::int64_t p = 0; p < HW; ++p)
        for (std::int64_t c = c0; c < c0 + Cg; ++c) {
          const double xhat = (static_cast<double>(xn[p * C + c]) - mu) * r;
          const double dxhat = dxhat_of[static_cast<std::size_t>(p * Cg + (c - c0))];
          dxn[p * C + c] = static_cast<T>(r * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
        }
    }
    for (std::int64_t c = 0; c < C; ++c) {
      if (dshift) dshift[n * C + c] = static_cast<T>(dshift_acc[static_cast<std::size_t>(c)]);
      if (dscale) dscale[n * C + c] = static_cast<T>(dscale_acc[static_cast<std::size_t>(c)]);
    }
  }
  for (std::int64_t c = 0; c < C; ++c) {
    dgamma[c] = static_cast<T>(dgamma_acc[static_cast<std::size_t>(c)]);
    dbeta[c] = static_cast<T>(dbeta_acc[static_cast<std::size_t>(c)]);
  }
}

#define DDPM_INSTANTIATE_GROUP_NORM(T)                                                                           \
  template void group_norm_forward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, std::int64_t, \
                                      std::int64_t, std::int64_t, std::int64_t, double, bool);                   \
  template void group_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*,     \
                                       const T*, T*, T*, T*, T*, T*, std::int64_t, std::int64_t, std::int64_t,   \
                                       std::int64_t, bool);
DDPM_INSTANTIATE_GROUP_NORM(float)
DDPM_INSTANTIATE_GROUP_NORM(double)
#undef DDPM_INSTANTIATE_GROUP_NORM

}  // namespace ddpm::cpu
