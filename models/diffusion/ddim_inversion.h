// models/diffusion/ddim_inversion.h: DDIM inversion (Song, Meng & Ermon 2021, "Denoising
// Diffusion Implicit Models", sec. 4.3 and 5.4): the deterministic DDIM sampler (eta = 0) is
// an Euler discretization of an ODE, so it can be run FORWARD to encode an image x_0 into a
// latent x_T that the sampler decodes back to (nearly) x_0.
//
// The ODE. With xbar = x / sqrt(abar) and sigma = sqrt((1 - abar) / abar), DDIM eq. 14 is
//   d xbar = eps_theta(x, t) d sigma,
// and the eta = 0 step from index i to i - 1 (sampler.h) is its Euler step evaluated at the
// START point x_i. Written with the x_0 estimate, a step between any two noise levels is
//   x_b = sqrt(abar_b) x_0^(x_a) + sqrt(1 - abar_b) eps^(x_a),
//   eps^ = the network's eps at (x_a, t_a), x_0^ = (x_a - sqrt(1 - abar_a) eps^) / sqrt(abar_a).
// Sampling takes b below a; inversion takes b above a:
//   x_{t_{i+1}} = sqrt(abar_{i+1}) x_0^(x_{t_i}) + sqrt(1 - abar_{i+1}) eps^(x_{t_i}).
// Inversion is Euler run the other way, with the network evaluated at the LOWER end of each
// step, where sampling evaluates it at the upper end; both are consistent discretizations of
// the same ODE, so decode(invert(x_0)) -> x_0 as the number of steps K grows (DDIM sec. 5.4:
// the reconstruction error falls with K), each direction with an O(1/K) error.
//
// States. The respaced process (respace.h) keeps t_0 < ... < t_{K-1} = T - 1; the sampler's
// states are x_{t_{K-1}}, ..., x_{t_0} and the clean x_0 (abar = 1). Inversion walks the same
// states upward: K steps, clean -> t_0 -> t_1 -> ... -> t_{K-1}, so that decoding with the
// same K steps mirrors it exactly step for step. The first step starts from the clean image,
// which has no timestep of its own: the network is asked at t_0, the lowest level of the
// process, with x_0^ = x_0 itself. On the full grid t_0 = 0 (abar_0 = 1 - 1e-4 for the
// linear schedule at T = 1000); a coarse "ddimK" grid has t_0 = T/K - 1, noisier, one more
// part of the error that shrinks with K.
//
// No clipping. Clamping x_0^ to [-1, 1] (the sampler's default) is not invertible: the
// inversion and the decoding here both use the network's x_0^ and eps^ unclipped, whatever
// config.clip_x0 says (the clip would break the mirror at the noisy steps, where x_0^
// routinely leaves [-1, 1]). Learned-sigma models are fine: only the mean part is used.
// Classifier-free guidance (config.guidance_scale != 1) is applied as in sample(); inversion
// under strong guidance is known to reconstruct poorly (the guided field is not the
// score of one distribution), so the apps use it for decoding only.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/device.h"
#include "engine/tensor.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

// Encodes images x0 [N, ...] in [-1, 1] (converted to config.dtype on `device`) into the
// latents x_{t_{K-1}} [N, ...] of the process sampling_process(base, config.respacing): K
// network calls. config.kind must be ddim (eta is ignored: the ODE has no noise). The callback
// sees each step with index = the state reached (0 .. K-1, counting UP) and x = that state.
Tensor ddim_invert(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& x0,
                   const std::vector<std::int64_t>& labels, const SamplerConfig& config,
                   Device device = Device::cpu(), const StepCallback& callback = {});

// Decodes latents x_T [N, ...] with the deterministic DDIM sampler (eta 0, unclipped: see
// above) from index K - 1 down to 0: K network calls; the inverse of ddim_invert up to the
// discretization error. Returns [N, ...] on `device` in config.dtype.
Tensor ddim_decode(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& xT,
                   const std::vector<std::int64_t>& labels, const SamplerConfig& config,
                   Device device = Device::cpu(), const StepCallback& callback = {});

// Reconstruction error of y against x (same shape, values in [-1, 1]): mean squared error and
// PSNR = 10 log10(2^2 / MSE) dB (peak-to-peak range 2 of [-1, 1]; the same number as the
// 0..255 PSNR of the unquantized images). PSNR is +inf for MSE = 0.
struct ReconstructionError {
  double mse = 0.0;
  double psnr = 0.0;
};
ReconstructionError reconstruction_error(const Tensor& x, const Tensor& y);

}  // namespace ddpm::diffusion
