// models/diffusion/sigma_edit.cpp: see sigma_edit.h for the ODE, the states and the strength rule.
#include "models/diffusion/sigma_edit.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {

namespace {

void check_levels(const std::vector<double>& levels, const char* what) {
  DDPM_CHECK(levels.size() >= 2 && levels.back() == 0.0 && levels[levels.size() - 2] > 0.0,
             what << ": needs the N + 1 noise levels of karras_sigmas (descending, ending in 0); got "
                  << levels.size() << " levels");
  for (std::size_t i = 0; i + 1 < levels.size(); ++i)
    DDPM_CHECK(levels[i] > levels[i + 1], what << ": the noise levels must descend; level " << i << " is "
                                               << levels[i] << " and level " << i + 1 << " is " << levels[i + 1]);
}

void check_ode_solver(KarrasSolver solver, const char* what) {
  DDPM_CHECK(solver == KarrasSolver::heun || solver == KarrasSolver::euler,
             what << ": the edits follow the probability-flow ODE with heun or euler steps, not "
                  << karras_solver_name(solver));
}

// Unchurned: sigma^_i = sigma_i for the N nonzero levels.
std::vector<double> unchurned(const std::vector<double>& levels) {
  return std::vector<double>(levels.begin(), levels.end() - 1);
}

Tensor on_device(const Tensor& x, const SamplerConfig& config, Device device) {
  return Tensor::from_vector(x.to_double_vector(), x.shape(), config.dtype, device);
}

}  // namespace

Tensor sigma_ode_invert(const SigmaDenoiser& denoiser, const Tensor& y, const std::vector<double>& levels,
                        const SamplerConfig& config, Device device, KarrasSolver solver,
                        const StepCallback& callback) {
  NoGradGuard no_grad;
  check_levels(levels, "sigma_ode_invert");
  check_ode_solver(solver, "sigma_ode_invert");
  DDPM_CHECK(denoiser && y.defined() && y.shape().size() >= 2,
             "sigma_ode_invert: needs a denoiser and images with a batch axis and a channel axis");
  const std::int64_t N = static_cast<std::int64_t>(levels.size()) - 1;
  auto report = [&](std::int64_t i, const Tensor& x, const SigmaDenoised& den) {
    if (!callback) return;
    const double s = levels[static_cast<std::size_t>(i)];
    const Tensor x_shown = scale(x, 1.0 / std::sqrt(1.0 + s * s));  // the network-input scale, as karras.h
    callback(StepInfo{i, N, static_cast<std::int64_t>(std::llround(den.t)), x_shown, den.x0, s});
  };
  Tensor x = on_device(y, config, device);
  // 0 -> sigma_min: the slope at the clean image, asked at sigma_min: x = y + (y - D(y; sigma_min)).
  const double s_min = levels[static_cast<std::size_t>(N - 1)];
  const SigmaDenoised first = denoiser(x, s_min);
  x = sub(scale(x, 2.0), first.x0);
  report(N - 1, x, first);
  for (std::int64_t i = N - 1; i >= 1; --i) {
    const double s = levels[static_cast<std::size_t>(i)], s_up = levels[static_cast<std::size_t>(i - 1)];
    const SigmaDenoised den = denoiser(x, s);
    const Tensor d = scale(sub(x, den.x0), 1.0 / s);  // dx/dsigma at (x, sigma_i)
    Tensor next = add(x, scale(d, s_up - s));         // Euler predictor, upward
    if (solver == KarrasSolver::heun) {
      const SigmaDenoised den2 = denoiser(next, s_up);
      const Tensor d2 = scale(sub(next, den2.x0), 1.0 / s_up);  // dx/dsigma at (x', sigma_{i-1})
      next = add(x, scale(add(d, d2), 0.5 * (s_up - s)));      // trapezoidal corrector
    }
    x = next;
    report(i - 1, x, den);
  }
  return x;
}

Tensor sigma_ode_decode(const SigmaDenoiser& denoiser, const Tensor& x_max, const std::vector<double>& levels,
                        const SamplerConfig& config, Device device, KarrasSolver solver,
                        const StepCallback& callback) {
  check_levels(levels, "sigma_ode_decode");
  check_ode_solver(solver, "sigma_ode_decode");
  DDPM_CHECK(x_max.defined() && x_max.shape().size() >= 2,
             "sigma_ode_decode: the latents need a batch axis and a channel axis");
  Generator unused(0);  // no churn, heun / euler: nothing is drawn
  return karras_solve_from(denoiser, on_device(x_max, config, device), levels, unchurned(levels), config, unused,
                           device, callback, solver);
}

std::int64_t sigma_sdedit_start_index(std::int64_t n_steps, double strength) {
  DDPM_CHECK(std::isfinite(strength) && strength > 0.0 && strength <= 1.0,
             "SDEdit: the strength must lie in (0, 1] (the fraction of the N levels run again), got " << strength);
  DDPM_CHECK(n_steps >= 1, "SDEdit: needs at least one noise level, got " << n_steps);
  // ceil(s N) steps, with a 1e-9 slack so that printed strengths such as 0.3 * 10 = 3 are not
  // rounded up to 4 by the binary representation of 0.3.
  const std::int64_t run = static_cast<std::int64_t>(std::ceil(strength * static_cast<double>(n_steps) - 1e-9));
  return n_steps - std::max<std::int64_t>(1, run);
}

Tensor sigma_sdedit(const SigmaDenoiser& denoiser, const Tensor& guide, double strength,
                    const std::vector<double>& levels, const SamplerConfig& config, Generator& gen, Device device,
                    KarrasSolver solver, const StepCallback& callback) {
  NoGradGuard no_grad;
  check_levels(levels, "sigma_sdedit");
  check_ode_solver(solver, "sigma_sdedit");
  DDPM_CHECK(guide.defined() && guide.shape().size() >= 2,
             "SDEdit: the guide images need a batch axis and a channel axis");
  const std::int64_t N = static_cast<std::int64_t>(levels.size()) - 1;
  const std::int64_t i0 = sigma_sdedit_start_index(N, strength);
  const double sigma0 = levels[static_cast<std::size_t>(i0)];
  const Tensor z = randn(guide.shape(), gen, device, config.dtype);
  const Tensor x = add(on_device(guide, config, device), scale(z, sigma0));  // x = guide + sigma_{i0} z
  const std::vector<double> rest(levels.begin() + i0, levels.end());
  return karras_solve_from(denoiser, x, rest, unchurned(rest), config, gen, device, callback, solver);
}

}  // namespace ddpm::diffusion
