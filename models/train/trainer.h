// models/train/trainer.h: the training loop of a diffusion model, in the library (the train
// app is a thin shell over it).
//
// One step (ARCHITECTURE "data flow of one training step"):
//   batch = provider(step, gen)                        x_0 [N, ..., C] and N labels (or none)
//   t ~ uniform{0..T-1} or the loss-second-moment sampler (weights w = 1/(T p_t); 1 if uniform)
//   labels -> null label (num_classes) with probability label_dropout (classifier-free guidance)
//   noise ~ N(0, I); x_t = q_sample(x_0, t, noise)
//   zero_grad; for each microbatch b of size m:        gradient accumulation
//       L_b = sum_{i in b} w_i loss_i / N; L_b.backward()
//     so the accumulated gradient is that of the full-batch loss (1/N) sum_i w_i loss_i
//   a non-finite loss or gradient norm: no update at all (skipped, reported)
//   grad_norm = clip_grad_norm(max_norm)               (or just the norm when clipping is off)
//   lr = base_lr * min(1, (step + 1) / warmup_steps); AdamW step
//   EMA update with warm-up, decay = min(rate, (1 + n)/(10 + n)), n = the update's 0-based index
//
// Random numbers come from one Philox generator in a fixed order per step: the provider's
// draws, then t (uniform: N values of rand; importance: the sampler's N values), label
// dropout (N values of rand, when enabled), noise. So a trainer restored from state() takes
// bit-identical steps to one that never stopped.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "engine/optim.h"
#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/likelihood.h"
#include "models/diffusion/schedule.h"

namespace ddpm::train {

// A batch of data: x_0 in [-1, 1] (scaled by the data loader), and its labels (empty when
// the model is unconditional).
struct Batch {
  Tensor x0;
  std::vector<std::int64_t> labels;
};
// Makes the batch for a step; may draw from gen (it is the trainer's generator).
using BatchProvider = std::function<Batch(std::int64_t step, Generator& gen)>;

enum class TimestepSampling { uniform, loss_second_moment };

struct TrainerConfig {
  diffusion::LossConfig loss;  // loss type, mean type, learned sigma, hybrid lambda
  TimestepSampling timesteps = TimestepSampling::uniform;
  AdamWConfig adamw;           // adamw.lr is the base learning rate
  std::int64_t warmup_steps = 0;  // 0: no warm-up
  double grad_clip = 1.0;         // max global norm; 0 turns clipping off
  double ema_rate = 0.9999;
  std::int64_t microbatch = 0;  // 0 or >= N: the whole batch at once
  int num_classes = 0;          // > 0: labels are required, null label = num_classes
  double label_dropout = 0.0;   // probability of the null label (classifier-free guidance training)
  std::uint64_t seed = 0;
};

// What one step did.
struct StepMetrics {
  std::int64_t step = 0;    // the index of this step (0-based)
  double loss = 0.0;        // the (importance-weighted) batch mean that was backpropagated
  // Unweighted mean loss of the samples whose t fell in quartile q: t in [q T/4, (q+1) T/4).
  // NaN where no sample fell in the quartile; counts say how many did.
  std::array<double, 4> loss_quartile{};
  std::array<std::int64_t, 4> quartile_count{};
  double grad_norm = 0.0;  // global norm before clipping (NaN when the loss was non-finite)
  double lr = 0.0;         // the learning rate of this step
  double ema_decay = 0.0;  // the EMA decay used (0 when skipped)
  bool skipped = false;    // non-finite loss or gradient norm: parameters, moments and EMA untouched
};

// Mean loss per timestep quartile (the bookkeeping of StepMetrics); t in [0, T).
void quartile_means(const diffusion::Timesteps& t, const std::vector<double>& losses, std::int64_t T,
                    std::array<double, 4>& means, std::array<std::int64_t, 4>& counts);

// Learning rate with linear warm-up: base * min(1, (step + 1) / warmup_steps).
double warmup_lr(double base, std::int64_t warmup_steps, std::int64_t step);

// Everything a checkpoint needs to resume bit-identically (with the config).
struct TrainerState {
  std::int64_t step = 0;
  std::uint64_t seed = 0, offset = 0;  // the generator
  Tensor params;                       // flat [slab_numel], a copy of the slab values
  std::int64_t adam_step = 0;
  Tensor exp_avg, exp_avg_sq;          // AdamW moments, flat
  Tensor ema;                          // EMA values, flat
  // The importance sampler's loss history (in memory; when used).
  std::optional<diffusion::LossSecondMomentSampler> importance;
};

class Trainer {
 public:
  // The slab must already be packed and on its final device; it must outlive the trainer.
  // model is called with ORIGINAL timesteps (as doubles) and must record on the tape.
  Trainer(ParameterSlab& params, diffusion::DenoiseFn model, const diffusion::DiffusionSchedule& schedule,
          BatchProvider batches, const TrainerConfig& config);

  StepMetrics step();

  std::int64_t step_count() const { return step_; }
  const TrainerConfig& config() const { return config_; }
  Generator& generator() { return gen_; }
  const AdamW& optimizer() const { return adamw_; }
  const Ema& ema() const { return ema_; }
  Ema& ema() { return ema_; }

  TrainerState state() const;
  // The importance sampler of t, when TimestepSampling::loss_second_moment (else empty).
  const std::optional<diffusion::LossSecondMomentSampler>& importance() const { return importance_; }
  void load_state(const TrainerState& state);

 private:
  ParameterSlab* params_;
  diffusion::DenoiseFn model_;
  const diffusion::DiffusionSchedule* schedule_;
  BatchProvider batches_;
  TrainerConfig config_;
  Generator gen_;
  AdamW adamw_;
  Ema ema_;
  std::optional<diffusion::LossSecondMomentSampler> importance_;
  std::int64_t step_ = 0;
};

}  // namespace ddpm::train
