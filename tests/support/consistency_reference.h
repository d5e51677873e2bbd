// tests/support/consistency_reference.h: the target of consistency distillation worked out by
// hand for one element (Song et al. 2023, "Consistency Models", Algorithm 2; the guided form
// is the Latent Consistency Model's, Luo et al. 2023, eq. 9-10), to check
// models/diffusion/consistency.h's consistency_target against. The tests compute the
// teacher's x^ and eps^ at the upper level themselves (plain or guided eps); from there the
// target is the same:
//   z_l  = sqrt(abar_l) x^ + sqrt(1 - abar_l) eps^            the eta = 0 DDIM step to level l
//   x_g  = (z_l - sqrt(1 - abar_l) eps_g(z_l, l)) / sqrt(abar_l), eps_g = ga z + gb l / 50
//                                                            (the tests' linear target network)
//   f    = c_skip(tau) z_l + c_out(tau) x_g,  tau = scale (l + 1), sigma_data = 0.5:
//          c_skip = 0.25 / (tau^2 + 0.25),  c_out = tau / sqrt(tau^2 + 0.25)
// and at the clean level the step lands on x^, where f(., clean) is the identity.
#pragma once

#include <cmath>
#include <cstdint>

#include "models/diffusion/consistency.h"

namespace ddpm::testing {

inline double consistency_target_by_hand(const diffusion::DiffusionSchedule& s, std::int64_t lower, double xhat,
                                         double eps_hat, double ga, double gb, double timestep_scale) {
  if (lower == diffusion::kCleanLevel) return xhat;  // f(., clean) = identity
  const double tl = static_cast<double>(lower);
  const double abar_l = s.alphas_cumprod[static_cast<std::size_t>(lower)];
  const double zl = std::sqrt(abar_l) * xhat + std::sqrt(1 - abar_l) * eps_hat;
  const double xg = (zl - std::sqrt(1 - abar_l) * (ga * zl + gb * tl / 50.0)) / std::sqrt(abar_l);
  const double tau = timestep_scale * (tl + 1);
  return 0.25 / (tau * tau + 0.25) * zl + tau / std::sqrt(tau * tau + 0.25) * xg;
}

}  // namespace ddpm::testing
