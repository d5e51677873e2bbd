// models/toy/noisy_mlp_classifier.h: the noisy classifier p(y | x_t, t) of ddpm-toy's
// classifier guidance (Dhariwal & Nichol 2021 sec. 4; models/diffusion/classifier_guidance.h),
// the 2-D stand-in for the UNet encoder classifier of ddpm-classifier.
//
// The same body as the toy denoiser (mlp_denoiser.h), with K logits as its output:
//   x [N, 2], t [N] (original timesteps)
//   temb   = W_t2 silu(W_t1 sin_features(t) + b_t1) + b_t2     [N, H]  (mlp_denoiser.h's features)
//   h_0    = W_in x + b_in                                      [N, H]
//   h_l    = silu(W_l (h_{l-1} + temb) + b_l),  l = 1..layers   [N, H]
//   logits = W_out h_L + b_out                                  [N, K]
// It is trained on x_t = q_sample(x_0, t, eps) with t ~ U{0..T-1} of the diffusion it will
// guide (the classifier must know what x_t looks like at every noise level: a classifier of
// clean points would give useless gradients on noise), by cross-entropy against the data's
// labels. Initialization as the denoiser's: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from the
// Philox generator, the output layer zero (uniform p(y | x_t) at the start).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/classifier_guidance.h"

namespace ddpm::toy {

struct NoisyMlpClassifierConfig {
  std::int64_t hidden = 64;
  int layers = 2;
  std::int64_t time_dim = 32;  // even
  double max_period = 10000.0;
  int num_classes = 2;         // K >= 2
};

class NoisyMlpClassifier {
 public:
  NoisyMlpClassifier(const NoisyMlpClassifierConfig& config, Generator& gen);

  // Named parameters ("time.0.weight", ..., "output.bias") for a ParameterSlab or a file.
  NamedTensors parameters() const;
  // logits [N, K] for x [N, 2] at original timesteps t [N].
  Tensor forward(const Tensor& x, const std::vector<double>& t) const;
  // A ClassifierFn calling forward on this object (which must outlive it).
  diffusion::ClassifierFn fn() const;

  const NoisyMlpClassifierConfig& config() const { return config_; }

 private:
  NoisyMlpClassifierConfig config_;
  Tensor w_t1_, b_t1_, w_t2_, b_t2_;
  Tensor w_in_, b_in_;
  std::vector<Tensor> w_, b_;
  Tensor w_out_, b_out_;
};

}  // namespace ddpm::toy
