// models/diffusion/plms.h: the pseudo linear multistep sampler PLMS (Liu, Ren, Lin, Zhao 2022,
// "Pseudo Numerical Methods for Diffusion Models on Manifolds", sec. 3-4; diffusers'
// PNDMScheduler with skip_prk_steps, the sampler Stable Diffusion v1 shipped with).
//
// DDIM (eta = 0) moves from x_t to x_{t'} with the "transfer" map
//   phi(x_t, e, t, t') = sqrt(abar_t') x_0(e) + sqrt(1 - abar_t') e,
//   x_0(e) = (x_t - sqrt(1 - abar_t) e) / sqrt(abar_t),
// given a noise estimate e. With e = eps_theta(x_t, t) it is a first-order step of the
// probability-flow ODE. PNDM's observation: keep phi (it moves along the data manifold the
// network knows) but feed it a BETTER e, one that stands for the average slope over the step.
// A linear multistep (Adams-Bashforth) combination of the last four evaluations, taken at
// equally spaced steps, is such an e, at one network call per step:
//   e' = (55 e_0 - 59 e_1 + 37 e_2 - 9 e_3) / 24        (e_0 newest; fourth order)
// Until four evaluations exist, the lower-order Adams-Bashforth formulas ramp up:
//   e' = e_0,  (3 e_0 - e_1) / 2,  (23 e_0 - 16 e_1 + 5 e_2) / 12.
// (diffusers spends one extra network call on its first step, averaging e_0 with an
// evaluation at the Euler end point; the ramp here keeps K steps at exactly K calls.)
//
// The grid is the respaced DDIM process (sampler.h, respace.h: "ddimN" is the exact stride
// T/N, so the steps are equally spaced as the formulas assume). Clipping follows DDIM: when
// config.clip_x0, each step's x_0(e') goes through x0_threshold.h (static clamp or Imagen's
// dynamic thresholding), the noise recomputed from it (ddim_step). Guidance applies to every
// evaluation (network_output). PLMS is deterministic: nothing is drawn after x_T.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

// The Adams-Bashforth combination of the newest-first noise estimates `history` (1 to 4 of
// them; order = history.size()), as above. ValueError for an empty history.
Tensor adams_bashforth_eps(const std::vector<Tensor>& history);

// Draws shape[0] samples with PLMS on the process sampling_process(base, config.respacing):
// x_T from gen, then K network calls. config.kind must be ddim and config.eta 0 (ValueError
// otherwise); labels, guidance scale, clipping and dtype as in sample(). The callback sees
// every step as sample()'s does.
Tensor plms_sample(const DiffusionSchedule& base, const DenoiseFn& net, const Shape& shape,
                   const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen,
                   Device device = Device::cpu(), const StepCallback& callback = {});

}  // namespace ddpm::diffusion
