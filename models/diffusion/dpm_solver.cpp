// models/diffusion/dpm_solver.cpp: DPM-Solver++(2M); the math is in dpm_solver.h.
#include "models/diffusion/dpm_solver.h"

#include <cmath>
#include <functional>
#include <optional>
#include <utility>

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

// One step of a two-step method from sigma_i = s to sigma_{i+1} = s_next > 0, in
// lambda = -log sigma: x_i, D_i = d, D_{i-1} = previous (nullptr on the first step),
// h = lambda_{i+1} - lambda_i and h_previous = lambda_i - lambda_{i-1}; returns x_{i+1}.
using MultistepUpdate = std::function<Tensor(const Tensor& x, const Tensor& d, const Tensor* previous, double h,
                                             double h_previous, double s, double s_next)>;

// The loop both multistep solvers share: one denoiser call per level, the last D_i kept for
// the next step's second-order correction, and a final step onto sigma = 0 (lambda = infinity)
// that lands on D_i itself, first order and noise-free, in both the ODE and the SDE.
Tensor multistep(const char* who, const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas,
                 const SigmaStepCallback& callback, const MultistepUpdate& update) {
  check_levels(who, sigmas);
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
      x = update(x, d, previous ? &*previous : nullptr, h, h_previous, s, s_next);
      h_previous = h;
    }
    previous = d;
    if (callback) callback(i, x, den);
  }
  return x;
}

}  // namespace

Tensor dpm_solver_2m(const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas,
                     const SigmaStepCallback& callback) {
  return multistep("dpm_solver_2m", denoise, std::move(x), sigmas, callback,
                   [](const Tensor& x, const Tensor& d, const Tensor* previous, double h, double h_previous,
                      double s, double s_next) {
                     Tensor d_used = d;
                     if (previous) {
                       const double r = h_previous / h;
                       d_used = sub(scale(d, 1.0 + 0.5 / r), scale(*previous, 0.5 / r));
                     }
                     // x_{i+1} = (sigma_{i+1} / sigma_i) x_i + (1 - e^{-h}) D~, with 1 - e^{-h} = -expm1(-h)
                     return add(scale(x, s_next / s), scale(d_used, -std::expm1(-h)));
                   });
}

Tensor dpm_solver_2m_sde(const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas, Generator& gen,
                         const SigmaStepCallback& callback) {
  return multistep("dpm_solver_2m_sde", denoise, std::move(x), sigmas, callback,
                   [&gen](const Tensor& x, const Tensor& d, const Tensor* previous, double h, double h_previous,
                          double /*s*/, double s_next) {
                     const double one_minus_decay = -std::expm1(-2.0 * h);  // 1 - e^{-2h} = 1 - sigma_t^2 / sigma_s^2
                     Tensor d_used = d;
                     if (previous)  // D + (D - D_prev) / (2r)
                       d_used = add(d, scale(sub(d, *previous), 0.5 * h / h_previous));
                     const Tensor z = randn(x.shape(), gen, x.device(), x.dtype());
                     // x_{i+1} = e^{-2h} x_i + (1 - e^{-2h}) D~ + sigma_{i+1} sqrt(1 - e^{-2h}) z
                     return add(add(scale(x, std::exp(-2.0 * h)), scale(d_used, one_minus_decay)),
                                scale(z, s_next * std::sqrt(one_minus_decay)));
                   });
}

}  // namespace ddpm::diffusion
