// models/diffusion/reconstruction_guidance.h: conditional sampling of the frames that follow
// known ones with an UNCONDITIONAL video model (Ho et al. 2022, "Video Diffusion Models",
// sec. 3.1, eq. 7), used to extend clips (ddpm-sample --segments ... --reconstruction-guidance W).
//
// A clip z = [z^a, z^b]: the first K frames x^a are known (the end of the previous segment),
// the F - K after them are to be drawn. Two moves at every denoising step t:
//   replacement:  z_t^a <- q_sample(x^a, t, fresh noise)   (alpha_t x^a + sigma_t eps)
//     The network sees the known frames noised to the current level. Alone this is the
//     "replacement method", which Ho et al. show leaves z^b poorly coherent with x^a: the
//     model is never asked what x^b should be GIVEN x^a, only what the joint clip looks like.
//   reconstruction guidance (eq. 7):
//     x~^b(z_t) = x^^b(z_t) - (w_r alpha_t / 2) grad_{z_t^b} || x^a - x^^a(z_t) ||^2
//     x^ is the network's x_0 estimate of the whole clip; its known part should reproduce x^a,
//     and the gradient says how z^b must move for that, the way a conditional score
//     grad log q(x^a | z_t) would (a Gaussian approximation of it with variance
//     sigma_t^2 / (w_r alpha_t^2); Ho et al. use w_r > 1, e.g. 2).
//   alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t) of the ORIGINAL schedule at the
//   original timestep the sampler passes.
// reconstruction_guided() wraps a denoiser so that any sampler stepping with x_0 and eps
// (DDPM ancestral, DDIM) takes the guided estimate: it returns the prediction in the model's
// own parameterisation (eps, x_0 or v, plus the untouched variance channels of a learned-sigma
// output) made from x~_0 = [x^^a, x~^b] and eps~ = (z_t - alpha_t x~_0) / sigma_t. The sampler
// keeps its own z_t^a (un-replaced); that is harmless because every step it uses is elementwise
// per frame, and the caller drops the first K frames of the result (they re-draw x^a).
//
// Cost: one network forward and one backward to the input per step (about 3x a plain step).
// The gradient call turns the tape on for itself (EnableGradGuard) from a fresh leaf copy of
// z_t; parameters that require grad accumulate weight gradients as a side effect, so the
// caller freezes them (requires_grad off) first.
// Random numbers: the replacement noise comes from its own Philox generator seeded with
// `seed`, one draw of x^a's shape per network call, so the sampler's stream is untouched.
#pragma once

#include <cstdint>

#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"

namespace ddpm::diffusion {

struct ReconstructionGuidance {
  Tensor known;          // x^a [N, K, H, W, C] in [-1, 1], on the sampling device
  double weight = 2.0;   // w_r; 0 leaves replacement alone
  ModelMeanType mean_type = ModelMeanType::eps;
  bool learned_sigma = false;
  std::uint64_t seed = 0;
};

// The guided denoiser described above for clips [N, F, H, W, C] with F > K; it keeps a
// reference to `s`, which must outlive it. ValueError for a
// known tensor that is not [N, K, H, W, C] with 1 <= K < F matching x, a negative weight,
// a fractional timestep, or a zero-terminal-SNR step (sigma_t or alpha_t = 0).
DenoiseFn reconstruction_guided(const DenoiseFn& net, const DiffusionSchedule& s, const ReconstructionGuidance& g);

}  // namespace ddpm::diffusion
