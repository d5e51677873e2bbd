// tests/support/mixture_rig.h: the smallest trainer fixture of the continuous-sigma objectives
// (edm, ict; models/train/trainer.h): a 2-layer MLP denoiser in f64 packed in a slab, and a
// batch provider of 32 points in two tight clusters at (0.5, 0.5) and (-0.5, -0.5), spread 0.02,
// drawn from the trainer's generator (so resumed and uninterrupted runs see the same data).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/parameters.h"
#include "engine/rng.h"
#include "models/diffusion/schedule.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/trainer.h"

namespace ddpm::testing {

struct MixtureRig {
  diffusion::DiffusionSchedule schedule{diffusion::cosine_betas(40)};  // unused by edm and ict
  std::unique_ptr<toy::MlpDenoiser> model;
  ParameterSlab slab;
  explicit MixtureRig(std::uint64_t seed, std::int64_t hidden = 16) {
    toy::MlpDenoiserConfig c;
    c.hidden = hidden;
    c.layers = 2;
    c.time_dim = 8;
    c.dtype = DType::f64;
    Generator g(seed);
    model = std::make_unique<toy::MlpDenoiser>(c, g);
    slab.pack(model->parameters());
  }
};

inline train::Batch mixture_batch(std::int64_t, Generator& gen) {
  std::vector<double> v = randn({32, 2}, gen, Device::cpu(), DType::f64).to_double_vector();
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = ((i / 2) % 2 ? -0.5 : 0.5) + 0.02 * v[i];
  return {Tensor::from_vector(v, {32, 2}, DType::f64), {}, Tensor()};
}

// Trains a 12-step run of `c` twice from seed 5, once straight through and once stopped after
// 6 steps and resumed from state() into a rig of another seed; expects the resumed steps'
// losses, the weights, the EMA and the generator's offset to equal the straight run's bit for bit.
inline void expect_resume_bit_identical(const train::TrainerConfig& c) {
  MixtureRig a(5), b(5), resumed(99);
  train::Trainer ta(a.slab, a.model->fn(), a.schedule, mixture_batch, c);
  train::Trainer tb(b.slab, b.model->fn(), b.schedule, mixture_batch, c);
  std::vector<double> la;
  for (int k = 0; k < 12; ++k) la.push_back(ta.step().loss);
  for (int k = 0; k < 6; ++k) tb.step();
  train::Trainer tc(resumed.slab, resumed.model->fn(), resumed.schedule, mixture_batch, c);
  tc.load_state(tb.state());
  for (int k = 6; k < 12; ++k) EXPECT_EQ(tc.step().loss, la[static_cast<std::size_t>(k)]) << "step " << k;
  EXPECT_EQ(resumed.slab.values().to_double_vector(), a.slab.values().to_double_vector());
  EXPECT_EQ(tc.ema().values().to_double_vector(), ta.ema().values().to_double_vector());
  EXPECT_EQ(tc.generator().offset(), ta.generator().offset());
}

}  // namespace ddpm::testing
