// tests/support/gaussian_oracle.h: the exact denoiser for Gaussian data, for tests of the
// editing samplers (DDIM inversion, SDEdit) that need a network whose ODE has a closed form.
//
// Data x_0 ~ N(mu, s^2) independently per element. At integer timestep t (alpha_bar = abar_t
// of the given schedule) x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is Gaussian with variance
// V = abar s^2 + 1 - abar and Cov(eps, x_t) = sqrt(1 - abar), so the MSE-optimal network is
//   eps*(x_t, t) = E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / V.
// In xbar = x / sqrt(abar), sigma = sqrt((1 - abar) / abar) the probability-flow ODE
// d xbar = eps* d sigma is linear and solves to
//   xbar(sigma) - mu = (xbar(sigma_a) - mu) sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_a^2)
// (the same solution test_karras.cpp uses in EDM's variables).
#pragma once

#include <cmath>
#include <vector>

#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/schedule.h"

namespace ddpm::testing {

// The eps* network for N(mu, s^2) data on `sched` (the BASE schedule: it is called with
// original timesteps). Counts its calls in *calls when given.
inline diffusion::DenoiseFn gaussian_eps_oracle(const diffusion::DiffusionSchedule& sched, double mu, double s,
                                                int* calls = nullptr) {
  const std::vector<double> abars = sched.alphas_cumprod;
  return [abars, mu, s, calls](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    if (calls) ++*calls;
    const std::vector<double> xv = x.to_double_vector();
    std::vector<double> out(xv.size());
    const std::size_t per = xv.size() / t.size();
    for (std::size_t i = 0; i < t.size(); ++i) {
      const double abar = abars[static_cast<std::size_t>(std::llround(t[i]))];
      const double V = abar * s * s + 1.0 - abar;
      for (std::size_t j = i * per; j < (i + 1) * per; ++j)
        out[j] = std::sqrt(1.0 - abar) * (xv[j] - std::sqrt(abar) * mu) / V;
    }
    return Tensor::from_vector(out, x.shape(), x.dtype());
  };
}

// sigma = sqrt((1 - abar) / abar) of an original timestep.
inline double vp_sigma(const diffusion::DiffusionSchedule& sched, std::int64_t t) {
  const double abar = sched.alphas_cumprod[static_cast<std::size_t>(t)];
  return std::sqrt((1.0 - abar) / abar);
}

}  // namespace ddpm::testing
