// models/diffusion/sigma_edit.h: the three edits of ddpm-edit (inversion, SDEdit, latent
// interpolation) in EDM's sigma space, for networks sampled by karras.h's Heun loop: an
// EDM-trained network (edm.h) or any other D(x; sigma). The discrete-time versions for DDPM
// networks are ddim_inversion.h and sdedit.h; this file is their continuous counterpart.
//
// The ODE (EDM eq. 4 with s(t) = 1, sigma(t) = t; karras.h):
//   dx/dsigma = (x - D(x; sigma)) / sigma,   x = y + sigma n,
// on the levels sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min > sigma_N = 0
// (karras_sigmas, EDM eq. 5). Sampling integrates it DOWN from x(sigma_max); the flow is a
// bijection, so the same ODE integrated UP maps an image to the x(sigma_max) that decodes
// back to it (the analogue of DDIM inversion, DDIM sec. 4.3 and 5.4).
//
// Inversion (sigma_ode_invert). The states mirror the sampler's, visited in reverse:
//   clean y -> sigma_{N-1} -> sigma_{N-2} -> ... -> sigma_0.
//   First step, 0 -> sigma_min: the sampler's last step is Euler to sigma = 0,
//     y = x - sigma_min (x - D(x; sigma_min)) / sigma_min = D(x; sigma_min);
//   its mirror evaluates the slope at the clean image (no level of its own: it is asked at
//   sigma_min, as ddim_invert asks the DDPM network at t_0):
//     x(sigma_min) = y + sigma_min (y - D(y; sigma_min)) / sigma_min = 2 y - D(y; sigma_min).
//   Then for i = N-1 .. 1, from sigma_i up to sigma_{i-1} (h = sigma_{i-1} - sigma_i > 0),
//   Heun (EDM algorithm 1 with the step reversed):
//     d  = (x - D(x; sigma_i)) / sigma_i,         x' = x + h d
//     d' = (x' - D(x'; sigma_{i-1})) / sigma_{i-1}, x  = x + h (d + d') / 2
//   (Euler: x = x'). Cost: 2N - 1 evaluations for Heun, as the sampler's; N for Euler.
// Heun's trapezoid is not exactly self-inverse, but each direction errs by O(h^3) per step,
// so decode(invert(y)) -> y as N grows (second order; Euler first order). For Gaussian data
// the first / last step pair is exact to O((sigma_min / sigma_data)^4): with
// c = sigma_data^2 / (sigma_data^2 + sigma_min^2), D is affine with slope c, and the pair
// maps y - mu to c (2 - c)(y - mu) = (1 - (1 - c)^2)(y - mu).
//
// Decoding (sigma_ode_decode): karras_solve_from (karras.h) from the given x(sigma_max) on the
// same levels, without churn (deterministic, so it draws nothing).
//
// SDEdit in sigma (sigma_sdedit; Meng et al. 2022, algorithm 1 with the VE-SDE, which is what
// x = y + sigma n is). The strength s in (0, 1] picks how many of the N levels are run:
//   n_0 = ceil(s N) steps,  i_0 = N - n_0,  sigma_0' = sigma_{i_0},
//   x = guide + sigma_{i_0} z,  z ~ N(0, I),   then the solver from level i_0 down to 0.
// Choice: an index into the level list rather than a fresh list from sigma = s sigma_max.
// It keeps the step rule and the levels of plain sampling (the strength only drops the first
// N - n_0 of them, like diffusers' img2img, which runs round(s N) of its N steps), s = 1 is
// exactly plain sampling's levels, and the strength is "the fraction of the sampler's work
// redone". With rho = 7 the levels crowd near sigma_min, so s = 0.5 already starts at a
// modest sigma (EDM's 18 levels on [0.002, 80]: level i_0 = 9 is 1.92); small strengths keep
// the guide's layout, s near 1 forgets it. Every s > 0 runs at least one step.
// s = 1 versus plain sampling: x = guide + sigma_max z against sigma_max z with the same z;
// the guide is then carried by the flow, which shrinks x - mu by about
// sigma_data / sigma_max (80 for EDM: under 1% of the guide leaks into the result).
//
// Interpolation: slerp (interpolation.h) between two x(sigma_max), each from sigma_ode_invert
// or sigma_max z for a seed. Slerp is homogeneous (slerp(c a, c b; f) = c slerp(a, b; f)),
// so the common scale sigma_max needs no undoing: the norm it keeps is that of the ends. An
// inverted end has |x| about sqrt(D (sigma_max^2 + sigma_data^2)) and a seed end
// sigma_max sqrt(D), the same to a factor 1 + sigma_data^2 / (2 sigma_max^2) (4e-5 for EDM),
// so inverted and seeded ends can be mixed and every frame stays in the typical set of
// x(sigma_max), where the decoder expects it.
//
// Guidance, labels and dtype are the denoiser's and config's business (edm.h edm_denoise);
// config.clip_x0 is ignored for inversion and decoding (a clamp is not invertible; the
// caller builds D unclipped). Everything runs under NoGradGuard.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

// x(sigma_max) of images y [N, ...] (converted to config.dtype on `device`), levels as from
// karras_sigmas (N + 1 entries ending in 0). solver: heun or euler (ValueError otherwise).
// The callback sees each step with index = the level reached (N-1 .. 0, counting DOWN to
// sigma_max = level 0), sigma = that level, x = the state there, pred_x0 = the first D of the step.
Tensor sigma_ode_invert(const SigmaDenoiser& denoiser, const Tensor& y, const std::vector<double>& levels,
                        const SamplerConfig& config, Device device = Device::cpu(),
                        KarrasSolver solver = KarrasSolver::heun, const StepCallback& callback = {});

// Decodes x(sigma_max) [N, ...] down the same levels (no churn, no draws): [N, ...] on
// `device` in config.dtype.
Tensor sigma_ode_decode(const SigmaDenoiser& denoiser, const Tensor& x_max, const std::vector<double>& levels,
                        const SamplerConfig& config, Device device = Device::cpu(),
                        KarrasSolver solver = KarrasSolver::heun, const StepCallback& callback = {});

// i_0 = N - ceil(s N) for n_steps = N levels (see above). ValueError for s outside (0, 1].
std::int64_t sigma_sdedit_start_index(std::int64_t n_steps, double strength);

// SDEdit of guide images [N, ...] in [-1, 1] on the levels (N + 1, ending in 0): one draw z
// of the guide's shape from gen, x = guide + sigma_{i_0} z, then karras_solve_from on
// levels[i_0 ..] without churn (heun or euler: ValueError otherwise), drawing nothing more.
Tensor sigma_sdedit(const SigmaDenoiser& denoiser, const Tensor& guide, double strength,
                    const std::vector<double>& levels, const SamplerConfig& config, Generator& gen,
                    Device device = Device::cpu(), KarrasSolver solver = KarrasSolver::heun,
                    const StepCallback& callback = {});

}  // namespace ddpm::diffusion
