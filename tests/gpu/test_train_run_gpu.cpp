// tests/gpu/test_train_run_gpu.cpp: ddpm-train's run on CUDA. A run stopped and resumed
// reproduces the straight run bit for bit (every CUDA kernel of a training step is
// deterministic: cuDNN algorithms are chosen among the deterministic ones, reductions have
// a fixed order, dropout and noise come from Philox counters), and running out of GPU
// memory is one clear OutOfMemoryError naming the batch size, not a crash.
#include <gtest/gtest.h>

#include <string>

#include "engine/error.h"
#include "models/run/checkpoint.h"
#include "support/gradcheck.h"
#include "support/tiny_run.h"

namespace ddpm {
namespace {

TEST(TrainRunGpu, ResumeIsBitIdentical) {
  DDPM_REQUIRE_CUDA();
  run::TrainOptions straight = testing::tiny_run(testing::temp_run("gpu_straight"), Device::cuda());
  run::train_run(straight);

  run::TrainOptions first = testing::tiny_run(testing::temp_run("gpu_resumed"), Device::cuda());
  first.steps = 3;
  run::train_run(first);
  run::TrainOptions second = first;
  second.steps = 6;
  second.resume = "latest";
  EXPECT_EQ(run::train_run(second).steps_done, 6);

  const std::string a = run::checkpoint_dir(straight.out, 6), b = run::checkpoint_dir(second.out, 6);
  for (const char* f : {"model.safetensors", "ema.safetensors", "optimizer.safetensors"})
    testing::expect_same_tensors(a + "/" + f, b + "/" + f);
}

TEST(TrainRunGpu, OutOfMemoryNamesTheBatchSize) {
  DDPM_REQUIRE_CUDA();
  // 32768 images of 16x16 through 128 channels: one activation is 4 GiB and the step keeps
  // dozens of them, several hundred GiB, more than any GPU holds.
  run::TrainOptions o = testing::tiny_run(testing::temp_run("gpu_oom"), Device::cuda());
  o.num_channels = 128;
  o.toy_count = 32768;
  o.batch_size = 32768;
  o.steps = 1;
  try {
    run::train_run(o);
    FAIL() << "a step of 32768 images did not run out of GPU memory";
  } catch (const OutOfMemoryError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of GPU memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--batch-size (now 32768)"), std::string::npos) << msg;
  }
  // The engine is usable afterwards: the pool gave back what the failed step held.
  EXPECT_EQ(run::train_run(testing::tiny_run(testing::temp_run("gpu_after_oom"), Device::cuda())).steps_done, 6);
}

}  // namespace
}  // namespace ddpm
