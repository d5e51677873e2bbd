// models/diffusion/inpaint.h: RePaint inpainting (Lugmayr et al. 2022, "RePaint: Inpainting
// using Denoising Diffusion Probabilistic Models") with any trained DDPM, no retraining.
//
// Given an image x0 and a mask m (m = 1 where the pixel is KNOWN and kept, 0 where it is to
// be generated), every reverse step builds x_{t-1} from two halves:
//   known:    x_{t-1}^known   = sqrt(abar_{t-1}) x0 + sqrt(1 - abar_{t-1}) z     (q(x_{t-1} | x0),
//             DDPM eq. 4; RePaint eq. 8), z ~ N(0, I); abar_{t-1} = 1 at the last step,
//             so there the known half is x0 itself, exactly
//   unknown:  x_{t-1}^unknown = one DDPM ancestral step of the model from x_t (sampler.h
//             ddpm_ancestral_step: posterior mean at the clipped x_0^ plus sigma_t z; RePaint
//             eq. 9)
//   merged:   x_{t-1} = m * x_{t-1}^known + (1 - m) * x_{t-1}^unknown              (RePaint eq. 10)
// The model sees the merged x_t, so the noised known region conditions the unknown one.
//
// Resampling (RePaint sec. 4.2). Replacing the known region does not tell the unknown one
// what the known one will become: the model only "sees" it at the next step, often too late,
// and the result is locally plausible but does not fit the context. So after some reverse
// steps the merged x_{t-1} is noised back up with the forward process, one step at a time,
//   x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z                              (DDPM eq. 2)
// and the reverse steps are redone: each pass harmonizes the generated region with the
// known one a little more. The time schedule (repaint_schedule below): walk down from
// state K; every time the walk arrives at a state s that is a multiple of jump_length
// (s >= jump_length, s + jump_length <= K), it goes back up jump_length states and down
// again, jump_n_sample - 1 times. jump_length = 1 is the paper's Algorithm 1 (resample
// every step but the last, U = jump_n_sample); the paper's images use T = 250,
// jump_length = 10, jump_n_sample = 10. jump_n_sample = 1 is plain replacement (no jumps).
//
// States and indices. The process (respaced or not) has K steps. State s in [0, K] is x_s:
// s = K is x_T ~ N(0, I), s = 0 is the result. The reverse move s -> s-1 is the DDPM step
// at schedule index i = s - 1 (index 0 is the paper's t = 1); the known half uses
// abar_prev[i]. The forward move s -> s+1 noises with beta = betas[s] of the same schedule.
//
// Respacing (--sampling-steps K): RePaint runs on the respaced process (respace.h), whose
// betas are beta'_i = 1 - abar(t_i) / abar(t_{i-1}). A forward move s -> s+1 uses beta'_s:
// it is the whole stretch of original steps t_{s-1}+1 .. t_s collapsed into one Gaussian,
// exactly, since the product of those (1 - beta_t) is abar(t_s)/abar(t_{s-1}) = 1 - beta'_s.
// So the re-noised x has the marginal q(x_{s+1} | x0) of the respaced process, as it should.
// The network is always called with the original timestep t_i.
//
// Random numbers (Philox generator, so CPU and CUDA agree): x_T first; then, in move order,
// a reverse move draws the known half's z (not at the last step) and then the ancestral
// step's z (not at the last step); a forward move draws one z. Each draw is one tensor of
// the sample's shape.
//
// Cost: (number of reverse moves) network calls, K + (jump_n_sample - 1) * jump_length *
// (number of jump states); about 10x plain sampling for 10 / 10.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

struct RepaintConfig {
  std::int64_t jump_length = 10;   // states gone back up per jump (>= 1)
  std::int64_t jump_n_sample = 10;  // passes over each jumped stretch (>= 1; 1 = no jumps)
};

// One move of the time schedule: from state `from` to state `to` = from - 1 (a reverse
// step: a network call) or from + 1 (a forward re-noising step).
struct TimeMove {
  std::int64_t from;
  std::int64_t to;
  bool reverse() const { return to < from; }
  bool operator==(const TimeMove& o) const { return from == o.from && to == o.to; }
};

// The RePaint time schedule for K steps (see above): starts at state K, ends at state 0,
// every move +-1. Its length is K + 2 (jump_n_sample - 1) jump_length J, J = the number of
// jump states (max(0, K / jump_length - 1)). ValueError for K < 1, jump_length < 1 or
// jump_n_sample < 1.
std::vector<TimeMove> repaint_schedule(std::int64_t K, std::int64_t jump_length, std::int64_t jump_n_sample);

// Number of network calls of the schedule (its reverse moves).
std::int64_t repaint_network_calls(const std::vector<TimeMove>& moves);

// Inpaints n samples. known: [1 or n, ...] the image in [-1, 1] (any dtype or device: it is
// converted to config.dtype on `device`); mask: same rank, each axis equal to the sample's
// or 1 (e.g. [1, H, W, 1] for one per-pixel mask), values 1 (known) or 0 (generate).
// config: a DDPM config (kind ddpm; respacing, variance, clipping, mean type, guidance and
// labels as in sample()). Returns [n, ...] on `device` in config.dtype.
// The callback sees each state's LAST visit only (index = s - 1 counting down K-1 .. 0, as
// in sample()), i.e. the final reverse trajectory; x is the merged sample.
Tensor inpaint(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& known, const Tensor& mask,
               std::int64_t n, const std::vector<std::int64_t>& labels, const SamplerConfig& config,
               const RepaintConfig& repaint, Generator& gen, Device device = Device::cpu(),
               const StepCallback& callback = {});

}  // namespace ddpm::diffusion
