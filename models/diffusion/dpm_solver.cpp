// models/diffusion/dpm_solver.cpp: DPM-Solver++(2M); the math is in dpm_solver.h.
#include "models/diffusion/dpm_solver.h"

#include <cmath>
#include <optional>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {

Tensor dpm_solver_2m(const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas,
                     const SigmaStepCallback& callback) {
  DDPM_CHECK(sigmas.size() >= 2, "dpm_solver_2m: needs at least two noise levels, got " << sigmas.size());
  for (std::size_t i = 0; i < sigmas.size(); ++i) {
    const bool last = i + 1 == sigmas.size();
    DDPM_CHECK(std::isfinite(sigmas[i]) && (sigmas[i] > 0 || (last && sigmas[i] == 0)),
               "dpm_solver_2m: noise level " << i << " is " << sigmas[i]
                                             << "; levels must be positive and finite (only the last may be 0)");
    DDPM_CHECK(i == 0 || sigmas[i] < sigmas[i - 1], "dpm_solver_2m: noise levels must decrease, but level "
                                                        << i << " (" << sigmas[i] << ") follows " << sigmas[i - 1]);
  }
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

}  // namespace ddpm::diffusion
