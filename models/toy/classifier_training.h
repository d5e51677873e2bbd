// models/toy/classifier_training.h: training and checking the noisy 2-D classifier
// p(y | x_t, t) (noisy_mlp_classifier.h) that ddpm-toy's classifier guidance follows.
//
// One step (Dhariwal & Nichol 2021 sec. 4.1: the classifier sees the noisy x_t of the
// diffusion it guides):
//   (x_0, y) ~ the dataset, a fresh batch per step (datasets2d.h, labels = its classes)
//   t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps   (DDPM eq. 4)
//   L = mean_i -log softmax(f(x_t, t))_i[y_i]                        (cross-entropy)
//   AdamW step (lr with the same 100-step linear warm-up as the denoiser's)
// All draws come from one Philox generator seeded by the caller, in that order per step.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/diffusion/schedule.h"
#include "models/toy/noisy_mlp_classifier.h"

namespace ddpm::toy {

struct NoisyClassifierTrainArgs {
  std::int64_t steps = 2000;
  std::int64_t batch_size = 256;
  double lr = 1e-3;
  std::int64_t log_every = 500;
  std::uint64_t seed = 0;
};

struct NoisyClassifierReport {
  std::vector<std::int64_t> log_steps;
  std::vector<double> log_losses;  // mean loss since the previous logged step
  double seconds = 0;
};

// Trains cls (its parameters packed into `slab`, which must hold exactly cls.parameters())
// on dataset `data` noised by `schedule`. `log` gets a line per logged step.
NoisyClassifierReport train_noisy_mlp_classifier(const NoisyMlpClassifier& cls, ParameterSlab& slab,
                                                 const std::string& data, const diffusion::DiffusionSchedule& schedule,
                                                 const NoisyClassifierTrainArgs& a,
                                                 const std::function<void(const std::string&)>& log = {});

// The classifier's accuracy (argmax of the logits = the label) on n fresh noisy points of
// `data` at each timestep of `timesteps` (the same x_0 and eps for all of them): high at
// small t, falling to chance 1/K as x_t becomes noise.
std::vector<double> noisy_accuracy(const NoisyMlpClassifier& cls, const std::string& data,
                                   const diffusion::DiffusionSchedule& schedule,
                                   const std::vector<std::int64_t>& timesteps, std::int64_t n, std::uint64_t seed);

}  // namespace ddpm::toy
