// The data-parallel trainer under mpiexec (models/train/trainer.h): W ranks sharing a global
// batch take the same steps as one process training on the whole batch, and hold the same
// weights bit for bit afterwards.
//
// Why "the same" is a tolerance against the single process and exact across ranks: each
// rank sums its own samples' gradient contributions (inside its GEMMs and reductions), then
// the all-reduce adds the ranks' partial sums, while one process sums all N contributions in
// one order; floating-point addition is not associative, so the two differ by rounding
// (~1e-16 relative in f64, ~1e-7 in f32, then carried through AdamW). Across ranks the
// all-reduce hands every rank the same bits, and everything after it is deterministic.
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/trainer.h"
#include "models/unet/unet.h"
#include "support/tiny_unet.h"

namespace ddpm::train {
namespace {

using diffusion::DiffusionSchedule;

std::unique_ptr<dist::Communicator> world() { return dist::Communicator::from_environment(Device::cpu()); }

// Every rank holds the same bytes as rank 0 (rank 0's copy is broadcast, each rank compares
// its own, and the number of differing ranks is summed).
void expect_same_on_every_rank(dist::Communicator& c, const Tensor& t, const char* what) {
  Tensor root = t.clone();
  c.broadcast(root, 0);
  double differs = std::memcmp(root.raw_data(), t.raw_data(), t.nbytes()) != 0 ? 1.0 : 0.0;
  c.all_reduce_sum(&differs, 1, Device::cpu());
  EXPECT_EQ(differs, 0.0) << what << " differs from rank 0's on " << differs << " rank(s)";
}

void expect_close(const Tensor& a, const Tensor& b, double rel, const char* what) {
  const std::vector<double> va = a.to_double_vector(), vb = b.to_double_vector();
  ASSERT_EQ(va.size(), vb.size());
  double worst = 0;
  for (std::size_t i = 0; i < va.size(); ++i)
    worst = std::max(worst, std::abs(va[i] - vb[i]) / std::max(1.0, std::abs(vb[i])));
  EXPECT_LE(worst, rel) << what << ": worst relative difference " << worst;
}

// The MLP denoiser of 2-d points in f64, class-conditional (3 classes), and its schedule.
struct MlpRig {
  DiffusionSchedule schedule{diffusion::cosine_betas(20)};
  std::unique_ptr<toy::MlpDenoiser> model;
  ParameterSlab slab;
  explicit MlpRig(std::uint64_t init_seed) {
    toy::MlpDenoiserConfig c;
    c.hidden = 16;
    c.layers = 2;
    c.time_dim = 8;
    c.num_classes = 3;
    c.dtype = DType::f64;
    Generator g(init_seed);
    model = std::make_unique<toy::MlpDenoiser>(c, g);
    slab.pack(model->parameters());
  }
};

// A global batch of 48 points around a class-dependent centre, drawn from the trainer's
// generator (so every rank must draw it identically).
constexpr std::size_t kPoints = 48;  // the global batch: divisible by 2, 3, 4 and 6 ranks

Batch labelled_points(std::int64_t, Generator& gen) {
  std::vector<double> u = rand({kPoints}, gen, Device::cpu(), DType::f64).to_double_vector();
  std::vector<double> v = randn({kPoints, 2}, gen, Device::cpu(), DType::f64).to_double_vector();
  Batch b;
  for (std::size_t i = 0; i < kPoints; ++i) {
    b.labels.push_back(static_cast<std::int64_t>(u[i] * 3));
    v[2 * i] += 0.5 * static_cast<double>(b.labels.back()) - 0.5;
    v[2 * i + 1] *= 0.3;
  }
  b.x0 = Tensor::from_vector(v, {kPoints, 2}, DType::f64);
  return b;
}

TrainerConfig mlp_config() {
  TrainerConfig c;
  c.adamw.lr = 1e-2;
  c.adamw.weight_decay = 0.01;
  c.grad_clip = 0.5;
  c.warmup_steps = 3;
  c.ema_rate = 0.99;
  c.microbatch = 3;  // 16 rows per rank of two: uneven chunks
  c.num_classes = 3;
  c.label_dropout = 0.3;
  c.timesteps = TimestepSampling::loss_second_moment;  // the sampler needs every rank's losses
  c.seed = 21;
  return c;
}

TEST(DistTrainer, MatchesOneProcessOnTheGlobalBatch) {
  auto comm = world();
  if (comm->world_size() < 2) GTEST_SKIP() << "needs mpiexec -n 2 or more";
  // 16 steps of 48 samples: the importance sampler leaves its uniform warm-up (10 losses for
  // each of the 20 timesteps) and starts weighting the loss.
  const int steps = 16;
  MlpRig dist_rig(5), one_rig(5);
  Trainer dist_trainer(dist_rig.slab, dist_rig.model->fn(), dist_rig.schedule, labelled_points, mlp_config(), comm.get());
  Trainer one(one_rig.slab, one_rig.model->fn(), one_rig.schedule, labelled_points, mlp_config());
  for (int k = 0; k < steps; ++k) {
    const StepMetrics md = dist_trainer.step(), mo = one.step();
    ASSERT_NEAR(md.loss, mo.loss, 1e-12 * std::abs(mo.loss)) << "step " << k;
    ASSERT_NEAR(md.grad_norm, mo.grad_norm, 1e-12 * mo.grad_norm) << "step " << k;
    EXPECT_EQ(md.quartile_count, mo.quartile_count) << "step " << k;  // the same t for the whole batch
  }
  EXPECT_TRUE(one.importance()->warmed_up()) << "the sampler should have left its uniform warm-up";
  // The generator advanced exactly as a single process's did: the same draws, in order.
  EXPECT_EQ(dist_trainer.generator().offset(), one.generator().offset());
  expect_close(dist_rig.slab.values(), one_rig.slab.values(), 1e-10, "parameters");
  expect_close(dist_trainer.ema().values(), one.ema().values(), 1e-10, "EMA");
  expect_close(dist_trainer.optimizer().exp_avg_sq(), one.optimizer().exp_avg_sq(), 1e-10, "AdamW second moment");
  expect_same_on_every_rank(*comm, dist_rig.slab.values(), "the parameters");
  expect_same_on_every_rank(*comm, dist_trainer.ema().values(), "the EMA");
  expect_same_on_every_rank(*comm, dist_trainer.optimizer().exp_avg(), "the AdamW first moment");
  const std::vector<std::vector<double>> hd = dist_trainer.importance()->history(), ho = one.importance()->history();
  ASSERT_EQ(hd.size(), ho.size());
  for (std::size_t t = 0; t < hd.size(); ++t) {
    ASSERT_EQ(hd[t].size(), ho[t].size()) << "t = " << t;
    for (std::size_t j = 0; j < hd[t].size(); ++j) ASSERT_NEAR(hd[t][j], ho[t][j], 1e-12 * ho[t][j]);
  }
}

// The tiny UNet in f32 (dropout 0): three steps of a global batch of 12 (2, 3, 4 or 6 ranks).
TEST(DistTrainer, UNetInF32MatchesOneProcess) {
  auto comm = world();
  if (comm->world_size() < 2 || 12 % comm->world_size() != 0) GTEST_SKIP() << "needs mpiexec -n 2, 3, 4 or 6";
  const unet::UNetConfig cfg = ddpm::testing::tiny_unet_config(8, 1);
  const DiffusionSchedule schedule(diffusion::linear_betas(50));
  BatchProvider images = [](std::int64_t, Generator& gen) {
    return Batch{scale(randn({12, 8, 8, 1}, gen), 0.5), {}};
  };
  TrainerConfig tc;
  tc.adamw.lr = 1e-4;
  tc.grad_clip = 1.0;
  tc.ema_rate = 0.9;
  tc.seed = 3;
  auto make = [&](Generator g, ParameterSlab& slab) {
    auto net = std::make_unique<unet::UNet>(cfg, g, Device::cpu());
    slab.pack(net->named_parameters());
    return net;
  };
  ParameterSlab ds, os;
  auto dnet = make(Generator(9), ds), onet = make(Generator(9), os);
  auto fn = [](unet::UNet& net, Trainer*& tr) {
    return [&net, &tr](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
      return net.forward(x, t, y, nn::Context{true, &tr->dropout_generator()});
    };
  };
  Trainer *dp = nullptr, *op = nullptr;
  Trainer dt(ds, fn(*dnet, dp), schedule, images, tc, comm.get());
  Trainer ot(os, fn(*onet, op), schedule, images, tc);
  dp = &dt;
  op = &ot;
  for (int k = 0; k < 3; ++k) {
    const StepMetrics md = dt.step(), mo = ot.step();
    EXPECT_NEAR(md.loss, mo.loss, 1e-5 * mo.loss) << "step " << k;
  }
  expect_close(ds.values(), os.values(), 1e-5, "parameters");
  expect_close(dt.ema().values(), ot.ema().values(), 1e-5, "EMA");
  expect_same_on_every_rank(*comm, ds.values(), "the parameters");
  expect_same_on_every_rank(*comm, dt.ema().values(), "the EMA");
}

TEST(DistTrainer, StartsFromRankZerosWeights) {
  auto comm = world();
  if (comm->world_size() < 2) GTEST_SKIP() << "needs mpiexec -n 2 or more";
  MlpRig mine(100 + static_cast<std::uint64_t>(comm->rank())), rank0(100);  // different weights on every rank
  Trainer t(mine.slab, mine.model->fn(), mine.schedule, labelled_points, mlp_config(), comm.get());
  EXPECT_EQ(mine.slab.values().to_double_vector(), rank0.slab.values().to_double_vector());
  EXPECT_EQ(t.ema().values().to_double_vector(), rank0.slab.values().to_double_vector());
}

// With dropout the ranks draw their masks from their own streams (not one shared mask for
// "sample i of every rank"), and the weights still stay identical across ranks.
TEST(DistTrainer, DropoutStreamsDifferPerRankWeightsStayIdentical) {
  auto comm = world();
  if (comm->world_size() < 2 || 12 % comm->world_size() != 0) GTEST_SKIP() << "needs mpiexec -n 2, 3, 4 or 6";
  unet::UNetConfig cfg = ddpm::testing::tiny_unet_config(8, 1);
  cfg.dropout = 0.3;
  const DiffusionSchedule schedule(diffusion::linear_betas(50));
  BatchProvider images = [](std::int64_t, Generator& gen) { return Batch{randn({12, 8, 8, 1}, gen), {}}; };
  TrainerConfig tc;
  tc.seed = 4;
  Generator g(9);
  unet::UNet net(cfg, g, Device::cpu());
  ParameterSlab slab;
  slab.pack(net.named_parameters());
  Trainer* tr = nullptr;
  diffusion::DenoiseFn fn = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{true, &tr->dropout_generator()});
  };
  Trainer trainer(slab, fn, schedule, images, tc, comm.get());
  tr = &trainer;
  for (int k = 0; k < 2; ++k) trainer.step();
  double key = static_cast<double>(trainer.dropout_generator().seed() % 1000003), root_key = key;
  comm->broadcast_bytes(&root_key, sizeof root_key, 0, Device::cpu());
  double same = (comm->rank() != 0 && key == root_key) ? 1.0 : 0.0;
  comm->all_reduce_sum(&same, 1, Device::cpu());
  EXPECT_EQ(same, 0.0) << "a rank shares rank 0's dropout stream";
  EXPECT_NE(&trainer.dropout_generator(), &trainer.generator());
  // Step 1's masks were drawn from [2^40, 2^41) of this rank's stream.
  EXPECT_GT(trainer.dropout_generator().offset(), std::uint64_t{1} << 40);
  EXPECT_LT(trainer.dropout_generator().offset(), std::uint64_t{2} << 40);
  expect_same_on_every_rank(*comm, slab.values(), "the parameters");
}

TEST(DistTrainer, RefusesABatchTheWorldDoesNotDivide) {
  auto comm = world();
  if (comm->world_size() < 2) GTEST_SKIP() << "needs mpiexec -n 2 or more";
  MlpRig rig(1);
  const std::int64_t n = 2 * comm->world_size() + 1;
  BatchProvider odd = [n](std::int64_t, Generator& gen) {
    return Batch{randn({n, 2}, gen, Device::cpu(), DType::f64), std::vector<std::int64_t>(static_cast<std::size_t>(n), 0)};
  };
  Trainer t(rig.slab, rig.model->fn(), rig.schedule, odd, mlp_config(), comm.get());
  try {
    t.step();
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("global batch of " + std::to_string(n)), std::string::npos) << msg;
    EXPECT_NE(msg.find("world size " + std::to_string(comm->world_size())), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace ddpm::train
