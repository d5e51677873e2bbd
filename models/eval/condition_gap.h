// models/eval/condition_gap.h: does a conditional model read its condition? The computation
// behind `ddpm-eval condition-gap` (the command itself is run_condition_gap in eval_run.h).
//
// For the first n images x_0 of a split, at each requested timestep t:
//   eps ~ N(0, I),   x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps     (DDPM eq. 4)
// and the network is run three times on the same (x_t, t), with
//   own     image i's own condition y_i (its class label, or its caption's index)
//   rolled  the condition of image (i + K) mod n, y_{(i+K) mod n} (K = roll)
//   null    the null condition (label num_classes: the null class, or the empty caption)
// Each output is scored against the target the network was trained on (mean_type_target:
// eps, x_0 or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0), as L_simple scores it:
//   mse_c = mean over images and elements of (out_c - target)^2
// and the report per t is mse_own, mse_rolled, mse_null, the relative gap
//   gap = (mse_rolled - mse_own) / mse_own
// and how far the condition moves the output at all, mean((out_own - out_rolled)^2). A model
// that ignores its condition has gap 0 and output change 0; one that reads it has gap > 0
// (another image's condition predicts this image's target worse). A learned-variance model's
// output is scored on its mean part only (the first C channels).
//
// Conditions: `labels` are the n images' condition indices in [0, num_classes), so one code
// path serves class labels and captions (caption_condition.h makes captions indices into a
// table whose denoiser reads label num_classes as the empty caption). Rolled pairs whose two
// conditions are equal (two images of one class) count as they are: the report says how many
// of the n differ.
//
// Draws: one Generator(seed); timesteps in the given order, and within each t the batches of
// batch_size images in order, one randn of the batch's shape [B, H, W, C] each (f32, on
// device). The sums are accumulated in double on the host.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "models/data/dataset.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/schedule.h"

namespace ddpm::eval {

struct ConditionGapOptions {
  diffusion::ModelMeanType mean_type = diffusion::ModelMeanType::eps;
  bool learned_sigma = false;          // output [..., 2C]: score channels [0, C) only
  int num_classes = 0;                 // conditions 0..num_classes-1; num_classes is the null one
  std::vector<std::int64_t> timesteps = {100, 300, 500, 700, 900};
  std::int64_t roll = 7;               // K: image i gets the condition of image (i + K) mod n
  std::int64_t batch_size = 64;
  std::int64_t limit = 0;              // > 0: only the first `limit` images
  std::uint64_t seed = 0;              // of the eps draws
  Device device = Device::cpu();
};

struct ConditionGapRow {
  std::int64_t t = 0;
  double mse_own = 0, mse_rolled = 0, mse_null = 0;
  double gap = 0;          // (mse_rolled - mse_own) / mse_own
  double output_change = 0;  // mean((out_own - out_rolled)^2)
};

struct ConditionGapReport {
  std::int64_t n = 0;               // images
  std::int64_t rolled_differs = 0;  // images whose rolled condition differs from their own
  std::vector<ConditionGapRow> rows;  // one per timestep, in the order given
  double mean_gap = 0;              // the gap averaged over the timesteps
  double seconds = 0;
};

// Evaluates the gap of `net` on the first n images of ds (n = limit, or all). `labels` holds
// at least n condition indices (ds.labels for a class run, the caption indices for a text
// run). ValueError, naming the option and value: num_classes < 1 (an unconditional model),
// a batch size < 1, a negative limit, fewer labels than images, a label outside
// [0, num_classes), a timestep outside [0, T), no timesteps, or a roll that is 0 mod n
// (every image would keep its own condition). `log`, when set, gets a line per timestep.
ConditionGapReport evaluate_condition_gap(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& net,
                                          const Dataset& ds, const std::vector<std::int64_t>& labels,
                                          const ConditionGapOptions& options,
                                          const std::function<void(const std::string&)>& log = {});

}  // namespace ddpm::eval
