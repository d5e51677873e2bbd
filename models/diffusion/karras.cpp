// models/diffusion/karras.cpp: see karras.h for the equations.
#include "models/diffusion/karras.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/dpm_solver.h"
#include "models/diffusion/unipc.h"

namespace ddpm::diffusion {

std::vector<double> vp_sigmas(const DiffusionSchedule& s) {
  std::vector<double> sig;
  for (const double abar : s.alphas_cumprod)
    if (abar > 0.0) sig.push_back(std::sqrt((1.0 - abar) / abar));  // abar = 0 only at T-1 (see karras.h)
  DDPM_CHECK(!sig.empty(), "vp_sigmas: the schedule has no timestep with alpha_bar > 0");
  return sig;
}

double timestep_for_sigma(const std::vector<double>& train_sigmas, double sigma) {
  DDPM_CHECK(!train_sigmas.empty(), "timestep_for_sigma: no training sigmas");
  DDPM_CHECK(sigma > 0.0 && std::isfinite(sigma), "timestep_for_sigma: sigma must be positive, got " << sigma);
  const std::size_t T = train_sigmas.size();
  if (sigma <= train_sigmas.front()) return 0.0;
  if (sigma >= train_sigmas.back()) return static_cast<double>(T - 1);
  // First level above sigma: sigma_{k} < sigma <= sigma_{k+1} with k + 1 = hi.
  const auto above = std::lower_bound(train_sigmas.begin(), train_sigmas.end(), sigma);
  const std::size_t hi = static_cast<std::size_t>(above - train_sigmas.begin());
  const std::size_t k = hi - 1;
  const double lo_log = std::log(train_sigmas[k]), hi_log = std::log(train_sigmas[hi]);
  return static_cast<double>(k) + (std::log(sigma) - lo_log) / (hi_log - lo_log);
}

double sigma_for_timestep(const std::vector<double>& train_sigmas, double t) {
  DDPM_CHECK(!train_sigmas.empty(), "sigma_for_timestep: no training sigmas");
  const double last = static_cast<double>(train_sigmas.size() - 1);
  t = std::min(std::max(t, 0.0), last);
  const std::size_t k = std::min(static_cast<std::size_t>(std::floor(t)), train_sigmas.size() - 1);
  if (static_cast<double>(k) == t) return train_sigmas[k];
  const double f = t - static_cast<double>(k);
  return std::exp((1.0 - f) * std::log(train_sigmas[k]) + f * std::log(train_sigmas[k + 1]));
}

std::vector<double> karras_sigmas(std::int64_t n, double sigma_min, double sigma_max, double rho) {
  DDPM_CHECK(n >= 1, "karras_sigmas: the Heun sampler needs at least 1 step, got " << n);
  DDPM_CHECK(std::isfinite(sigma_min) && std::isfinite(sigma_max) && sigma_min > 0.0,
             "karras_sigmas: sigma_min must be positive and both limits finite, got sigma_min = "
                 << sigma_min << ", sigma_max = " << sigma_max);
  DDPM_CHECK(sigma_min < sigma_max,
             "karras_sigmas: sigma_min (" << sigma_min << ") must be below sigma_max (" << sigma_max << ")");
  DDPM_CHECK(rho > 0.0 && std::isfinite(rho), "karras_sigmas: rho must be positive, got " << rho);
  std::vector<double> sig(static_cast<std::size_t>(n) + 1);
  const double a = std::pow(sigma_max, 1.0 / rho), b = std::pow(sigma_min, 1.0 / rho);
  for (std::int64_t i = 0; i < n; ++i) {
    const double frac = n == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(n - 1);
    sig[static_cast<std::size_t>(i)] = std::pow(a + frac * (b - a), rho);
  }
  // The endpoints exactly, not through pow(pow(.)): t(sigma) then hits 0 and T-1 exactly.
  sig.front() = sigma_max;
  if (n > 1) sig[static_cast<std::size_t>(n - 1)] = sigma_min;
  sig.back() = 0.0;
  return sig;
}

std::pair<double, double> resolve_sigma_range(const DiffusionSchedule& s, const SamplerConfig& config) {
  const std::vector<double> train = vp_sigmas(s);
  const double lo = train.front(), hi = train.back();
  DDPM_CHECK(config.sigma_min >= 0.0 && config.sigma_max >= 0.0,
             "heun sampler: sigma_min and sigma_max must be positive (0 = the schedule's range), got "
                 << config.sigma_min << " and " << config.sigma_max);
  const double smin = config.sigma_min > 0.0 ? config.sigma_min : lo;
  const double smax = config.sigma_max > 0.0 ? config.sigma_max : hi;
  // A relative slack of 1e-9 lets a value printed from the schedule round-trip.
  const double slack = 1e-9;
  DDPM_CHECK(smin >= lo * (1.0 - slack) && smax <= hi * (1.0 + slack),
             "heun sampler: the noise levels [" << smin << ", " << smax << "] leave the model's training range ["
                                                << lo << ", " << hi << "] (sigma_t = sqrt((1 - alpha_bar_t) / "
                                                << "alpha_bar_t)): the network never saw them");
  DDPM_CHECK(smin < smax, "heun sampler: sigma_min (" << smin << ") must be below sigma_max (" << smax << ")");
  return {smin, smax};
}

void check_churn_settings(const SamplerConfig& config) {
  DDPM_CHECK(std::isfinite(config.s_churn) && config.s_churn >= 0.0,
             "heun sampler: s_churn (EDM's S_churn) must be a finite number >= 0 (0 = deterministic), got "
                 << config.s_churn);
  DDPM_CHECK(std::isfinite(config.s_noise) && config.s_noise > 0.0,
             "heun sampler: s_noise (EDM's S_noise) must be a finite number > 0, got " << config.s_noise);
  DDPM_CHECK(std::isfinite(config.s_tmin) && config.s_tmin >= 0.0,
             "heun sampler: s_tmin (EDM's S_tmin) must be a finite number >= 0, got " << config.s_tmin);
  DDPM_CHECK(!std::isnan(config.s_tmax) && config.s_tmin <= config.s_tmax,
             "heun sampler: s_tmin (" << config.s_tmin << ") must not exceed s_tmax (" << config.s_tmax
                                      << "): the churn window [s_tmin, s_tmax] would be empty");
}

std::vector<double> churned_sigmas(const std::vector<double>& levels, const std::vector<double>& train_sigmas,
                                   const SamplerConfig& config) {
  DDPM_CHECK(!train_sigmas.empty(), "churned_sigmas: needs the training sigmas");
  return churned_sigmas(levels, train_sigmas.back(), config);  // sigma_{T-1}: t(sigma^) must stay <= T-1
}

std::vector<double> churned_sigmas(const std::vector<double>& levels, double sigma_cap, const SamplerConfig& config) {
  check_churn_settings(config);
  DDPM_CHECK(levels.size() >= 2 && sigma_cap > 0.0,
             "churned_sigmas: needs the N + 1 noise levels (got " << levels.size() << ") and a positive cap (got "
                                                                  << sigma_cap << ")");
  const std::size_t n = levels.size() - 1;
  // gamma = min(S_churn / N, sqrt(2) - 1): the cap at most doubles the variance (EDM alg. 2).
  const double gamma = std::min(config.s_churn / static_cast<double>(n), std::sqrt(2.0) - 1.0);
  std::vector<double> hat(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double s = levels[i];
    const bool churned = gamma > 0.0 && config.s_tmin <= s && s <= config.s_tmax;
    hat[i] = churned ? std::max(s, std::min(s * (1.0 + gamma), sigma_cap)) : s;
  }
  return hat;
}

namespace {

// D(x; sigma) of karras.h for the VP network and the timestep it saw; D is an x_0 estimate,
// thresholded by `clip` (x0_threshold.h: none, static or dynamic).
SigmaDenoised vp_denoise(const DenoiseFn& net, const SamplerConfig& config, const std::vector<double>& train_sigmas,
                 const Tensor& x, double sigma, const std::vector<std::int64_t>& labels, const X0Threshold& clip) {
  const double t = timestep_for_sigma(train_sigmas, sigma);
  const double c_in = 1.0 / std::sqrt(1.0 + sigma * sigma);  // sqrt(abar): x_vp = c_in x
  const Tensor pred = network_output(net, config, scale(x, c_in), t, labels, sigma).pred;
  Tensor d;
  switch (config.mean_type) {
    case ModelMeanType::eps: d = sub(x, scale(pred, sigma)); break;  // x - sigma eps
    case ModelMeanType::x0: d = pred; break;                          // x_0 of x_vp is x_0 of x
    case ModelMeanType::v:  // sqrt(abar) x_vp - sqrt(1 - abar) v = x / (1 + sigma^2) - sigma c_in v
      d = sub(scale(x, c_in * c_in), scale(pred, sigma * c_in));
      break;
  }
  return {apply_x0_threshold(d, clip), t};
}

}  // namespace

Tensor karras_sample(const DiffusionSchedule& base, const DenoiseFn& net, const Shape& shape,
                     const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen,
                     Device device, const StepCallback& callback, KarrasSolver solver) {
  check_sample_request(net, shape, labels, config);
  const auto [sigma_min, sigma_max] = resolve_sigma_range(base, config);
  const std::vector<double> sig = karras_sigmas(config.heun_steps, sigma_min, sigma_max, config.rho);
  const std::vector<double> train = vp_sigmas(base);
  const std::vector<double> sig_hat = churned_sigmas(sig, train, config);  // sigma^_i, = sigma_i unchurned
  const X0Threshold clip = resolve_x0_threshold(config);
  const SigmaDenoiser denoiser = [&](const Tensor& x, double sigma) {
    return vp_denoise(net, config, train, x, sigma, labels, clip);
  };
  return karras_solve(denoiser, shape, sig, sig_hat, config, gen, device, callback, solver);
}

const char* karras_solver_name(KarrasSolver solver) {
  switch (solver) {
    case KarrasSolver::heun: return "heun";
    case KarrasSolver::euler: return "euler";
    case KarrasSolver::dpmpp_2m: return "dpm++2m";
    case KarrasSolver::euler_ancestral: return "euler-ancestral";
    case KarrasSolver::unipc: return "unipc";
    case KarrasSolver::dpmpp_2m_sde: return "dpm++2m-sde";
  }
  return "?";
}

bool parse_karras_solver(const std::string& name, KarrasSolver& out) {
  for (KarrasSolver k : {KarrasSolver::heun, KarrasSolver::euler, KarrasSolver::dpmpp_2m,
                         KarrasSolver::euler_ancestral, KarrasSolver::unipc, KarrasSolver::dpmpp_2m_sde})
    if (name == karras_solver_name(k)) {
      out = k;
      return true;
    }
  return false;
}

std::int64_t karras_network_evaluations(KarrasSolver solver, std::int64_t n) {
  return solver == KarrasSolver::heun ? 2 * n - 1 : n;
}

Tensor karras_solve(const SigmaDenoiser& denoiser, const Shape& shape, const std::vector<double>& sig,
                    const std::vector<double>& sig_hat, const SamplerConfig& config, Generator& gen, Device device,
                    const StepCallback& callback, KarrasSolver solver) {
  NoGradGuard no_grad;
  DDPM_CHECK(denoiser && sig.size() >= 2 && sig_hat.size() == sig.size() - 1 && sig.back() == 0.0,
             "karras_solve: needs a denoiser, N + 1 levels ending in 0 and N churned levels; got "
                 << sig.size() << " levels and " << sig_hat.size() << " churned");
  // x_0 ~ N(0, sigma_max^2 I)
  return karras_solve_from(denoiser, scale(randn(shape, gen, device, config.dtype), sig.front()), sig, sig_hat,
                           config, gen, device, callback, solver);
}

Tensor karras_solve_from(const SigmaDenoiser& denoiser, const Tensor& x_start, const std::vector<double>& sig,
                         const std::vector<double>& sig_hat, const SamplerConfig& config, Generator& gen,
                         Device device, const StepCallback& callback, KarrasSolver solver) {
  NoGradGuard no_grad;
  DDPM_CHECK(denoiser && x_start.defined() && sig.size() >= 2 && sig_hat.size() == sig.size() - 1 &&
                 sig.back() == 0.0,
             "karras_solve: needs a denoiser, a start point, N + 1 levels ending in 0 and N churned levels; got "
                 << sig.size() << " levels and " << sig_hat.size() << " churned");
  const std::int64_t N = static_cast<std::int64_t>(sig_hat.size());
  const Shape shape = x_start.shape();
  Tensor x = x_start;
  if (solver != KarrasSolver::heun && solver != KarrasSolver::euler)
    DDPM_CHECK(std::equal(sig_hat.begin(), sig_hat.end(), sig.begin()),
               "karras_solve: " << karras_solver_name(solver) << " takes no churn (s_churn " << config.s_churn
                                << "); churn applies to heun and euler");
  if (solver == KarrasSolver::dpmpp_2m || solver == KarrasSolver::unipc || solver == KarrasSolver::dpmpp_2m_sde) {
    const SigmaStepCallback step_done = [&](std::size_t i, const Tensor& x_next, const SigmaDenoised& den) {
      if (!callback) return;
      const double s_next = sig[i + 1];
      const Tensor x_shown = s_next == 0.0 ? x_next : scale(x_next, 1.0 / std::sqrt(1.0 + s_next * s_next));
      const std::int64_t k = static_cast<std::int64_t>(i);
      callback(StepInfo{N - 1 - k, N, static_cast<std::int64_t>(std::llround(den.t)), x_shown, den.x0, sig[i]});
    };
    if (solver == KarrasSolver::unipc) return unipc_solve(denoiser, x, sig, config.solver_order, step_done);
    if (solver == KarrasSolver::dpmpp_2m_sde) return dpm_solver_2m_sde(denoiser, x, sig, gen, step_done);
    return dpm_solver_2m(denoiser, x, sig, step_done);
  }
  for (std::int64_t i = 0; i < N; ++i) {
    const double s = sig[static_cast<std::size_t>(i)], s_next = sig[static_cast<std::size_t>(i + 1)];
    // Churn (algorithm 2): x^ = x + sqrt(sigma^^2 - sigma^2) S_noise eps, one draw, only
    // when the level is churned; otherwise x^ is x itself and s_hat == s (algorithm 1).
    const double s_hat = sig_hat[static_cast<std::size_t>(i)];
    if (s_hat > s)
      x = add(x, scale(randn(shape, gen, device, config.dtype), std::sqrt(s_hat * s_hat - s * s) * config.s_noise));
    const SigmaDenoised den = denoiser(x, s_hat);
    Tensor next;
    if (s_next == 0.0) {
      // Euler to sigma = 0: x^ + (0 - s^) (x^ - D) / s^ = D, taken exactly.
      next = den.x0;
    } else if (solver == KarrasSolver::euler_ancestral) {
      // The posterior step of the header: mean D + (s_down / s)(x - D), noise s_up z.
      const double s_up = s_next * std::sqrt(s * s - s_next * s_next) / s, s_down = s_next * s_next / s;
      next = add(add(den.x0, scale(sub(x, den.x0), s_down / s)),
                 scale(randn(shape, gen, device, config.dtype), s_up));
    } else {
      const Tensor d = scale(sub(x, den.x0), 1.0 / s_hat);  // dx/dsigma at (x^_i, sigma^_i)
      next = add(x, scale(d, s_next - s_hat));               // Euler predictor x'
      if (solver == KarrasSolver::heun) {
        const SigmaDenoised den2 = denoiser(next, s_next);
        const Tensor d2 = scale(sub(next, den2.x0), 1.0 / s_next);  // dx/dsigma at (x', sigma_{i+1})
        next = add(x, scale(add(d, d2), 0.5 * (s_next - s_hat)));  // trapezoidal corrector
      }
    }
    x = next;
    if (callback) {
      const Tensor x_shown = s_next == 0.0 ? x : scale(x, 1.0 / std::sqrt(1.0 + s_next * s_next));
      callback(StepInfo{N - 1 - i, N, static_cast<std::int64_t>(std::llround(den.t)), x_shown, den.x0, s});
    }
  }
  return x;
}

}  // namespace ddpm::diffusion
