// models/diffusion/classifier_guidance.h: classifier guidance (Dhariwal & Nichol 2021,
// "Diffusion Models Beat GANs", sec. 4.1-4.2, Algorithms 1 and 2).
//
// A classifier p_phi(y | x_t, t) trained on noisy images (models/unet/encoder.h) steers the
// sampler towards class y with the gradient of its log-probability at the current x_t:
//   g = grad_{x_t} log p_phi(y | x_t, t) = grad_{x_t} log softmax(f(x_t, t))[y]
// The classifier is always called with the ORIGINAL timestep t (respaced samplers map their
// index through timestep_map first), as it was trained.
//
// How the samplers use g, with scale s (sampler.h runs the step):
//   DDPM ancestral (Algorithm 1): the step's Gaussian N(mu, Sigma) becomes
//       N(mu + s Sigma g, Sigma)
//     Sigma is the variance the step uses: beta~_t (fixed small, 0 at t = 0: the last step
//     is not shifted), beta_t (fixed large) or the learned exp(log Sigma) (improved DDPM eq. 15).
//   DDIM (Algorithm 2, eq. 14): the score of p(x_t | y) is -eps / sqrt(1 - abar) + s g, so
//       eps' = eps - sqrt(1 - abar_t) s g
//     then x_0^ = (x_t - sqrt(1 - abar) eps') / sqrt(abar), clamped to [-1, 1] when the
//     sampler clips, eps^ recomputed from the clamped x_0^ (so both agree), and the usual
//     DDIM update from (x_0^, eps^).
//   Heun (karras.h): not implemented; sample() refuses it with a ValueError.
// It composes with classifier-free guidance: eps (or the mean) is first the CFG
// combination pred_u + w (pred_c - pred_u), then shifted as above.
// The guidance interval (guidance.h, SamplerConfig::guidance_sigma_lo/hi) limits both: the
// shift is made only at steps whose sigma_t = sqrt((1 - abar_t) / abar_t) lies inside it,
// and the classifier is not called elsewhere (guidance.h classifier_guidance_applies).
//
// Gradients: the samplers run without a tape (NoGradGuard); the gradient call below turns
// the tape on for itself (EnableGradGuard, engine/autograd.h), builds it over the classifier
// from a fresh leaf copy of x_t and runs backward, so it works under any caller's guard.
// Parameters of the classifier that require grad (e.g. while it is still in a training slab)
// get gradients accumulated as a side effect, which costs a weight-gradient pass per step:
// ddpm-sample freezes them (requires_grad off) when it loads the classifier.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace ddpm::diffusion {

// The classifier: x_t [N, ...] and N original timesteps -> logits [N, K].
using ClassifierFn = std::function<Tensor(const Tensor& x, const std::vector<double>& t)>;

struct ClassifierGuidance {
  ClassifierFn classifier;  // empty: no guidance
  double scale = 1.0;       // s; 0 turns guidance off (the sampler then never calls the classifier)
  // The target class y of every sample; empty: the sampler's labels (those of a
  // class-conditional model). An unconditional model needs them here.
  std::vector<std::int64_t> labels;

  bool active() const { return static_cast<bool>(classifier) && scale != 0.0; }
};

// The target classes for a batch of n samples: guidance.labels, or else sampler_labels.
// ValueError when there are not exactly n of them.
std::vector<std::int64_t> guidance_labels(const ClassifierGuidance& guidance,
                                          const std::vector<std::int64_t>& sampler_labels, std::int64_t n);

// log p(y_i | x_i, t) for every sample: log softmax(logits)[i, y_i], [N]. Recorded on the tape.
// ValueError when a label is outside [0, K).
Tensor selected_log_probs(const Tensor& logits, const std::vector<std::int64_t>& labels);

// g = grad_x sum_i log p(y_i | x_i, t) (the samples are independent, so row i of g is the
// gradient of sample i's own log-probability), same shape, dtype and device as x. Needs
// grad mode on (ValueError otherwise); x itself is not modified or put on a tape.
Tensor classifier_log_prob_gradient(const ClassifierFn& classifier, const Tensor& x, double t,
                                    const std::vector<std::int64_t>& labels);

}  // namespace ddpm::diffusion
