// The vdm objective of the Trainer (models/train/trainer.h, models/diffusion/vdm.h): the
// backpropagated loss is the bound in bits/dim of the documented draws, a learned schedule
// in the slab moves, microbatches give the full-batch loss and gradient (the variance-
// minimising scale is per sample), and the DDPM-only choices are refused.
#include <cmath>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/parameters.h"
#include "models/diffusion/vdm.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/trainer.h"

namespace ddpm::train {
namespace {

struct VdmRig {
  diffusion::DiffusionSchedule schedule{diffusion::cosine_betas(40)};  // unused by the vdm objective
  std::unique_ptr<toy::MlpDenoiser> model;
  std::unique_ptr<diffusion::VdmSchedule> gamma;
  ParameterSlab slab;
  VdmRig(std::uint64_t seed, std::int64_t steps) {
    toy::MlpDenoiserConfig c;
    c.hidden = 16;
    c.layers = 2;
    c.time_dim = 8;
    c.dtype = DType::f64;
    Generator g(seed);
    model = std::make_unique<toy::MlpDenoiser>(c, g);
    diffusion::VdmConfig v;
    v.schedule = diffusion::VdmScheduleKind::learned;
    v.features = 8;
    v.steps = steps;
    gamma = std::make_unique<diffusion::VdmSchedule>(v, g, Device::cpu(), DType::f64);
    NamedTensors all = model->parameters();
    for (const auto& [name, t] : gamma->named_parameters()) all.emplace_back("vdm_gamma." + name, t);
    slab.pack(all);
  }
  TrainerConfig config() const {
    TrainerConfig c;
    c.objective = Objective::vdm;
    c.vdm_schedule = gamma.get();
    c.adamw.lr = 1e-2;
    c.ema_rate = 0.99;
    c.seed = 5;
    return c;
  }
};

// 12 points of two clusters at +-0.5 in [-1, 1] (from the trainer's generator).
Batch clusters(std::int64_t, Generator& gen) {
  std::vector<double> v = randn({12, 2}, gen, Device::cpu(), DType::f64).to_double_vector();
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = ((i / 2) % 2 ? -0.5 : 0.5) + 0.05 * v[i];
  return {Tensor::from_vector(v, {12, 2}, DType::f64), {}};
}

TEST(VdmTrainer, LossIsTheBoundInBitsPerDimAndTheScheduleTrains) {
  for (std::int64_t steps : {std::int64_t{0}, std::int64_t{10}}) {
    VdmRig r(1, steps), fresh(1, steps);
    Trainer tr(r.slab, r.model->fn(), r.schedule, clusters, r.config());
    const StepMetrics m = tr.step();
    // Replay the documented order: the provider's draws, t (one rand), the noise, eps_0.
    Generator g(5);
    const Batch b = clusters(0, g);
    const std::vector<double> t = diffusion::sample_vdm_times(12, steps, g);
    const Tensor eps = randn({12, 2}, g, Device::cpu(), DType::f64);
    const Tensor eps0 = randn({12, 2}, g, Device::cpu(), DType::f64);
    const diffusion::GammaCurve curve = fresh.gamma->curve();
    const std::vector<double> diff =
        diffusion::vdm_diffusion_nats(fresh.model->fn(), curve, b.x0, t, eps, {}).to_double_vector();
    const std::vector<double> prior = diffusion::vdm_prior_nats(curve, b.x0);
    const std::vector<double> recon = diffusion::vdm_reconstruction_nats(curve, b.x0, eps0);
    double expected = 0.0;
    for (std::size_t i = 0; i < 12; ++i) expected += diffusion::vdm_bits_per_dim(diff[i] + prior[i] + recon[i], 2) / 12;
    EXPECT_NEAR(m.loss, expected, 1e-12 * expected) << "T = " << steps;
    std::int64_t counted = 0;
    for (std::int64_t c : m.quartile_count) counted += c;
    EXPECT_EQ(counted, 12);
    // AdamW moved every schedule weight (each had a gradient).
    const std::vector<Tensor> now = r.gamma->weights(), before = fresh.gamma->weights();
    for (std::size_t k = 0; k < now.size(); ++k) {
      const std::vector<double> a = now[k].to_double_vector(), z = before[k].to_double_vector();
      for (std::size_t j = 0; j < a.size(); ++j) EXPECT_NE(a[j], z[j]) << "schedule weight " << k << "." << j;
    }
  }
}

TEST(VdmTrainer, MicrobatchesGiveTheFullBatchLossAndGradient) {
  VdmRig a(2, 0), b(2, 0);
  Trainer ta(a.slab, a.model->fn(), a.schedule, clusters, a.config());
  TrainerConfig c = b.config();
  c.microbatch = 5;  // 5 + 5 + 2
  Trainer tb(b.slab, b.model->fn(), b.schedule, clusters, c);
  for (int k = 0; k < 3; ++k) {
    const StepMetrics ma = ta.step(), mb = tb.step();
    EXPECT_NEAR(ma.loss, mb.loss, 1e-12 * ma.loss);
    EXPECT_NEAR(ma.grad_norm, mb.grad_norm, 1e-10 * ma.grad_norm);
  }
}

TEST(VdmTrainer, RefusesWhatBelongsToTheDiscreteProcess) {
  VdmRig r(3, 0);
  TrainerConfig c = r.config();
  c.vdm_schedule = nullptr;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, clusters, c), ValueError);
  c = r.config();
  c.loss.mean_type = diffusion::ModelMeanType::x0;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, clusters, c), ValueError);
  c = r.config();
  c.timesteps = TimestepSampling::loss_second_moment;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, clusters, c), ValueError);
}

}  // namespace
}  // namespace ddpm::train
