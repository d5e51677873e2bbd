// models/diffusion/unipc.cpp: UniPC (bh2, data prediction); the math is in unipc.h.
#include "models/diffusion/unipc.h"

#include <algorithm>
#include <cmath>
#include <deque>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {
namespace {

// The level list of dpm_solver_2m: positive, finite, strictly decreasing, only the last may be 0.
void check_levels(const std::vector<double>& sigmas) {
  DDPM_CHECK(sigmas.size() >= 2, "unipc_solve: needs at least two noise levels, got " << sigmas.size());
  for (std::size_t i = 0; i < sigmas.size(); ++i) {
    const bool last = i + 1 == sigmas.size();
    DDPM_CHECK(std::isfinite(sigmas[i]) && (sigmas[i] > 0 || (last && sigmas[i] == 0)),
               "unipc_solve: noise level " << i << " is " << sigmas[i]
                                           << "; levels must be positive and finite (only the last may be 0)");
    DDPM_CHECK(i == 0 || sigmas[i] < sigmas[i - 1], "unipc_solve: noise levels must decrease, but level "
                                                        << i << " (" << sigmas[i] << ") follows " << sigmas[i - 1]);
  }
}

// Solves the n x n system a rho = b (n <= 3) by Gaussian elimination with partial pivoting.
std::vector<double> solve_small(std::vector<std::vector<double>> a, std::vector<double> b) {
  const std::size_t n = b.size();
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t pivot = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::fabs(a[r][c]) > std::fabs(a[pivot][c])) pivot = r;
    std::swap(a[c], a[pivot]);
    std::swap(b[c], b[pivot]);
    DDPM_CHECK(a[c][c] != 0.0, "unipc_solve: the order conditions are singular (two history levels coincide)");
    for (std::size_t r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (std::size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  std::vector<double> x(n);
  for (std::size_t c = n; c-- > 0;) {
    double s = b[c];
    for (std::size_t k = c + 1; k < n; ++k) s -= a[c][k] * x[k];
    x[c] = s / a[c][c];
  }
  return x;
}

// The weights rho of (P) or (C) in unipc.h for step size h and the ratios r (r_1..r_m; the
// corrector's list ends in r = 1). Rows i = 1..m: sum_k r_k^{i-1} rho_k = i! phi_{i+1}(-h) / phi_1(-h).
std::vector<double> order_weights(double h, const std::vector<double>& r) {
  const std::size_t m = r.size();
  const double phi1 = exponential_phi(1, -h);
  std::vector<std::vector<double>> a(m, std::vector<double>(m));
  std::vector<double> b(m);
  double factorial = 1.0;
  for (std::size_t i = 1; i <= m; ++i) {
    factorial *= static_cast<double>(i);
    b[i - 1] = factorial * exponential_phi(static_cast<int>(i) + 1, -h) / phi1;
    for (std::size_t k = 0; k < m; ++k) a[i - 1][k] = std::pow(r[k], static_cast<double>(i - 1));
  }
  return solve_small(a, b);
}

// One exponential-integrator step from (x_s, sigma_s) to sigma_t > 0 with data estimate
// D_s + sum_k rho_k diff_k: (P) and (C) of unipc.h share this form.
Tensor exponential_step(const Tensor& x, double s, double t, const Tensor& d_s, const std::vector<double>& rho,
                        const std::vector<Tensor>& diffs) {
  Tensor d = d_s;
  for (std::size_t k = 0; k < rho.size(); ++k) d = add(d, scale(diffs[k], rho[k]));
  const double h = std::log(s) - std::log(t);
  return add(scale(x, t / s), scale(d, -std::expm1(-h)));  // 1 - e^{-h} = -expm1(-h)
}

}  // namespace

double exponential_phi(int k, double z) {
  DDPM_CHECK(k >= 0, "exponential_phi: k must be >= 0, got " << k);
  if (k == 0) return std::exp(z);
  if (std::fabs(z) < 1.0) {
    // phi_k(z) = sum_j z^j / (j + k)!: terms fall below 1e-17 of the first within 20 terms.
    double inv_fact = 1.0;  // 1 / k!
    for (int j = 2; j <= k; ++j) inv_fact /= j;
    double term = inv_fact, sum = 0.0;
    for (int j = 0; j < 30; ++j) {
      sum += term;
      term *= z / static_cast<double>(j + k + 1);
    }
    return sum;
  }
  double phi = std::expm1(z) / z, inv_fact = 1.0;  // phi_1; 1 / 1!
  for (int j = 1; j < k; ++j) {
    phi = (phi - inv_fact) / z;  // phi_{j+1} = (phi_j - 1/j!) / z
    inv_fact /= (j + 1);
  }
  return phi;
}

Tensor unipc_solve(const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas, int order,
                   const SigmaStepCallback& callback) {
  check_levels(sigmas);
  DDPM_CHECK(order >= 1 && order <= 3, "unipc_solve: the solver order must be 1, 2 or 3, got " << order);
  NoGradGuard no_grad;
  const std::size_t n = sigmas.size() - 1;  // steps
  auto lambda = [&](std::size_t j) { return -std::log(sigmas[j]); };
  std::deque<Tensor> history;  // D_i, D_{i-1}, ... newest first (at most `order`)
  Tensor x_prev;               // x_{i-1}, the corrected start of the previous step
  int p_prev = 0;              // the order the previous predictor used
  for (std::size_t i = 0; i < n; ++i) {
    const double s = sigmas[i], t = sigmas[i + 1];
    const SigmaDenoised den = denoise(x, s);  // D_i at the predicted point x~_i
    if (i > 0) {
      // UniC-p_prev (C): redo step i-1 -> i from x_{i-1} with D_i as the r = 1 point.
      const double h = lambda(i) - lambda(i - 1);
      std::vector<double> r;
      std::vector<Tensor> diffs;
      for (int k = 1; k < p_prev; ++k) {  // history D_{i-1-k}: history[k] (history[0] = D_{i-1})
        r.push_back((lambda(i - 1 - k) - lambda(i - 1)) / h);
        diffs.push_back(scale(sub(history[k], history[0]), 1.0 / r.back()));
      }
      r.push_back(1.0);
      diffs.push_back(sub(den.x0, history[0]));
      const std::vector<double> rho = p_prev == 1 ? std::vector<double>{0.5} : order_weights(h, r);
      x = exponential_step(x_prev, sigmas[i - 1], s, history[0], rho, diffs);
    }
    history.push_front(den.x0);
    if (history.size() > static_cast<std::size_t>(order)) history.pop_back();
    const int p = std::min<int>({order, static_cast<int>(i) + 1, static_cast<int>(n - i)});
    x_prev = x;
    if (t == 0.0) {
      x = den.x0;  // first order onto lambda = infinity: (P) gives D_i exactly
    } else {
      // UniP-p (P): extrapolate from D_i with the p - 1 earlier evaluations.
      const double h = lambda(i + 1) - lambda(i);
      std::vector<double> r;
      std::vector<Tensor> diffs;
      for (int k = 1; k < p; ++k) {
        r.push_back((lambda(i - k) - lambda(i)) / h);
        diffs.push_back(scale(sub(history[k], history[0]), 1.0 / r.back()));
      }
      const std::vector<double> rho = p == 1 ? std::vector<double>{} : p == 2 ? std::vector<double>{0.5}
                                                                             : order_weights(h, r);
      x = exponential_step(x_prev, s, t, history[0], rho, diffs);
    }
    p_prev = p;
    if (callback) callback(i, x, den);
  }
  return x;
}

}  // namespace ddpm::diffusion
