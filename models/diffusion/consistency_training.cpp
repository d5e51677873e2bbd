// models/diffusion/consistency_training.cpp: see consistency_training.h for equations (1) to (6).
#include "models/diffusion/consistency_training.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/likelihood.h"

namespace ddpm::diffusion {

namespace {

// values[i] as an [N, 1, ..., 1] tensor with like's rank, dtype and device (a constant).
Tensor per_sample(const std::vector<double>& values, const Tensor& like) {
  Shape shape(static_cast<std::size_t>(like.ndim()), 1);
  shape[0] = static_cast<std::int64_t>(values.size());
  return Tensor::from_vector(values, shape, like.dtype(), like.device());
}

}  // namespace

void check_ict_config(const IctConfig& c) {
  DDPM_CHECK(std::isfinite(c.sigma_min) && std::isfinite(c.sigma_max) && c.sigma_min > 0.0 && c.sigma_min < c.sigma_max,
             "iCT: the noise range needs 0 < sigma_min < sigma_max, finite; got [" << c.sigma_min << ", " << c.sigma_max
                                                                                   << "]");
  DDPM_CHECK(std::isfinite(c.rho) && c.rho > 0.0, "iCT: rho (the Karras grid's exponent) must be > 0, got " << c.rho);
  DDPM_CHECK(std::isfinite(c.sigma_data) && c.sigma_data > 0.0,
             "iCT: sigma_data (--sigma-data, the std of the data) must be a finite number > 0, got " << c.sigma_data);
  DDPM_CHECK(std::isfinite(c.p_mean), "iCT: P_mean (--p-mean) must be finite, got " << c.p_mean);
  DDPM_CHECK(std::isfinite(c.p_std) && c.p_std > 0.0,
             "iCT: P_std (--p-std) must be a finite number > 0, got " << c.p_std);
  DDPM_CHECK(c.s0 >= 2 && c.s1 >= c.s0,
             "--ict-discretization " << c.s0 << "," << c.s1
                                     << " needs 2 <= S0 <= S1 (the initial and final number of discretisation steps; "
                                        "iCT uses 10,1280)");
}

std::int64_t ict_num_levels(const IctConfig& c, std::int64_t k, std::int64_t K) {
  DDPM_CHECK(K >= 1 && k >= 0,
             "ict_num_levels: needs the run's K >= 1 steps and a step k >= 0, got K = " << K << ", k = " << k);
  // K' = floor(K / (log2 floor(s1 / s0) + 1)), at least 1.
  const double doublings = std::log2(std::floor(static_cast<double>(c.s1) / static_cast<double>(c.s0)));
  const std::int64_t k_prime =
      std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(static_cast<double>(K) / (doublings + 1.0))));
  // min(s0 2^floor(k / K'), s1), doubling step by step so no power overflows.
  std::int64_t steps = c.s0;
  for (std::int64_t d = k / k_prime; d > 0 && steps < c.s1; --d) steps *= 2;
  return std::min(steps, c.s1) + 1;
}

std::vector<double> ict_sigmas(const IctConfig& c, std::int64_t N) {
  DDPM_CHECK(N >= 2, "ict_sigmas: the grid needs N >= 2 levels, got " << N);
  const double lo = std::pow(c.sigma_min, 1.0 / c.rho), hi = std::pow(c.sigma_max, 1.0 / c.rho);
  std::vector<double> s(static_cast<std::size_t>(N));
  for (std::int64_t i = 0; i < N; ++i)
    s[static_cast<std::size_t>(i)] =
        std::pow(lo + static_cast<double>(i) / static_cast<double>(N - 1) * (hi - lo), c.rho);
  s.front() = c.sigma_min;  // exact endpoints: f(x, sigma_1) is then exactly the identity
  s.back() = c.sigma_max;
  return s;
}

std::vector<double> ict_level_probabilities(const IctConfig& c, const std::vector<double>& sigmas) {
  DDPM_CHECK(sigmas.size() >= 2, "ict_level_probabilities: needs at least two levels, got " << sigmas.size());
  const double scale = 1.0 / (std::sqrt(2.0) * c.p_std);
  std::vector<double> p(sigmas.size() - 1);
  double total = 0.0;
  for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
    p[i] = std::erf((std::log(sigmas[i + 1]) - c.p_mean) * scale) - std::erf((std::log(sigmas[i]) - c.p_mean) * scale);
    total += p[i];
  }
  DDPM_CHECK(total > 0.0, "ict_level_probabilities: the log-normal N(" << c.p_mean << ", " << c.p_std
                                                                       << "^2) puts no mass on the grid's range");
  for (double& v : p) v /= total;
  return p;
}

IctLevelDraw sample_ict_levels(std::int64_t n, const IctConfig& c, std::int64_t N, Generator& gen) {
  DDPM_CHECK(n >= 1, "sample_ict_levels: needs at least one sample, got " << n);
  const std::vector<double> sig = ict_sigmas(c, N);
  const std::vector<double> p = ict_level_probabilities(c, sig);
  std::vector<double> cdf(p.size());  // cdf[j] = p[0] + ... + p[j]
  double acc = 0.0;
  for (std::size_t j = 0; j < p.size(); ++j) cdf[j] = (acc += p[j]);
  const std::vector<double> u = rand({n}, gen, Device::cpu(), DType::f64).to_double_vector();
  IctLevelDraw d;
  for (double ui : u) {
    // The first bin whose cumulative probability exceeds u (the last one if rounding leaves u above all).
    const auto it = std::upper_bound(cdf.begin(), cdf.end(), ui);
    const std::size_t j = std::min<std::size_t>(static_cast<std::size_t>(it - cdf.begin()), p.size() - 1);
    d.lower.push_back(static_cast<std::int64_t>(j));
    d.sigma_lo.push_back(sig[j]);
    d.sigma_hi.push_back(sig[j + 1]);
    const double mid = cdf[j] - 0.5 * p[j];  // the bin's middle in the CDF
    d.quartile.push_back(std::min(3, static_cast<int>(mid * 4.0)));
  }
  return d;
}

IctScalings ict_scalings(double sigma, const IctConfig& c) {
  DDPM_CHECK(std::isfinite(sigma) && sigma >= c.sigma_min,
             "ict_scalings: sigma must be a finite level >= sigma_min = " << c.sigma_min << ", got " << sigma);
  const double sd = c.sigma_data, sd2 = sd * sd, shifted = sigma - c.sigma_min;
  const EdmPreconditioning e = edm_preconditioning(sigma, sd);  // c_in and c_noise are EDM's
  return {sd2 / (shifted * shifted + sd2), sd * shifted / std::sqrt(sd2 + sigma * sigma), e.c_in, e.c_noise};
}

Tensor ict_consistency_function(const DenoiseFn& net, const IctConfig& c, const Tensor& x,
                                const std::vector<double>& sigma, const std::vector<std::int64_t>& labels) {
  DDPM_CHECK(net, "ict_consistency_function: no network given");
  DDPM_CHECK(x.defined() && x.ndim() >= 2 && static_cast<std::int64_t>(sigma.size()) == x.dim(0),
             "ict_consistency_function: needs x [N, ..., C] and N levels; got x "
                 << (x.defined() ? shape_str(x.shape()) : std::string("none")) << " and " << sigma.size() << " levels");
  const std::size_t n = sigma.size();
  std::vector<double> c_skip(n), c_out(n), c_in(n), c_noise(n);
  for (std::size_t i = 0; i < n; ++i) {
    const IctScalings s = ict_scalings(sigma[i], c);
    c_skip[i] = s.c_skip;
    c_out[i] = s.c_out;
    c_in[i] = s.c_in;
    c_noise[i] = s.c_noise;
  }
  const Tensor F = net(mul(x, per_sample(c_in, x)), c_noise, labels);  // F(c_in x; c_noise)
  DDPM_CHECK(F.defined() && F.shape() == x.shape(),
             "ict_consistency_function: the network returned "
                 << (F.defined() ? shape_str(F.shape()) : std::string("nothing")) << " for input of shape "
                 << shape_str(x.shape()) << " (a consistency model has no learned variance: the output must have the "
                 << "data's channels)");
  return add(mul(x, per_sample(c_skip, x)), mul(F, per_sample(c_out, x)));  // (1)
}

Tensor ict_noised(const Tensor& x0, const Tensor& z, const std::vector<double>& sigma) {
  DDPM_CHECK(x0.defined() && z.defined() && z.shape() == x0.shape() && x0.ndim() >= 2 &&
                 static_cast<std::int64_t>(sigma.size()) == x0.dim(0),
             "ict_noised: needs x_0 [N, ...], noise of its shape and N levels");
  return add(x0, mul(z, per_sample(sigma, x0)));
}

Tensor ict_pair_loss(const Tensor& f, const Tensor& target, const std::vector<double>& sigma_lo,
                     const std::vector<double>& sigma_hi, ConsistencyDistance d) {
  DDPM_CHECK(f.defined() && target.defined() && f.shape() == target.shape() && f.ndim() >= 2 &&
                 static_cast<std::int64_t>(sigma_lo.size()) == f.dim(0) && sigma_hi.size() == sigma_lo.size(),
             "ict_pair_loss: f and its target must be batches [N, ...] of one shape with N level pairs");
  std::vector<double> lambda(sigma_lo.size());
  for (std::size_t i = 0; i < lambda.size(); ++i) {
    DDPM_CHECK(sigma_hi[i] > sigma_lo[i], "ict_pair_loss: the pair " << i << " has sigma_{i+1} = " << sigma_hi[i]
                                                                     << " not above sigma_i = " << sigma_lo[i]);
    lambda[i] = 1.0 / (sigma_hi[i] - sigma_lo[i]);  // iCT sec. 3.2
  }
  const Tensor sq = square(sub(f, target));
  Tensor per;  // [N]
  if (d == ConsistencyDistance::l2) {
    per = mean_flat(sq);
  } else {
    std::vector<int> axes;
    for (int a = 1; a < f.ndim(); ++a) axes.push_back(a);
    const double c = pseudo_huber_c(f.numel() / f.dim(0));
    per = add_scalar(sqrt(add_scalar(sum(sq, axes), c * c)), -c);  // sqrt(||f - target||^2 + c^2) - c
  }
  return mul(per, Tensor::from_vector(lambda, {f.dim(0)}, f.dtype(), f.device()));
}

std::vector<double> ict_sampling_sigmas(const IctConfig& c, std::int64_t K) {
  DDPM_CHECK(K >= 1, "--sampling-steps " << K << " must be >= 1 for a consistency model (one network call per step)");
  if (K == 1) return {c.sigma_max};
  if (K == 2) {
    constexpr double kIctTwoStepSigma = 0.821;  // iCT sec. 5, CIFAR-10
    DDPM_CHECK(kIctTwoStepSigma > c.sigma_min && kIctTwoStepSigma < c.sigma_max,
               "iCT's two-step level 0.821 lies outside this model's range; give --consistency-sigmas");
    return {c.sigma_max, kIctTwoStepSigma};
  }
  std::vector<double> grid = ict_sigmas(c, K + 1);  // ascending, K + 1 levels
  std::reverse(grid.begin(), grid.end());
  grid.pop_back();  // sigma_min: f is the identity there
  return grid;
}

void check_ict_sampling_sigmas(const IctConfig& c, const std::vector<double>& taus) {
  DDPM_CHECK(!taus.empty(), "--consistency-sigmas needs at least one level");
  for (std::size_t j = 0; j < taus.size(); ++j) {
    DDPM_CHECK(std::isfinite(taus[j]) && taus[j] > c.sigma_min && taus[j] <= c.sigma_max,
               "--consistency-sigmas: level " << j + 1 << " (" << taus[j] << ") is outside (sigma_min, sigma_max] = ("
                                              << c.sigma_min << ", " << c.sigma_max << "]");
    DDPM_CHECK(j == 0 || taus[j] < taus[j - 1], "--consistency-sigmas must be strictly descending; level "
                                                    << j + 1 << " (" << taus[j] << ") is not below " << taus[j - 1]);
  }
}

Tensor ict_sample(const DenoiseFn& net, const IctConfig& c, const Shape& shape, const std::vector<std::int64_t>& labels,
                  const std::vector<double>& taus, bool clip, Generator& gen, Device device, DType dtype) {
  DDPM_CHECK(!shape.empty() && shape[0] >= 1, "ict_sample: the shape needs a batch axis");
  check_ict_sampling_sigmas(c, taus);
  NoGradGuard no_grad;
  const auto f = [&](const Tensor& x, double tau) {
    const Tensor y =
        ict_consistency_function(net, c, x, std::vector<double>(static_cast<std::size_t>(shape[0]), tau), labels);
    return clip ? clamp(y, -1.0, 1.0) : y;
  };
  // x = f(tau_1 z, tau_1) with tau_1 the first level (sigma_max by default).
  Tensor x = f(scale(randn(shape, gen, device, dtype), taus[0]), taus[0]);
  for (std::size_t j = 1; j < taus.size(); ++j) {
    const double std_j = std::sqrt(taus[j] * taus[j] - c.sigma_min * c.sigma_min);  // (6)
    x = f(add(x, scale(randn(shape, gen, device, dtype), std_j)), taus[j]);
  }
  return x;
}

}  // namespace ddpm::diffusion
