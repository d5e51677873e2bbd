// Data parallelism as seen without MPI (engine/dist, models/train, models/run): the
// single-process communicator is the identity, a trainer given it explicitly takes the very
// same steps as one given none, the world size reaches config.json, and --batch-size must be
// divisible by the world size (checked with a stand-in communicator of world 2 whose
// collectives must never be reached by the validation). The multi-rank behaviour is tested
// under mpiexec in tests/dist.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/dist/communicator.h"
#include "engine/dist/mpi.h"
#include "engine/error.h"
#include "models/run/train_run.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/trainer.h"
#include "support/tiny_run.h"
#include "support/tiny_unet.h"

namespace ddpm {
namespace {

// World 2 in name only: enough for checks that read the world size before any collective.
class NameOnlyWorldOfTwo final : public dist::Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  std::string describe() const override { return "test stand-in"; }
  void all_reduce_sum(void*, std::int64_t, DType, Device) override { ADD_FAILURE() << "no collectives expected"; }
  void broadcast_bytes(void*, std::size_t, int, Device) override { ADD_FAILURE() << "no collectives expected"; }
  void barrier() override { ADD_FAILURE() << "no collectives expected"; }
};

TEST(DistSingle, SingleProcessCollectivesAreTheIdentity) {
  auto c = dist::Communicator::single_process();
  EXPECT_EQ(c->world_size(), 1);
  EXPECT_TRUE(c->is_root());
  Tensor t = Tensor::from_vector(std::vector<float>{1.5f, -2.0f, 3.25f}, {3});
  c->all_reduce_sum(t);
  c->broadcast(t, 0);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1.5f, -2.0f, 3.25f}));
  EXPECT_EQ(c->broadcast_string("run/checkpoints/step_3", 0), "run/checkpoints/step_3");
  EXPECT_THROW(c->broadcast(t, 1), ValueError);  // root outside a world of one
  EXPECT_THROW(c->all_reduce_sum(t.raw_data(), 3, DType::f16, Device::cpu()), ValueError);
  // Not started by a launcher (ctest runs cpu_tests directly): no MPI, world 1.
  if (!dist::MpiSession::launched_by_mpi_launcher())
    EXPECT_EQ(dist::Communicator::from_environment(Device::cpu())->world_size(), 1);
}

TEST(DistSingle, AnExplicitSingleProcessTrainerTakesTheSameSteps) {
  const diffusion::DiffusionSchedule schedule(diffusion::cosine_betas(20));
  toy::MlpDenoiserConfig mc;
  mc.hidden = 8;
  mc.layers = 2;
  mc.time_dim = 4;
  mc.dtype = DType::f64;
  Generator ga(3), gb(3);
  toy::MlpDenoiser a(mc, ga), b(mc, gb);
  ParameterSlab sa, sb;
  sa.pack(a.parameters());
  sb.pack(b.parameters());
  train::BatchProvider points = [](std::int64_t, Generator& gen) {
    return train::Batch{randn({6, 2}, gen, Device::cpu(), DType::f64), {}};
  };
  train::TrainerConfig tc;
  tc.seed = 5;
  tc.microbatch = 4;
  tc.timesteps = train::TimestepSampling::loss_second_moment;
  auto single = dist::Communicator::single_process();
  train::Trainer ta(sa, a.fn(), schedule, points, tc);
  train::Trainer tb(sb, b.fn(), schedule, points, tc, single.get());
  EXPECT_EQ(&ta.dropout_generator(), &ta.generator());  // one process: dropout keeps the main stream
  for (int k = 0; k < 4; ++k) EXPECT_EQ(ta.step().loss, tb.step().loss) << "step " << k;
  EXPECT_EQ(sa.values().to_double_vector(), sb.values().to_double_vector());
  EXPECT_EQ(ta.generator().offset(), tb.generator().offset());
}

TEST(DistSingle, TheBatchMustBeDivisibleByTheWorldSize) {
  NameOnlyWorldOfTwo two;
  run::TrainOptions o = testing::tiny_run(testing::temp_run("dist_single"));
  o.comm = &two;
  o.batch_size = 5;
  try {
    run::validate_options(o);
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("--batch-size 5 is not divisible by the world size 2"), std::string::npos)
        << e.what();
  }
  o.batch_size = 6;
  EXPECT_NO_THROW(run::validate_options(o));
  const nlohmann::json j = run::run_config_json(o, ddpm::testing::tiny_unet_config());
  EXPECT_EQ(j.at("run").at("world_size").get<int>(), 2);
  o.comm = nullptr;
  EXPECT_EQ(run::run_config_json(o, ddpm::testing::tiny_unet_config()).at("run").at("world_size").get<int>(), 1);
}

}  // namespace
}  // namespace ddpm
