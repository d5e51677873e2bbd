// tests/support/tiny_toy.h: the small 2-D toy models (models/run/toy_run.h) the toy tests
// train in a few CPU-seconds: a 64-wide MLP denoiser on T = 100 linear betas, lr 2e-3 and an
// EMA rate of 0.99 (ddpm-toy's defaults, 128 wide on T = 200, take several times longer).
// Each test adds what its check needs: the data, the step count and seed, the batch, the
// logging interval, class conditioning.
#pragma once

#include <cstdint>
#include <string>

#include "models/run/toy_run.h"

namespace ddpm::testing {

inline run::ToyTrainArgs tiny_toy_args(const std::string& data, std::int64_t steps, std::uint64_t seed) {
  run::ToyTrainArgs a;
  a.data = data;
  a.steps = steps;
  a.lr = 2e-3;
  a.hidden = 64;
  a.diffusion_steps = 100;
  a.ema_rate = 0.99;
  a.seed = seed;
  return a;
}

// Loads EMA weights (a slab-shaped flat tensor, ToyTrainReport::ema) into the model's slab,
// as load_toy_model does from ema.safetensors: samples are then drawn with the EMA weights.
inline void use_ema(run::ToyModel& m, const Tensor& ema) {
  Tensor values = m.slab.values();  // a handle on the slab
  values.copy_from(ema);
}

}  // namespace ddpm::testing
