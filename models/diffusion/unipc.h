// models/diffusion/unipc.h: UniPC, the unified predictor-corrector of Zhao, Bai, Rao, Zhou,
// Lu 2023 ("UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
// Models", sec. 3: the corrector UniC, the predictor UniP and the choice of B(h); the
// data-prediction algorithms of its appendix), in the form of diffusers'
// UniPCMultistepScheduler with predict_x0 = True, solver_type = "bh2", lower_order_final =
// True and no disabled corrector steps. One network evaluation per step (N levels, N calls).
//
// Variables. As in dpm_solver.h (read it first): x = x_0 + sigma eps is the variance-
// exploding variable, D(x; sigma) the data prediction, lambda = -log sigma, and the probability-
// flow ODE dx/dsigma = (x - D) / sigma has the exact step ("variation of constants", DPM-
// Solver++ eq. 9 in these variables) from level s to level t < s, h = lambda_t - lambda_s > 0:
//   x_t = (sigma_t / sigma_s) x_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda D dlambda.
// UniPC is written for the VP variables x_vp = alpha x with alpha = 1 / sqrt(1 + sigma^2), the
// VP noise level sigma_vp = alpha sigma and lambda_vp = log(alpha / sigma_vp) = -log sigma:
// the same lambda. Its data-prediction step reads
//   x_vp,t = (sigma_vp,t / sigma_vp,s) x_vp,s - alpha_t (e^{-h} - 1) D_s - alpha_t B(h) sum_k rho_k D1_k;
// dividing by alpha_t, sigma_vp,t / sigma_vp,s * alpha_s / alpha_t = sigma_t / sigma_s, so every
// alpha cancels and the step in x is the same formula without alpha. Hence the solver below
// sees only sigma, like dpm_solver.h, and is exact for VP and EDM models alike.
//
// The predictor UniP-p (order p). Newest evaluation D_s = D(x_s; sigma_s) and the p - 1 before
// it, D_{s-k} at lambda_{s-k} (k = 1..p-1). With
//   r_k  = (lambda_{s-k} - lambda_s) / h            (negative: the history lies behind)
//   D1_k = (D_{s-k} - D_s) / r_k                    (~ h dD/dlambda, the divided difference)
//   x_t  = (sigma_t / sigma_s) x_s + (1 - e^{-h}) (D_s + sum_{k=1}^{p-1} rho_k D1_k)      (P)
// (UniPC's B(h) = e^{-h} - 1 for "bh2", so -alpha_t B(h) = alpha_t (1 - e^{-h}) and the
// correction shares the factor of the first-order term.) The rho_k solve, with r_p = 1,
//   sum_k r_k^{i-1} rho_k = b_i,   b_i = i! phi_{i+1}(-h) / phi_1(-h)          (i = 1..p-1)
// where phi_1(z) = (e^z - 1)/z and phi_{k+1}(z) = (phi_k(z) - 1/k!)/z = sum_j z^j/(j+k)!:
// matching the Taylor expansion of D in lambda order by order (UniPC sec. 3, B(h) = e^h - 1 in
// its sign convention; hh = -h is the paper's h for data prediction). For p = 2 the solved
// rho_1 = phi_2/phi_1 = 1/2 + O(h); the paper's reference code and diffusers fix rho_1 = 1/2,
// which keeps order 2, and so does this file. p = 1 is DDIM / DPM-Solver++(1).
//
// The corrector UniC-p. After the predictor produced x~_t, the network is evaluated there,
// D_t = D(x~_t; sigma_t): the evaluation the NEXT step needs anyway, so the correction is
// free. It redoes the step from x_s with that extra point (r = 1) in the sum:
//   x_t = (sigma_t / sigma_s) x_s + (1 - e^{-h}) (D_s + sum_{k=1}^{p-1} rho_k D1_k
//                                                 + rho_p (D_t - D_s))                   (C)
// rho_1..rho_p solving the full p x p system (rows i = 1..p, r_p = 1) above; for p = 1 the
// solved rho_1 = b_1 is again replaced by 1/2 (trapezoid in lambda). UniC-p adds one order:
// UniP-p + UniC-p is order p + 1 (UniPC theorem 3.1). The corrected x_t replaces x~_t; D_t
// (evaluated at x~_t, not at the corrected point) becomes the next step's D_s. p in (C) is
// the order the predictor of that step used.
//
// Order schedule (diffusers' warm-up and lower_order_final): step i = 0..N-1 of N uses
// p_i = min(order, i + 1, N - i): the history builds up over the first steps and the last
// steps step down, so the step onto the final level is first order. Onto sigma_N = 0 (lambda
// = infinity) the first-order (P) is exactly x = D_{N-1}. The corrector runs at every step
// i >= 1 before the predictor, never after the last step (no evaluation exists there):
// N steps cost N evaluations.
//
// Numerics. phi_{k}(-h) by the series for |h| < 1 (the recurrence loses digits to
// cancellation at small h) and by the recurrence above otherwise. Coefficients in double.
#pragma once

#include <vector>

#include "engine/tensor.h"
#include "models/diffusion/dpm_solver.h"
#include "models/diffusion/karras.h"

namespace ddpm::diffusion {

// phi_k(z) for k >= 1 as defined above (phi_0 = e^z).
double exponential_phi(int k, double z);

// Integrates from x at sigmas[0] through every level (strictly decreasing, positive except
// possibly a final 0) with UniPC of the given order (1, 2 or 3) and returns x at the last
// level. N + 1 levels cost N evaluations of D. The callback sees each step i with the
// predictor's x~_{i+1} (the point the next evaluation is made at; the final sample at the last
// step) and the D_i of level i. ValueError for a bad level list (as dpm_solver_2m) or order.
Tensor unipc_solve(const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas, int order = 2,
                   const SigmaStepCallback& callback = {});

}  // namespace ddpm::diffusion
