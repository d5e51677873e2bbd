// tests/support/tiny_control.h: the smallest ddpm-control runs the tests make, on a tiny
// frozen base run (tiny_run.h, two steps): a ControlNet trained on 24 toy images for four
// steps of batch 4 with a checkpoint every two, and the bit-identical resume check every
// kind of base (DDPM, EDM, latent) must pass: four steps straight equal two steps, a stop,
// and two more resumed from the checkpoint, bit for bit in every checkpoint tensor.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "models/run/control_run.h"
#include "support/tiny_run.h"

namespace ddpm::testing {

// A base run trained once in folder `name`: tiny_run with `adjust` applied (objective,
// class conditioning, an autoencoder), two steps and a checkpoint at step 2.
inline std::string train_tiny_base(const std::string& name,
                                   const std::function<void(run::TrainOptions&)>& adjust) {
  const std::string out = temp_run(name);
  run::TrainOptions o = tiny_run(out);
  adjust(o);
  o.steps = 2;
  o.save_every = 2;
  run::train_run(o);
  return out;
}

// A ControlNet run on `base` (the default edge hint) writing to `out`: the toy data, four
// steps of batch 4, lr 1e-3, EMA rate 0.5, a checkpoint and a metrics line every two steps.
inline run::ControlTrainArgs tiny_control_args(const std::string& base, const std::string& out) {
  run::ControlTrainArgs a;
  a.base = base;
  a.data = "toy";
  a.toy_count = 24;
  a.out = out;
  a.steps = 4;
  a.batch_size = 4;
  a.lr = 1e-3;
  a.ema_rate = 0.5;
  a.save_every = 2;
  a.log_every = 2;
  return a;
}

struct ControlResumeRuns {
  run::ControlTrainResult straight;  // four steps in one go, in folder `full`
  run::ControlTrainResult resumed;   // the last two steps, resumed from step 2 in `split`
};

// Trains args(full) for its four steps, and args(split) for two, then (after `between`, which
// may damage what a resume must ignore) resumed from "latest" to four; expects finite losses
// and the step-4 model, EMA and optimizer tensors of the two folders equal bit for bit.
inline ControlResumeRuns expect_control_resume_bit_identical(
    const std::function<run::ControlTrainArgs(const std::string&)>& args, const std::string& full,
    const std::string& split, const std::function<void()>& between = {}) {
  ControlResumeRuns runs;
  runs.straight = run::train_control_run(args(full));
  EXPECT_EQ(runs.straight.losses.size(), 4u);
  for (double l : runs.straight.losses) EXPECT_TRUE(std::isfinite(l));
  run::ControlTrainArgs first = args(split);
  first.steps = 2;
  run::train_control_run(first);
  if (between) between();
  run::ControlTrainArgs rest = args(split);
  rest.resume = "latest";
  runs.resumed = run::train_control_run(rest);
  for (const char* f : {"model.safetensors", "ema.safetensors", "optimizer.safetensors"})
    expect_same_tensors(full + "/checkpoints/step_4/" + f, split + "/checkpoints/step_4/" + f);
  return runs;
}

}  // namespace ddpm::testing
