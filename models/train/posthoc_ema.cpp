// models/train/posthoc_ema.cpp: the math of power-function EMAs and their post-hoc
// reconstruction (derivations in posthoc_ema.h), and the PowerEma tracker.
#include "models/train/posthoc_ema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "engine/ops/common.h"
#include "kernels/cpu/optim.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/optim.h"
#endif

namespace ddpm::train {

namespace {

// gamma* = (sqrt(5) - 3) / 2: with u = gamma + 1, sigma_rel^2 = u / ((u + 1)^2 (u + 2)) has
// d/du log = 1/u - 2/(u + 1) - 1/(u + 2) = 0  <=>  u^2 + u - 1 = 0, u = (sqrt(5) - 1) / 2.
const double kGammaStar = (std::sqrt(5.0) - 3.0) / 2.0;

// 1 - beta_tau = 1 - (1 - 1/tau)^(gamma + 1), without cancellation for large tau:
// -expm1((gamma + 1) log1p(-1/tau)). At tau = 1, log1p(-1) = -inf and the value is 1.
double one_minus_beta(double gamma, std::int64_t tau) {
  return -std::expm1((gamma + 1.0) * std::log1p(-1.0 / static_cast<double>(tau)));
}

// ((T - 1) / T)^k, 0 at T = 1.
double shrink(double k, std::int64_t T) { return std::exp(k * std::log1p(-1.0 / static_cast<double>(T))); }

void check_profile(const char* op, const PowerProfile& p) {
  DDPM_CHECK(p.t >= 1 && std::isfinite(p.gamma) && p.gamma > -1.0,
             op << ": a power-EMA profile needs t >= 1 updates and gamma > -1, got t = " << p.t << ", gamma = "
                << p.gamma);
}

}  // namespace

double sigma_rel_from_gamma(double gamma) {
  DDPM_CHECK(std::isfinite(gamma) && gamma > -1.0, "sigma_rel_from_gamma: gamma must be > -1, got " << gamma);
  return std::sqrt((gamma + 1.0) / ((gamma + 2.0) * (gamma + 2.0) * (gamma + 3.0)));
}

double max_sigma_rel() { return sigma_rel_from_gamma(kGammaStar); }

// Squaring eq. 123 and writing s = 1 / sigma_rel^2:
//   (gamma + 2)^2 (gamma + 3) = s (gamma + 1)
//   gamma^3 + 7 gamma^2 + (16 - s) gamma + (12 - s) = 0          (EDM2 eq. 126)
// The cubic has up to three real roots; sigma_rel(gamma) rises on (-1, gamma*] and falls on
// [gamma*, inf), so the largest root is the one on the falling branch (the narrow profiles
// EDM2 uses). Rather than a closed-form cubic formula (cancellation near the double root at
// sigma_rel = max), we bracket that root and bisect in double: on [gamma*, hi] the function
// h(gamma) = sigma_rel(gamma)^2 - sigma_rel^2 is strictly decreasing, h(gamma*) >= 0, and
// since sigma_rel(gamma) < 1/gamma for gamma > 0, h(max(1, 1/sigma_rel)) < 0. Bisection
// to the last bit (about 1100 halvings at most, each a few flops), then no polish is needed.
double gamma_from_sigma_rel(double sigma_rel) {
  const double top = max_sigma_rel();
  DDPM_CHECK(std::isfinite(sigma_rel) && sigma_rel > 0.0 && sigma_rel <= top,
             "sigma_rel must be in (0, " << top << "] (the widest power-function EMA profile, at gamma = "
                                         << kGammaStar << "), got " << sigma_rel);
  const double target = sigma_rel * sigma_rel;
  auto h = [target](double g) { return (g + 1.0) / ((g + 2.0) * (g + 2.0) * (g + 3.0)) - target; };
  double lo = kGammaStar, hi = std::max(1.0, 1.0 / sigma_rel);
  if (h(lo) <= 0.0) return lo;  // sigma_rel == max, up to rounding
  for (int i = 0; i < 2000; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;  // adjacent doubles: converged
    (h(mid) > 0.0 ? lo : hi) = mid;
  }
  return std::abs(h(lo)) <= std::abs(h(hi)) ? lo : hi;
}

double power_ema_beta(double gamma, std::int64_t t) {
  DDPM_CHECK(t >= 1, "power_ema_beta: the update index t is 1-based, got " << t);
  return std::pow(1.0 - 1.0 / static_cast<double>(t), gamma + 1.0);
}

std::vector<double> power_ema_weights(double gamma, std::int64_t t) {
  check_profile("power_ema_weights", {gamma, t});
  std::vector<double> w(static_cast<std::size_t>(t));
  double tail = 1.0;  // prod_{s = tau+1..t} beta_s
  for (std::int64_t tau = t; tau >= 1; --tau) {
    w[static_cast<std::size_t>(tau - 1)] = one_minus_beta(gamma, tau) * tail;
    tail *= power_ema_beta(gamma, tau);
  }
  return w;
}

// With c_g(tau) = 1 - beta_tau and w_{g,t}[tau] = c_g(tau) (tau/t)^(g+1), and k = g_a + g_b + 2,
// define the normalized partial sum
//   S(T) = sum_{tau=1..T} c_a(tau) c_b(tau) (tau/T)^k,   S(T) = ((T-1)/T)^k S(T-1) + c_a(T) c_b(T).
// Then for m = min(t_a, t_b):
//   <w_a, w_b> = sum_{tau<=m} c_a c_b (tau/t_a)^(g_a+1) (tau/t_b)^(g_b+1)
//              = S(m) (m/t_a)^(g_a+1) (m/t_b)^(g_b+1)
// (one of the two ratios is 1). S stays O(1/T) and the ratios are <= 1: nothing overflows
// even for gamma in the hundreds and millions of steps, where tau^(g+1) itself would.
double profile_inner_product(const PowerProfile& a, const PowerProfile& b) {
  check_profile("profile_inner_product", a);
  check_profile("profile_inner_product", b);
  const std::int64_t m = std::min(a.t, b.t);
  const double k = a.gamma + b.gamma + 2.0;
  double S = 0.0;
  for (std::int64_t T = 1; T <= m; ++T) S = shrink(k, T) * S + one_minus_beta(a.gamma, T) * one_minus_beta(b.gamma, T);
  const double md = static_cast<double>(m);
  return S * std::pow(md / static_cast<double>(a.t), a.gamma + 1.0) * std::pow(md / static_cast<double>(b.t), b.gamma + 1.0);
}

std::vector<double> profile_gram(const std::vector<PowerProfile>& profiles) {
  const std::size_t n = profiles.size();
  for (const PowerProfile& p : profiles) check_profile("profile_gram", p);
  std::vector<double> gammas;  // the distinct exponents
  for (const PowerProfile& p : profiles)
    if (std::find(gammas.begin(), gammas.end(), p.gamma) == gammas.end()) gammas.push_back(p.gamma);
  std::vector<double> A(n * n, 0.0);
  for (std::size_t ga = 0; ga < gammas.size(); ++ga) {
    for (std::size_t gb = ga; gb < gammas.size(); ++gb) {
      const double a = gammas[ga], b = gammas[gb], k = a + b + 2.0;
      std::set<std::int64_t> queries;  // every min(t_i, t_j) is one of these steps
      for (const PowerProfile& p : profiles)
        if (p.gamma == a || p.gamma == b) queries.insert(p.t);
      std::map<std::int64_t, double> S_at;
      double S = 0.0;
      std::int64_t T = 0;
      for (std::int64_t q : queries) {
        while (T < q) {
          ++T;
          S = shrink(k, T) * S + one_minus_beta(a, T) * one_minus_beta(b, T);
        }
        S_at[q] = S;
      }
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
          const PowerProfile &pi = profiles[i], &pj = profiles[j];
          if (!((pi.gamma == a && pj.gamma == b) || (pi.gamma == b && pj.gamma == a))) continue;
          const std::int64_t m = std::min(pi.t, pj.t);
          const double md = static_cast<double>(m);
          A[i * n + j] = S_at.at(m) * std::pow(md / static_cast<double>(pi.t), pi.gamma + 1.0) *
                         std::pow(md / static_cast<double>(pj.t), pj.gamma + 1.0);
        }
      }
    }
  }
  return A;
}

// The stable solve. A is a Gram matrix of profiles that differ little (neighbouring snapshots
// of one tracker overlap almost completely), so it is symmetric positive semi-definite with a
// condition number that grows quickly with the number of snapshots; a plain Cholesky or LU
// returns huge alternating coefficients, and sum x_i snapshot_i then amplifies the f32
// rounding of the snapshots. We use Cholesky with diagonal pivoting (LAPACK's pstrf idea):
// at each step take the profile whose component orthogonal to those already chosen has the
// largest squared norm (the updated diagonal d_j); stop when that is below
// kRankTolerance * max_j A_jj. In the geometry of the profiles this is Gram-Schmidt with
// column pivoting (QR with column pivoting of the implicit matrix W = [w_1 ... w_n], R^T R =
// P^T A P), i.e. a rank-revealing factorization: every kept profile contributes a direction at
// least sqrt(kRankTolerance) = 1e-6 of the largest norm, the kept block has a bounded
// condition number, and the dropped profiles (x_i = 0) are those the others already span to
// that accuracy. The least-squares fit over the kept profiles is then exact to rounding when
// w_r is one of them, and its coefficients stay moderate. Unlike a ridge, nothing biases the
// well-determined directions. A is small (a few hundred rows at most): O(n^3) is nothing.
constexpr double kRankTolerance = 1e-12;

PosthocSolution solve_posthoc_coefficients(const std::vector<PowerProfile>& basis, const PowerProfile& target) {
  DDPM_CHECK(!basis.empty(), "post-hoc EMA: no snapshot profiles to reconstruct from");
  check_profile("post-hoc EMA target", target);
  const std::size_t n = basis.size();
  std::vector<PowerProfile> all = basis;
  all.push_back(target);
  const std::vector<double> G = profile_gram(all);  // (n + 1) x (n + 1), the target last
  auto A = [&](std::size_t i, std::size_t j) { return G[i * (n + 1) + j]; };
  std::vector<double> d(n), L(n * n, 0.0);  // L[row * n + col], rows in original order
  std::vector<std::size_t> perm(n);
  double dmax = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    perm[i] = i;
    d[i] = A(i, i);
    dmax = std::max(dmax, d[i]);
  }
  std::size_t rank = 0;
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t best = k;
    for (std::size_t j = k + 1; j < n; ++j)
      if (d[perm[j]] > d[perm[best]]) best = j;
    std::swap(perm[k], perm[best]);
    const std::size_t p = perm[k];
    if (!(d[p] > kRankTolerance * dmax)) break;
    const double lkk = std::sqrt(d[p]);
    L[p * n + k] = lkk;
    for (std::size_t j = k + 1; j < n; ++j) {
      const std::size_t q = perm[j];
      double v = A(q, p);
      for (std::size_t m = 0; m < k; ++m) v -= L[q * n + m] * L[p * n + m];
      L[q * n + k] = v / lkk;
      d[q] -= L[q * n + k] * L[q * n + k];
    }
    rank = k + 1;
  }
  DDPM_CHECK(rank > 0, "post-hoc EMA: the snapshot profiles are all zero");
  // L y = P^T b, then L^T z = y over the kept block; x_{perm[i]} = z_i.
  std::vector<double> y(rank), z(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    double v = A(perm[i], n);
    for (std::size_t m = 0; m < i; ++m) v -= L[perm[i] * n + m] * y[m];
    y[i] = v / L[perm[i] * n + i];
  }
  for (std::size_t i = rank; i-- > 0;) {
    double v = y[i];
    for (std::size_t m = i + 1; m < rank; ++m) v -= L[perm[m] * n + i] * z[m];
    z[i] = v / L[perm[i] * n + i];
  }
  PosthocSolution sol;
  sol.rank = static_cast<int>(rank);
  sol.coefficients.assign(n, 0.0);
  for (std::size_t i = 0; i < rank; ++i) sol.coefficients[perm[i]] = z[i];
  // The residual, evaluated on the profiles themselves: x^T A x - 2 x^T b + ||w_r||^2 would
  // cancel catastrophically exactly when the fit is good.
  std::int64_t T = target.t;
  for (const PowerProfile& p : basis) T = std::max(T, p.t);
  std::vector<double> r(static_cast<std::size_t>(T), 0.0);
  const std::vector<double> wr = power_ema_weights(target.gamma, target.t);
  for (std::size_t tau = 0; tau < wr.size(); ++tau) r[tau] = -wr[tau];
  for (std::size_t i = 0; i < n; ++i) {
    if (sol.coefficients[i] == 0.0) continue;
    const std::vector<double> wi = power_ema_weights(basis[i].gamma, basis[i].t);
    for (std::size_t tau = 0; tau < wi.size(); ++tau) r[tau] += sol.coefficients[i] * wi[tau];
  }
  double rr = 0.0, ww = 0.0;
  for (double v : r) rr += v * v;
  for (double v : wr) ww += v * v;
  sol.relative_residual = std::sqrt(rr / ww);
  return sol;
}

// ---- PowerEma -------------------------------------------------------------------------

PowerEma::PowerEma(const ParameterSlab& params, double sigma_rel)
    : sigma_rel_(sigma_rel), gamma_(gamma_from_sigma_rel(sigma_rel)) {
  DDPM_CHECK(!params.empty(), "PowerEma: the parameter slab is empty (call ParameterSlab::pack first)");
  values_ = params.values().clone();
}

double PowerEma::update(const ParameterSlab& params, std::int64_t t) {
  const Tensor& p = params.values();
  DDPM_CHECK(p.shape() == values_.shape() && p.dtype() == values_.dtype() && p.device() == values_.device(),
             "PowerEma::update: the EMA is " << values_.describe() << " but the parameter slab is " << p.describe()
                                             << " (create it after moving the slab with ParameterSlab::to)");
  const double beta = power_ema_beta(gamma_, t);
  // theta_hat <- beta theta_hat + (1 - beta) theta: the kernel of Ema::update (engine/optim.h).
  if (p.device().is_cuda()) {
    DDPM_ON_CUDA("PowerEma::update", cuda::ema_update(values_.data<float>(), p.data<float>(), p.numel(),
                                                       static_cast<float>(beta), static_cast<float>(1.0 - beta),
                                                       cuda::stream()));
  } else {
    ops::cpu_dispatch("PowerEma::update", p.dtype(), [&](auto type) {
      using T = decltype(type);
      cpu::ema_update(values_.data<T>(), p.data<T>(), p.numel(), static_cast<T>(beta), static_cast<T>(1.0 - beta));
    });
  }
  return beta;
}

void PowerEma::load(const Tensor& values) {
  DDPM_CHECK(values.defined() && values.shape() == values_.shape() && values.dtype() == values_.dtype(),
             "PowerEma::load (sigma_rel " << sigma_rel_ << "): expected " << values_.describe() << ", got "
                                          << (values.defined() ? values.describe() : std::string("none")));
  values_.copy_from(values);
}

std::vector<double> parse_sigma_rel_list(const std::string& flag, const std::string& text) {
  std::vector<double> out;
  if (text.empty()) return out;
  DDPM_CHECK(text.back() != ',', flag << " must be a comma-separated list of relative EMA widths such as 0.05,0.10; '"
                                      << text << "' ends with a comma");
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    double v = 0.0;
    std::size_t used = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DDPM_CHECK(!item.empty() && used == item.size(),
               flag << " must be a comma-separated list of relative EMA widths such as 0.05,0.10; '" << item
                    << "' is not a number");
    DDPM_CHECK(std::isfinite(v) && v > 0.0 && v <= max_sigma_rel(),
               flag << ": sigma_rel " << item << " is outside (0, " << max_sigma_rel()
                    << "], the range of power-function EMA widths (EDM2 uses 0.05 and 0.10)");
    DDPM_CHECK(std::find(out.begin(), out.end(), v) == out.end(), flag << ": sigma_rel " << item << " is listed twice");
    out.push_back(v);
  }
  DDPM_CHECK(!out.empty(), flag << " lists no value");
  return out;
}

std::string power_ema_prefix(std::size_t i) { return "phema" + std::to_string(i) + "."; }

}  // namespace ddpm::train
