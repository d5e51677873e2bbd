// models/diffusion/dpm_solver.h: DPM-Solver++(2M), the second-order multistep solver of the
// diffusion probability-flow ODE in its data-prediction form (Lu, Zhou, Bao, Chen, Li, Zhu
// 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models",
// algorithm 2). One network evaluation per step, second-order accurate: at 15-25 steps it
// matches what Heun needs about twice the evaluations for.
//
// Variables. Like karras.h, work in the variance-exploding variable x = x_0 + sigma eps with
// the denoiser D(x; sigma) (the x_0 estimate). Write lambda = -log sigma (for a VP model this
// is log(alpha / sigma_vp), the log signal-to-noise ratio over 2, DPM-Solver's lambda). The
// probability-flow ODE dx/dsigma = (x - D) / sigma then has the exact solution from level
// sigma_i to sigma_{i+1} (DPM-Solver++ eq. 9 in these variables: "variation of constants")
//   x_{i+1} = (sigma_{i+1} / sigma_i) x_i + sigma_{i+1} * integral over lambda from lambda_i
//             to lambda_{i+1} of e^lambda D(x_lambda; sigma(lambda)) dlambda.
// Approximating D by a constant D_i over the step gives, with h = lambda_{i+1} - lambda_i,
//   x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D_i,                    (1st order)
// which is DDIM with eta = 0 (x' = D + sigma' (x - D) / sigma, the same line). Approximating
// D linearly in lambda through the two latest evaluations gives the 2M step
//   r   = h_{i-1} / h_i                    (h_{i-1} = lambda_i - lambda_{i-1})
//   D~  = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}
//   x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D~.                     (2nd order)
// The first step has no previous evaluation and is first order. A last level sigma_N = 0 has
// lambda = infinity: sigma_{i+1} / sigma_i = 0 and e^{-h} = 0, so the step returns D_i
// itself, taken first order ("lower order final": the extrapolation over an infinite h is
// meaningless).
//
// Errors are O(h^2) per unit of lambda: halving h quarters the global error (the test checks
// this against the exact solution for Gaussian data), where Euler/DDIM only halves it.
//
// DPM-Solver++(2M) SDE: the stochastic counterpart of the step above as diffusers implements
// it (DPMSolverMultistepScheduler with algorithm_type = "sde-dpmsolver++", solver_type =
// "midpoint"; the same update as k-diffusion's sample_dpmpp_2m_sde with eta = 1). The
// variation-of-constants argument of DPM-Solver++ applied to the reverse SDE (Song et al.
// 2021 eq. 6) instead of the ODE: in the VP variables the linear
// part of the SDE decays twice as fast in lambda as the ODE's, and the step gains Gaussian
// noise of the variance the linear part removed. The VP step
//   x_vp,t = (sigma_vp,t / sigma_vp,s) e^{-h} x_vp,s + alpha_t (1 - e^{-2h}) D~
//            + sigma_vp,t sqrt(1 - e^{-2h}) z
// divided by alpha_t (sigma_vp / alpha = sigma, as in unipc.h every alpha cancels) is, with
// sigma_t / sigma_s = e^{-h},
//   x_t = e^{-2h} x_s + (1 - e^{-2h}) D~ + sigma_t sqrt(1 - e^{-2h}) z,   z ~ N(0, I),
//   D~  = D_s + (D_s - D_{s-1}) / (2 r)           (r = h_{previous} / h; the "midpoint" form)
// e^{-2h} = sigma_t^2 / sigma_s^2: with D~ = D_s this is exactly euler-ancestral (karras.h),
// the DDPM posterior given x_0 = D_s: mean D + (sigma_t^2/sigma_s^2)(x - D), variance
// sigma_t^2 (sigma_s^2 - sigma_t^2) / sigma_s^2. So the first step (no history) is the
// ancestral step, and 2M SDE is that step with the second-order extrapolated D~. Onto
// sigma = 0 the step is first order and noiseless: x = D_{N-1} (diffusers' "zero" final
// sigma forces lower_order_final). The extrapolation weight 1/(2r) is the ODE step's, now on
// the (1 - e^{-2h}) factor (diffusers' "midpoint" choice).
//
// Random numbers: one z of x's shape, dtype and device per step onto sigma_{i+1} > 0, drawn
// after D_i is evaluated, in step order; nothing on the step onto 0. Same (seed, offset):
// same samples.
#pragma once

#include <functional>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/karras.h"

namespace ddpm::diffusion {

// The denoiser is karras.h's SigmaDenoiser: D(x; sigma) (with the timestep its network saw)
// at a level sigma > 0, x in the variance-exploding scaling.
// Called after each step i with the new x (at level sigmas[i + 1]) and the D_i used.
using SigmaStepCallback = std::function<void(std::size_t i, const Tensor& x, const SigmaDenoised& denoised)>;

// Integrates from x at sigmas[0] through every level of `sigmas` (strictly decreasing,
// positive except possibly a final 0) and returns x at the last level. N levels cost N - 1
// evaluations of D (N - 1 steps). Throws ValueError for fewer than two levels or a
// non-decreasing, negative or non-finite level.
Tensor dpm_solver_2m(const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas,
                     const SigmaStepCallback& callback = {});

// DPM-Solver++(2M) SDE on the same levels (same checks), noise from gen as above; N levels
// cost N - 1 evaluations. Stochastic: the result is a sample, not the ODE's end point.
Tensor dpm_solver_2m_sde(const SigmaDenoiser& denoise, Tensor x, const std::vector<double>& sigmas, Generator& gen,
                         const SigmaStepCallback& callback = {});

}  // namespace ddpm::diffusion
