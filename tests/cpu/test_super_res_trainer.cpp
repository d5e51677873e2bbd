// The trainer with a per-sample condition (train::Batch::cond, a super-resolution model's
// upsampled low-res image): the loss against a hand-made step that concatenates the
// condition itself, microbatches against the full batch, and the row slicing of two
// data-parallel ranks (a fake in-process communicator: each rank's gradient covers its own
// rows, so the two ranks' gradients must add up to the single-process one).
#include <cmath>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/dist/communicator.h"
#include "engine/ops/concat.h"
#include "engine/rng.h"
#include "models/diffusion/super_res.h"
#include "models/train/trainer.h"
#include "support/tiny_unet.h"

namespace ddpm::train {
namespace {

constexpr int kSize = 8, kLow = 4, kN = 4;

// A tiny super-resolution UNet with random (not zero-initialised) output layers, so its
// output depends on every input channel.
struct SrRig {
  diffusion::DiffusionSchedule schedule{diffusion::linear_betas(50)};
  std::unique_ptr<unet::UNet> net;
  ParameterSlab slab;
  SrRig() {
    unet::UNetConfig c = testing::tiny_unet_config(kSize, 1);
    c.concat_channels = 1;
    c.low_res_size = kLow;
    Generator g(11);
    net = std::make_unique<unet::UNet>(c, g, Device::cpu());
    slab.pack(net->named_parameters());
    Generator w(12);
    Tensor values = slab.values();
    values.copy_from(scale_randn(slab.slab_numel(), w));
  }
  static Tensor scale_randn(std::int64_t n, Generator& g) {
    std::vector<float> v = randn({n}, g).to_vector();
    for (float& x : v) x *= 0.2f;
    return Tensor::from_vector(v, {n});
  }
  diffusion::DenoiseFn fn() const {
    const unet::UNet* n = net.get();
    return [n](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
      return n->forward(x, t, y, nn::Context{});
    };
  }
};

// The same four images every step, drawn from a fixed generator (not the trainer's).
Batch fixed_batch(std::int64_t, Generator&) {
  Generator g(99);
  Tensor x0 = randn({kN, kSize, kSize, 1}, g);
  return {x0, {}, diffusion::super_res_condition(x0, kLow)};
}

TrainerConfig config() {
  TrainerConfig c;
  c.adamw.lr = 1e-3;
  c.grad_clip = 0.0;
  c.seed = 5;
  return c;
}

TEST(SuperResTrainer, LossEqualsAStepThatConcatenatesTheConditionItself) {
  SrRig rig;
  // The trainer's draws for one step (trainer.h): t from N uniforms in f64, then the noise.
  Generator g(config().seed);
  Generator unused(0);
  const Batch b = fixed_batch(0, unused);
  const std::vector<double> u = rand({kN}, g, Device::cpu(), DType::f64).to_double_vector();
  const Tensor noise = randn(b.x0.shape(), g);
  const std::int64_t T = rig.schedule.num_timesteps();
  const std::vector<double> x0 = b.x0.to_double_vector(), nz = noise.to_double_vector();
  std::vector<double> t;
  std::vector<float> xt(x0.size());
  const std::size_t per = kSize * kSize;
  for (std::int64_t i = 0; i < kN; ++i) {
    const auto ti = std::min<std::int64_t>(T - 1, static_cast<std::int64_t>(u[i] * T));
    t.push_back(static_cast<double>(ti));
    const double ab = rig.schedule.alphas_cumprod[static_cast<std::size_t>(ti)];
    for (std::size_t p = 0; p < per; ++p) {  // x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps
      const std::size_t k = static_cast<std::size_t>(i) * per + p;
      xt[k] = static_cast<float>(std::sqrt(ab) * x0[k] + std::sqrt(1 - ab) * nz[k]);
    }
  }
  const Tensor in = concat({Tensor::from_vector(xt, b.x0.shape()), b.cond}, -1);
  const std::vector<double> eps = rig.fn()(in, t, {}).to_double_vector();
  double want = 0;  // mean over samples of the per-sample mean squared error
  for (std::size_t k = 0; k < eps.size(); ++k) want += (eps[k] - nz[k]) * (eps[k] - nz[k]);
  want /= static_cast<double>(eps.size());

  Trainer trainer(rig.slab, rig.fn(), rig.schedule, fixed_batch, config());
  const StepMetrics m = trainer.step();
  EXPECT_NEAR(m.loss, want, 1e-5 * want);

  // The condition matters: the same step with the rows' conditions reversed differs.
  SrRig other;
  BatchProvider swapped = [](std::int64_t s, Generator& gen) {
    Batch bb = fixed_batch(s, gen);
    std::vector<Tensor> rows;
    for (std::int64_t i = kN - 1; i >= 0; --i) rows.push_back(diffusion::batch_rows(bb.cond, i, 1));
    bb.cond = concat(rows, 0);
    return bb;
  };
  Trainer t2(other.slab, other.fn(), other.schedule, swapped, config());
  EXPECT_GT(std::abs(t2.step().loss - want), 1e-4 * want);
}

TEST(SuperResTrainer, EdmScalesXtButNotTheCondition) {
  // EDM (edm.h): F(concat(c_in x, cond); c_noise), x = x_0 + sigma n, loss = mean (F - F_target)^2
  // with F_target = (x_0 - c_skip x) / c_out; the draws are sigma (N normals), then the noise.
  SrRig rig;
  TrainerConfig c = config();
  c.objective = Objective::edm;
  Generator g(c.seed), unused(0);
  const Batch b = fixed_batch(0, unused);
  const std::vector<double> sigma = diffusion::sample_edm_sigmas(kN, c.edm, g).sigma;
  const Tensor noise = randn(b.x0.shape(), g);
  const std::vector<double> x0 = b.x0.to_double_vector(), nz = noise.to_double_vector();
  const double sd = c.edm.sigma_data;
  const std::size_t per = kSize * kSize;
  std::vector<float> scaled(x0.size());
  std::vector<double> target(x0.size()), t;
  for (std::size_t i = 0; i < static_cast<std::size_t>(kN); ++i) {
    const double s = sigma[i], norm = std::sqrt(s * s + sd * sd);
    const double c_skip = sd * sd / (norm * norm), c_out = s * sd / norm, c_in = 1 / norm;
    t.push_back(std::log(s) / 4);  // c_noise
    for (std::size_t p = 0; p < per; ++p) {
      const std::size_t k = i * per + p;
      const double x = x0[k] + s * nz[k];
      scaled[k] = static_cast<float>(c_in * x);
      target[k] = (x0[k] - c_skip * x) / c_out;
    }
  }
  const Tensor in = concat({Tensor::from_vector(scaled, b.x0.shape()), b.cond}, -1);  // the condition unscaled
  const std::vector<double> f = rig.fn()(in, t, {}).to_double_vector();
  double want = 0;
  for (std::size_t k = 0; k < f.size(); ++k) want += (f[k] - target[k]) * (f[k] - target[k]);
  want /= static_cast<double>(f.size());
  Trainer trainer(rig.slab, rig.fn(), rig.schedule, fixed_batch, c);
  EXPECT_NEAR(trainer.step().loss, want, 1e-5 * want);
}

TEST(SuperResTrainer, MicrobatchesSliceTheConditionLikeX0) {
  SrRig a, b;
  TrainerConfig c = config();
  Trainer full(a.slab, a.fn(), a.schedule, fixed_batch, c);
  c.microbatch = 3;  // 4 = 3 + 1
  Trainer micro(b.slab, b.fn(), b.schedule, fixed_batch, c);
  const StepMetrics mf = full.step(), mm = micro.step();
  EXPECT_NEAR(mf.loss, mm.loss, 1e-6 * mf.loss);
  const std::vector<double> gf = a.slab.grads().to_double_vector(), gm = b.slab.grads().to_double_vector();
  for (std::size_t i = 0; i < gf.size(); ++i) ASSERT_NEAR(gf[i], gm[i], 1e-5 + 1e-4 * std::abs(gf[i])) << i;
}

// Rank `r` of a world of 2 whose collectives do nothing: the trainer's all-reduce leaves this
// rank's own gradient in the slab, which is what the test inspects.
class LoneRank : public dist::Communicator {
 public:
  explicit LoneRank(int r) : rank_(r) {}
  int rank() const override { return rank_; }
  int world_size() const override { return 2; }
  std::string describe() const override { return "fake rank of 2"; }
  void all_reduce_sum(void*, std::int64_t, DType, Device) override {}
  void broadcast_bytes(void*, std::size_t, int, Device) override {}
  void barrier() override {}

 private:
  int rank_;
};

TEST(SuperResTrainer, TwoRanksGradientsAddUpToTheSingleProcessGradient) {
  SrRig one, r0, r1;
  Trainer single(one.slab, one.fn(), one.schedule, fixed_batch, config());
  LoneRank c0(0), c1(1);
  Trainer t0(r0.slab, r0.fn(), r0.schedule, fixed_batch, config(), &c0);
  Trainer t1(r1.slab, r1.fn(), r1.schedule, fixed_batch, config(), &c1);
  single.step();
  t0.step();
  t1.step();
  const std::vector<double> g = one.slab.grads().to_double_vector(), g0 = r0.slab.grads().to_double_vector(),
                            g1 = r1.slab.grads().to_double_vector();
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    worst = std::max(worst, std::abs(g0[i] + g1[i] - g[i]));
    scale = std::max(scale, std::abs(g[i]));
  }
  EXPECT_LE(worst, 1e-5 * scale) << "largest gradient " << scale;
}

}  // namespace
}  // namespace ddpm::train
