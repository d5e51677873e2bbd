// models/diffusion/dpm_solver.cpp: DPM-Solver++(2M); the math is in dpm_solver.h.
#include "models/diffusion/dpm_solver.h"

#include <cmath>
#include <optional>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {
namespace {

void check_levels(const char* who, const std::vector<double>& sigmas) {
  DDPM_CHECK(sigmas.size() >= 2, who << ": needs at least two noise levels, got " << sigmas.size());
  for (std::size_t i = 0; i < sigmas.size(); ++i) {
    const bool last = i + 1 == sigmas.size();
    DDPM_CHECK(std::isfinite(sigmas[i]) && (sigmas[i] > 0 || (last && sigmas[i] == 0)),
               who << ": noise level " << i << " is " << sigmas[i]
                   << "; levels must be positive and finite (only the last may be 0)");
    DDPM_CHECK(i == 0 || sigmas[i] < sigmas[i - 1],
               who << ": noise levels must decrease, but level " << i << " (" << sigmas[i] << ") follows "
                   << sigmas[i - 1]);
  }
}

}  // namespace

Tensor dpm_solver_2m(const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas,
                     const SigmaStepCallback& callback) {
  check_levels("dpm_solver_2m", sigmas);
  NoGradGuard no_grad;
  std::optional<Tensor> previous;  // D_{i-1}
  double h_previous = 0.0;         // lambda_i - lambda_{i-1}
  for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
    const double s = sigmas[i], s_next = sigmas[i + 1];
    const SigmaDenoised den = denoise(x, s);
    const Tensor& d = den.x0;
    if (s_next == 0) {
      x = d;  // lambda_{i+1} = infinity: the step lands on D_i
    } else {
      const double h = std::log(s) - std::log(s_next);  // lambda_{i+1} - lambda_i, lambda = -log sigma
      Tensor d_used = d;
      if (previous) {
        const double r = h_previous / h;
        d_used = sub(scale(d, 1.0 + 0.5 / r), scale(*previous, 0.5 / r));
      }
      // x_{i+1} = (sigma_{i+1} / sigma_i) x_i + (1 - e^{-h}) D~, with 1 - e^{-h} = -expm1(-h)
      x = add(scale(x, s_next / s), scale(d_used, -std::expm1(-h)));
      h_previous = h;
    }
    previous = d;
    if (callback) callback(i, x, den);
  }
  return x;
}

Tensor dpm_solver_2m_sde(const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas, Generator& gen,
                         const SigmaStepCallback& callback) {
  check_levels("dpm_solver_2m_sde", sigmas);
  NoGradGuard no_grad;
  std::optional<Tensor> previous;  // D_{i-1}
  double h_previous = 0.0;         // lambda_i - lambda_{i-1}
  for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
    const double s = sigmas[i], s_next = sigmas[i + 1];
    const SigmaDenoised den = denoise(x, s);
    const Tensor& d = den.x0;
    if (s_next == 0) {
      x = d;  // first order onto lambda = infinity, no noise: the step lands on D_i
    } else {
      const double h = std::log(s) - std::log(s_next);
      const double one_minus_decay = -std::expm1(-2.0 * h);  // 1 - e^{-2h} = 1 - sigma_t^2 / sigma_s^2
      Tensor d_used = d;
      if (previous) d_used = add(d, scale(sub(d, *previous), 0.5 * h / h_previous));  // D + (D - D_prev) / (2r)
      const Tensor z = randn(x.shape(), gen, x.device(), x.dtype());
      // x_{i+1} = e^{-2h} x_i + (1 - e^{-2h}) D~ + sigma_{i+1} sqrt(1 - e^{-2h}) z
      x = add(add(scale(x, std::exp(-2.0 * h)), scale(d_used, one_minus_decay)),
              scale(z, s_next * std::sqrt(one_minus_decay)));
      h_previous = h;
    }
    previous = d;
    if (callback) callback(i, x, den);
  }
  return x;
}

}  // namespace ddpm::diffusion
