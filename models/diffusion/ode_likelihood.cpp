// models/diffusion/ode_likelihood.cpp: see ode_likelihood.h for the equations.
#include "models/diffusion/ode_likelihood.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

namespace ddpm::diffusion {

const char* divergence_estimator_name(DivergenceEstimator e) {
  switch (e) {
    case DivergenceEstimator::exact:
      return "exact";
    case DivergenceEstimator::rademacher:
      return "rademacher";
    case DivergenceEstimator::gaussian:
      return "gaussian";
  }
  return "?";
}

const char* ode_solver_name(OdeSolver s) { return s == OdeSolver::heun ? "heun" : "rk45"; }

bool parse_ode_solver(const std::string& name, OdeSolver& out) {
  for (OdeSolver s : {OdeSolver::heun, OdeSolver::rk45})
    if (name == ode_solver_name(s)) {
      out = s;
      return true;
    }
  return false;
}

bool parse_divergence_estimator(const std::string& name, DivergenceEstimator& out) {
  for (DivergenceEstimator e :
       {DivergenceEstimator::exact, DivergenceEstimator::rademacher, DivergenceEstimator::gaussian})
    if (name == divergence_estimator_name(e)) {
      out = e;
      return true;
    }
  return false;
}

void check_ode_likelihood_config(const OdeLikelihoodConfig& c) {
  DDPM_CHECK(c.steps >= 1, "ODE likelihood: the number of ODE steps must be at least 1, got " << c.steps);
  DDPM_CHECK(std::isfinite(c.sigma_min) && std::isfinite(c.sigma_max) && c.sigma_min > 0.0 && c.sigma_min < c.sigma_max,
             "ODE likelihood: needs 0 < sigma_min < sigma_max, both finite; got sigma_min "
                 << c.sigma_min << " and sigma_max " << c.sigma_max);
  DDPM_CHECK(std::isfinite(c.rho) && c.rho > 0.0, "ODE likelihood: rho must be positive, got " << c.rho);
  DDPM_CHECK(
      std::isfinite(c.rtol) && std::isfinite(c.atol) && c.rtol > 0.0 && c.atol > 0.0 && c.max_adaptive_steps >= 1,
      "ODE likelihood: RK45 needs positive rtol and atol and a positive step limit; got rtol "
          << c.rtol << ", atol " << c.atol << ", max_adaptive_steps " << c.max_adaptive_steps);
  DDPM_CHECK(std::isfinite(c.data_std) && c.data_std >= 0.0,
             "ODE likelihood: the prior's data_std must be finite and >= 0, got " << c.data_std);
}

std::vector<double> ode_likelihood_sigmas(const OdeLikelihoodConfig& c) {
  check_ode_likelihood_config(c);
  // karras_sigmas(K + 1, ...) = {sigma_max, ..., sigma_min, 0}: K + 1 positive levels.
  std::vector<double> levels = karras_sigmas(c.steps + 1, c.sigma_min, c.sigma_max, c.rho);
  levels.pop_back();
  std::reverse(levels.begin(), levels.end());
  return levels;
}

namespace {

constexpr double kPi = 3.14159265358979323846;

// Sum over every axis but the batch axis, to the host: [N, ...] -> N doubles.
std::vector<double> per_sample_sum(const Tensor& t) {
  std::vector<int> axes(static_cast<std::size_t>(t.ndim() - 1));
  std::iota(axes.begin(), axes.end(), 1);
  return sum(t, axes).to_double_vector();
}

// One forward of D on a fresh leaf with x's values and one VJP with output gradient
// `cotangent`: returns D (detached) and J^T cotangent (the leaf's gradient).
std::pair<Tensor, Tensor> denoise_and_vjp(const SigmaDenoiser& denoiser, const Tensor& x, double sigma,
                                          const Tensor& cotangent) {
  EnableGradGuard grad_on;  // the integrator runs under NoGradGuard; the VJP needs the tape
  Tensor leaf = x.detach().clone();
  leaf.set_requires_grad(true);
  const Tensor d = denoiser(leaf, sigma).x0;
  DDPM_CHECK(d.defined() && d.shape() == x.shape(), "ODE likelihood: the denoiser returned "
                                                        << (d.defined() ? shape_str(d.shape()) : std::string("nothing"))
                                                        << " at sigma " << sigma << " for x of shape "
                                                        << shape_str(x.shape()));
  DDPM_CHECK(d.requires_grad(), "ODE likelihood: D(x; sigma) at sigma " << sigma
                                                                        << " does not depend on x on the tape (the "
                                                                           "denoiser must be built from engine ops)");
  d.backward(cotangent);
  const Tensor g = leaf.grad();
  DDPM_CHECK(g.defined(), "ODE likelihood: the backward pass did not reach x at sigma " << sigma);
  return {d.detach(), g.detach()};
}

}  // namespace

Tensor hutchinson_probe(const Tensor& x, DivergenceEstimator estimator, Generator& gen) {
  switch (estimator) {
    case DivergenceEstimator::exact:
      return Tensor();
    case DivergenceEstimator::gaussian:
      return randn(x.shape(), gen, x.device(), x.dtype());
    case DivergenceEstimator::rademacher:
      // +-1 with probability 1/2 each: 2 [U > 1/2] - 1.
      return add_scalar(scale(greater_than(rand(x.shape(), gen, x.device(), x.dtype()), 0.5), 2.0), -1.0);
  }
  return Tensor();
}

DenoisedDivergence denoise_with_divergence(const SigmaDenoiser& denoiser, const Tensor& x, double sigma,
                                           DivergenceEstimator estimator, const Tensor& probe) {
  DDPM_CHECK(static_cast<bool>(denoiser), "ODE likelihood: no denoiser was given");
  DDPM_CHECK(x.defined() && x.ndim() >= 2, "ODE likelihood: x must be a batch [N, ...], got "
                                               << (x.defined() ? shape_str(x.shape()) : std::string("nothing")));
  DenoisedDivergence r;
  if (estimator != DivergenceEstimator::exact) {
    DDPM_CHECK(probe.defined() && probe.shape() == x.shape(),
               "ODE likelihood: the Hutchinson probe must have x's shape " << shape_str(x.shape()));
    // eps^T J eps = sum_j eps_j (J^T eps)_j per sample (FFJORD eq. 7).
    const auto [d, vjp] = denoise_and_vjp(denoiser, x, sigma, probe);
    r.denoised = d;
    r.div = per_sample_sum(mul(vjp, probe));
    r.evaluations = 1;
    return r;
  }
  // Exact: tr(J) = sum_j (J^T e_j)_j, one VJP per element j of a sample (the same j in every
  // sample of the batch at once: the samples are independent, so J is block-diagonal).
  const std::int64_t n = x.dim(0), dim = x.numel() / n;
  r.div.assign(static_cast<std::size_t>(n), 0.0);
  std::vector<double> unit(static_cast<std::size_t>(x.numel()), 0.0);
  for (std::int64_t j = 0; j < dim; ++j) {
    for (std::int64_t i = 0; i < n; ++i) unit[static_cast<std::size_t>(i * dim + j)] = 1.0;
    const Tensor e = Tensor::from_vector(unit, x.shape(), x.dtype(), x.device());
    const auto [d, vjp] = denoise_and_vjp(denoiser, x, sigma, e);
    const std::vector<double> g = vjp.to_double_vector();
    for (std::int64_t i = 0; i < n; ++i) {
      r.div[static_cast<std::size_t>(i)] += g[static_cast<std::size_t>(i * dim + j)];
      unit[static_cast<std::size_t>(i * dim + j)] = 0.0;
    }
    if (j == 0) r.denoised = d;
  }
  r.evaluations = dim;
  return r;
}

namespace {

// The augmented right-hand side at one point: f = (x - D) / sigma, and q = sigma div f =
// dim - div D (the divergence's rate per unit of ln sigma), per sample.
struct Slope {
  Tensor f;
  std::vector<double> q;
};

struct FlowRhs {
  const SigmaDenoiser& denoiser;
  DivergenceEstimator estimator;
  const Tensor& probe;
  std::int64_t n, dim;
  std::int64_t evaluations = 0;

  Slope operator()(const Tensor& at, double sigma) {
    const DenoisedDivergence dd = denoise_with_divergence(denoiser, at, sigma, estimator, probe);
    evaluations += dd.evaluations;
    Slope s{scale(sub(at, dd.denoised), 1.0 / sigma), std::vector<double>(static_cast<std::size_t>(n))};
    for (std::size_t i = 0; i < s.q.size(); ++i) s.q[i] = static_cast<double>(dim) - dd.div[i];
    return s;
  }
};

// Heun on the ascending Karras levels (the top of ode_likelihood.h). Returns x(sigma_max);
// adds the divergence integral to `delta`.
Tensor integrate_heun(FlowRhs& rhs, const Tensor& x, const std::vector<double>& sig, std::vector<double>& delta) {
  Tensor xi = x;
  for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
    const double h = sig[i + 1] - sig[i];                // > 0: integrating up
    const double h_log = std::log(sig[i + 1] / sig[i]);  // the same step in ln sigma
    const Slope s0 = rhs(xi, sig[i]);                    // at (x_i, s_i)
    const Tensor x_pred = add(xi, scale(s0.f, h));       // Euler predictor x'
    const Slope s1 = rhs(x_pred, sig[i + 1]);            // at (x', s_{i+1})
    xi = add(xi, scale(add(s0.f, s1.f), 0.5 * h));       // trapezoidal corrector
    for (std::size_t k = 0; k < delta.size(); ++k)
      delta[k] += 0.5 * h_log * (s0.q[k] + s1.q[k]);  // trapezoid in ln sigma
  }
  return xi;
}

// Dormand & Prince (1980) RK5(4)7M, the pair of scipy's RK45 (which Song et al. use), in
// s = ln sigma: dx/ds = sigma f = x - D, d delta/ds = q. The Butcher tableau: c, a (lower
// triangle, row i holds the weights of k_1..k_{i-1} for stage i), b (5th order, also the last
// row of a: the FSAL property, k_7 of a step is k_1 of the next) and e = b - b* (b* the
// embedded 4th-order weights) for the error estimate.
constexpr double kDpC[7] = {0.0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};
constexpr double kDpA[7][6] = {{},
                               {1.0 / 5},
                               {3.0 / 40, 9.0 / 40},
                               {44.0 / 45, -56.0 / 15, 32.0 / 9},
                               {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
                               {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
                               {35.0 / 384, 0.0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}};
constexpr double kDpE[7] = {71.0 / 57600, 0.0, -71.0 / 16695, 71.0 / 1920, -17253.0 / 339200, 22.0 / 525, -1.0 / 40};

// One stage's derivative in s: (sigma f, q).
struct StageSlope {
  Tensor dx;
  std::vector<double> dq;
};

Tensor integrate_rk45(FlowRhs& rhs, const Tensor& x, const OdeLikelihoodConfig& c, std::vector<double>& delta) {
  const double s_end = std::log(c.sigma_max);
  double s = std::log(c.sigma_min);
  auto eval = [&](const Tensor& at, double s_at) {
    const double sigma = std::exp(s_at);
    Slope sl = rhs(at, sigma);
    return StageSlope{scale(sl.f, sigma), std::move(sl.q)};
  };
  const std::size_t n = delta.size();
  Tensor xi = x;
  StageSlope k1 = eval(xi, s);
  double h = std::min(0.1, s_end - s);  // the first step; the controller adapts it at once
  std::int64_t steps = 0;
  while (s < s_end) {
    DDPM_CHECK(++steps <= c.max_adaptive_steps, "ODE likelihood: RK45 took more than "
                                                    << c.max_adaptive_steps << " steps between sigma " << c.sigma_min
                                                    << " and " << c.sigma_max << " (rtol " << c.rtol << ", atol "
                                                    << c.atol << "): the flow is too stiff for these tolerances");
    const bool last = h >= s_end - s;
    if (last) h = s_end - s;
    std::vector<StageSlope> k{k1};
    Tensor x_new;
    for (int stage = 1; stage < 7; ++stage) {
      Tensor xs = xi;
      for (int j = 0; j < stage; ++j)
        if (kDpA[stage][j] != 0.0) xs = add(xs, scale(k[static_cast<std::size_t>(j)].dx, h * kDpA[stage][j]));
      if (stage == 6) x_new = xs;  // the last row of a is b: the 5th-order solution
      k.push_back(eval(xs, s + kDpC[stage] * h));
    }
    // The error estimate h sum_j e_j k_j, scaled per component by atol + rtol max(|y|, |y_new|)
    // and reduced by the RMS over a sample's dim + 1 components (x and delta); the worst
    // sample decides (the batch shares the steps).
    Tensor err_x = scale(k[0].dx, h * kDpE[0]);
    for (int j = 1; j < 7; ++j)
      if (kDpE[j] != 0.0) err_x = add(err_x, scale(k[static_cast<std::size_t>(j)].dx, h * kDpE[j]));
    const std::vector<double> ev = err_x.to_double_vector(), xo = xi.to_double_vector(), xn = x_new.to_double_vector();
    const std::size_t dim = ev.size() / n;
    double worst = 0.0;
    std::vector<double> delta_new(n);
    for (std::size_t i = 0; i < n; ++i) {
      double acc = 0.0, err_d = 0.0, inc = 0.0;
      for (std::size_t j = 0; j < 6; ++j) inc += kDpA[6][j] * k[j].dq[i];  // b = the last row of a
      for (std::size_t j = 0; j < 7; ++j) err_d += kDpE[j] * k[j].dq[i];
      delta_new[i] = delta[i] + h * inc;
      for (std::size_t e = i * dim; e < (i + 1) * dim; ++e) {
        const double sc = c.atol + c.rtol * std::max(std::abs(xo[e]), std::abs(xn[e]));
        acc += (ev[e] / sc) * (ev[e] / sc);
      }
      const double sc_d = c.atol + c.rtol * std::max(std::abs(delta[i]), std::abs(delta_new[i]));
      acc += (h * err_d / sc_d) * (h * err_d / sc_d);
      worst = std::max(worst, std::sqrt(acc / static_cast<double>(dim + 1)));
    }
    // Step size control (Hairer, Norsett, Wanner, "Solving ODEs I", II.4): the error of a
    // 4th-order estimate scales as h^5; safety factor 0.9, growth limited to [0.2, 5].
    DDPM_CHECK(std::isfinite(worst), "ODE likelihood: the flow became non-finite between sigma "
                                         << std::exp(s) << " and " << std::exp(s + h)
                                         << " (the denoiser returned NaN or infinity)");
    const double factor = worst == 0.0 ? 5.0 : std::clamp(0.9 * std::pow(worst, -0.2), 0.2, 5.0);
    if (worst <= 1.0) {
      s = last ? s_end : s + h;  // land on sigma_max exactly
      xi = x_new;
      delta = delta_new;
      k1 = std::move(k[6]);  // FSAL
    }
    h *= factor;
  }
  return xi;
}

}  // namespace

OdeLikelihood ode_log_likelihood(const SigmaDenoiser& denoiser, const Tensor& x, const OdeLikelihoodConfig& c,
                                 Generator& gen) {
  const std::vector<double> sig = ode_likelihood_sigmas(c);  // ascending, K + 1 levels (checks c)
  DDPM_CHECK(x.defined() && x.ndim() >= 2 && x.dim(0) >= 1,
             "ODE likelihood: x must be a batch [N, ...], got "
                 << (x.defined() ? shape_str(x.shape()) : std::string("nothing")));
  NoGradGuard no_grad;
  const std::int64_t n = x.dim(0), dim = x.numel() / n;
  const double d = static_cast<double>(dim);
  const Tensor probe = hutchinson_probe(x, c.divergence, gen);  // one eps per sample, kept (FFJORD)

  OdeLikelihood r;
  r.dim = dim;
  r.divergence_integral.assign(static_cast<std::size_t>(n), 0.0);
  FlowRhs rhs{denoiser, c.divergence, probe, n, dim};
  const Tensor x_top = c.solver == OdeSolver::heun ? integrate_heun(rhs, x, sig, r.divergence_integral)
                                                   : integrate_rk45(rhs, x, c, r.divergence_integral);
  r.evaluations = rhs.evaluations;
  // log N(x(sigma_max); 0, v I) = -(|x|^2 / v + dim log(2 pi v)) / 2,  v = sigma_max^2 + data_std^2.
  const double v = c.sigma_max * c.sigma_max + c.data_std * c.data_std;
  const std::vector<double> sq = per_sample_sum(square(x_top));
  r.prior_log_density.resize(static_cast<std::size_t>(n));
  r.log_likelihood.resize(static_cast<std::size_t>(n));
  for (std::size_t k = 0; k < static_cast<std::size_t>(n); ++k) {
    r.prior_log_density[k] = -0.5 * (sq[k] / v + d * std::log(2.0 * kPi * v));
    r.log_likelihood[k] = r.prior_log_density[k] + r.divergence_integral[k];
  }
  r.x_at_sigma_max = x_top;
  return r;
}

Tensor dequantize_uniform(const std::vector<std::uint8_t>& bytes, const Shape& shape, Generator& gen, Device device) {
  DDPM_CHECK(static_cast<std::int64_t>(bytes.size()) == shape_numel(shape),
             "dequantize_uniform: " << bytes.size() << " bytes for the shape " << shape_str(shape));
  const std::vector<float> u = rand(shape, gen).to_vector();  // U(0, 1) per element
  std::vector<float> values(bytes.size());
  // u = 2 (k + U) / 256 - 1 = (k + U) / 128 - 1: bins of width 2/256 tiling [-1, 1).
  for (std::size_t i = 0; i < bytes.size(); ++i)
    values[i] = static_cast<float>((static_cast<double>(bytes[i]) + u[i]) / 128.0 - 1.0);
  return Tensor::from_vector(values, shape, device);
}

double dequantized_bits_per_dim(double log_density_u, std::int64_t dim) {
  DDPM_CHECK(dim >= 1, "dequantized_bits_per_dim: needs at least one dimension, got " << dim);
  // log p_y = log p_u - D log 128 on the [0, 256) scale; bits = -log p_y / (D ln 2).
  return -log_density_u / (static_cast<double>(dim) * std::log(2.0)) + 7.0;
}

SigmaDenoiser vp_sigma_denoiser(const std::vector<double>& train_sigmas, const DenoiseFn& net,
                                const SamplerConfig& config, const std::vector<std::int64_t>& labels) {
  DDPM_CHECK(!train_sigmas.empty() && static_cast<bool>(net), "vp_sigma_denoiser: needs a network and its sigmas");
  return [train_sigmas, net, config, labels](const Tensor& x, double sigma) {
    const double t = timestep_for_sigma(train_sigmas, sigma);
    const double c_in = 1.0 / std::sqrt(1.0 + sigma * sigma);  // sqrt(abar): x_vp = c_in x
    const Tensor pred = network_output(net, config, scale(x, c_in), t, labels, sigma).pred;
    Tensor d;
    switch (config.mean_type) {
      case ModelMeanType::eps:
        d = sub(x, scale(pred, sigma));
        break;  // D = x - sigma eps
      case ModelMeanType::x0:
        d = pred;
        break;
      case ModelMeanType::v:  // D = x / (1 + sigma^2) - sigma c_in v (karras.h)
        d = sub(scale(x, c_in * c_in), scale(pred, sigma * c_in));
        break;
    }
    return SigmaDenoised{d, t};
  };
}

}  // namespace ddpm::diffusion
