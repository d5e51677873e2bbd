// models/diffusion/langevin.h: the Langevin corrector of predictor-corrector sampling
// (Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole 2021, "Score-based generative modeling
// through SDEs", sec. 4.2, algorithms 4 and 5).
//
// A sampler's step (the PREDICTOR: DDPM's ancestral step or DDIM's) moves x from level i to
// level i - 1 and makes a small error doing so: x_{i-1} is not quite distributed as the
// marginal q_{t_{i-1}}. The CORRECTOR runs a few steps of Langevin dynamics at a FIXED
// level, which leave q_t invariant and so pull the sample back towards it. Langevin dynamics
// for a density p with score s(x) = grad_x log p(x):
//   x <- x + eps s(x) + sqrt(2 eps) z,   z ~ N(0, I),
// has p as its stationary distribution as eps -> 0 (it discretises the SDE
// dx = s(x) dt + sqrt(2) dW, whose stationary density is p).
//
// The score of q_t comes from the noise prediction (Tweedie / denoising score matching):
// x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, so
//   s(x_t, t) = grad log q_t(x_t) = -E[eps | x_t] / sqrt(1 - abar_t) = -eps^(x_t, t) / sqrt(1 - abar_t).
// (eps^ from the network's eps, x_0 or v output, guided when classifier-free guidance is on.)
//
// Step size (Song et al. algorithm 5, VP SDE): a target signal-to-noise ratio r sets eps
// so that the deterministic move is r times the random one:
//   eps = 2 alpha_i (r ||z|| / ||s||)^2,   alpha_i = 1 - beta_i of the process stepped through,
// since ||eps s|| / ||sqrt(2 eps) z|| = sqrt(eps / 2) ||s|| / ||z|| = sqrt(alpha_i) r.
// The norms are taken PER SAMPLE here (over one image's elements). Song et al.'s code
// averages the norms over the batch; per-sample norms make each sample's path independent
// of the others in its batch, so the same seed gives the same samples at any batch size.
//
// Cost: one network evaluation per corrector step, so K levels with M corrector steps take
// K (1 + M) evaluations. Each level is corrected BEFORE its predictor step, as in Song et
// al.'s PC sampler (corrector at t_i, then predictor from t_i to t_{i-1}).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

// eps^(x, t_i) / sqrt(1 - abar_i), negated: the score of q_{t_i} at x (see the top), from
// one (guided) network evaluation at respaced index i of `process`.
Tensor score_estimate(const RespacedSchedule& process, const DenoiseFn& net, const SamplerConfig& config,
                      const Tensor& x, std::int64_t i, const std::vector<std::int64_t>& labels);

// The per-sample step sizes eps = 2 alpha (snr ||z|| / ||score||)^2 as an {N, 1, ..., 1}
// tensor (norms over each sample's elements). A zero score gives an infinite step; callers
// never meet it with a trained network, and the result is then non-finite, not hidden.
Tensor langevin_step_size(const Tensor& score, const Tensor& z, double snr, double alpha);

// config.corrector_steps Langevin steps at respaced index i (the level x is at), each one
// network evaluation and one draw of z ~ N(0, I) (x's shape) from gen. Returns x unchanged,
// drawing nothing, when corrector_steps is 0. ValueError for a negative count or snr <= 0.
// extra_score, when given, is added to the score: classifier guidance passes s grad_x log
// p(y | x, t), so the chain targets q_t(x) p(y | x)^s (ADM's guided distribution).
using ScoreTerm = std::function<Tensor(const Tensor& x)>;
Tensor langevin_correct(const RespacedSchedule& process, const DenoiseFn& net, const SamplerConfig& config,
                        const Tensor& x, std::int64_t i, const std::vector<std::int64_t>& labels, Generator& gen,
                        const ScoreTerm& extra_score = {});

// The checks of the corrector's settings (also made by langevin_correct): ValueError naming
// the flag.
void check_corrector(const SamplerConfig& config);

}  // namespace ddpm::diffusion
