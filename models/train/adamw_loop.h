// models/train/adamw_loop.h: the plain training loop of the side networks (the evaluation
// classifiers of models/eval, the noisy classifier, the autoencoder and its temporal
// decoder of models/run): what each of them sets up and does per step the same way. The
// diffusion models train with models/train/trainer.h (EMA, clipping, checkpoints) instead.
//
// AdamWLoop owns the three pieces such a loop builds:
//   slab    the trained parameters in one slab (engine/parameters.h): zero-grad is one call
//   AdamW   over the slab (engine/optim.h), with the caller's betas and weight decay
//   loader  a shuffling BatchLoader of min(batch_size, N) samples (models/data/loader.h),
//           seeded with the run's seed, batches on the network's device
// and one step on a loss L (a scalar recorded on the tape) is
//   g = 0;  g += dL/dp (backward);  lr_s = the caller's schedule at s;  AdamW step.
// Gradients are zeroed after the forward rather than before it: the forward only records the
// tape, so the two orders give the same g.
//
// LossWindow keeps the running means the loops print: a log line after every `every` steps
// and after the last one, each the mean of the values added since the previous line
// (a window of `every` steps, the last one shorter when `every` does not divide the run).
#pragma once

#include <cstdint>
#include <chrono>
#include <initializer_list>
#include <memory>
#include <vector>

#include "engine/optim.h"
#include "engine/parameters.h"
#include "models/data/loader.h"

namespace ddpm::train {

class AdamWLoop {
 public:
  // `params` are the tensors that train (the slab copies them in and views them back).
  // ValueError from the loader when batch_size is not positive or `data` is empty.
  AdamWLoop(const NamedTensors& params, const AdamWConfig& adamw, std::shared_ptr<const Dataset> data,
            std::int64_t batch_size, std::uint64_t seed, Device device);
  AdamWLoop(const AdamWLoop&) = delete;
  AdamWLoop& operator=(const AdamWLoop&) = delete;

  ddpm::Batch next() { return loader_.next(); }  // the loader's (not trainer.h's train::Batch)
  // One optimizer step on `loss` at learning rate lr; returns loss's value.
  double step(const Tensor& loss, double lr);

  ParameterSlab& slab() { return slab_; }
  const AdamW& optimizer() const { return opt_; }
  const BatchLoader& loader() const { return loader_; }

 private:
  ParameterSlab slab_;
  AdamW opt_;
  BatchLoader loader_;
};

class LossWindow {
 public:
  // A line every `every` steps (none when every <= 0) of a run of total_steps steps. The
  // clock of seconds() starts here.
  LossWindow(std::int64_t total_steps, std::int64_t every);
  // Adds step's values (steps count from 0; the same number of values every step). True when
  // a line is due after this step; the next add starts a new window.
  bool add(std::int64_t step, std::initializer_list<double> values);
  // The mean of the i-th value over the window add just closed.
  double mean(std::size_t i) const;
  double seconds() const;

 private:
  std::int64_t total_, every_;
  std::vector<double> sums_;
  std::int64_t count_ = 0;
  bool closed_ = false;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace ddpm::train
