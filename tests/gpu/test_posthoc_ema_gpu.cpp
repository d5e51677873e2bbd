// Post-hoc EMA's power EMAs on CUDA (models/train/posthoc_ema.h PowerEma): the update against
// the CPU reference (the same ema_update kernel pair as engine/optim.h's Ema), and a CUDA run
// with --posthoc-ema whose snapshots and checkpointed power EMAs a resume reproduces bit for bit.
#include <gtest/gtest.h>

#include <string>

#include "engine/error.h"
#include "engine/parameters.h"
#include "models/run/checkpoint.h"
#include "models/train/posthoc_ema.h"
#include "support/gradcheck.h"
#include "support/tiny_run.h"

namespace ddpm {
namespace {

TEST(PosthocEmaGpu, PowerEmaMatchesCpu) {
  DDPM_REQUIRE_CUDA();
  auto params = [] {
    return NamedTensors{{"conv.weight", testing::random_tensor({64, 3, 3, 32}, 1, DType::f32)},
                        {"conv.bias", testing::random_tensor({61}, 2, DType::f32)}};
  };
  ParameterSlab cpu(params()), gpu(params());
  gpu.to(Device::cuda());
  train::PowerEma ec(cpu, 0.05), eg(gpu, 0.05);
  for (std::int64_t t = 1; t <= 6; ++t) {
    Tensor p = testing::random_tensor({cpu.slab_numel()}, 100 + static_cast<std::uint64_t>(t), DType::f32);
    Tensor vc = cpu.values(), vg = gpu.values();
    vc.copy_from(p);
    vg.copy_from(p);
    EXPECT_EQ(ec.update(cpu, t), eg.update(gpu, t));
  }
  EXPECT_TRUE(testing::all_close(eg.values(), ec.values(), 1e-7, 1e-6));
}

TEST(PosthocEmaGpu, ResumeReproducesSnapshotsBitForBit) {
  DDPM_REQUIRE_CUDA();
  run::TrainOptions straight = testing::tiny_run(testing::temp_run("gpu_posthoc_straight"), Device::cuda());
  straight.posthoc_ema = "0.05,0.10";
  straight.posthoc_snapshot_every = 2;
  run::train_run(straight);
  run::TrainOptions first = straight;
  first.out = testing::temp_run("gpu_posthoc_resumed");
  first.steps = 3;
  run::train_run(first);
  run::TrainOptions second = first;
  second.steps = 6;
  second.resume = "latest";
  run::train_run(second);
  for (int step : {2, 4, 6}) {
    const std::string f = "/posthoc/step_" + std::to_string(step) + ".safetensors";
    testing::expect_same_tensors(straight.out + f, second.out + f);
  }
  testing::expect_same_tensors(run::checkpoint_dir(straight.out, 6) + "/" + run::kPowerEmaFile,
                               run::checkpoint_dir(second.out, 6) + "/" + run::kPowerEmaFile);
}

}  // namespace
}  // namespace ddpm
