// Activation checkpointing on CUDA (engine/recompute.h): a tiny UNet's training step with
// recomputation gives the gradients of the step without it (and of the CPU step), draws
// the same dropout masks, holds fewer bytes at its peak, and leaves nothing behind.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>

#include "engine/math_mode.h"
#include "support/gradcheck.h"
#include "support/recompute_step.h"

namespace ddpm {
namespace {

using testing::relative_gap;
using testing::StepResult;
using testing::unet_training_step;

TEST(RecomputeGpu, UNetGradientsMatchWithoutRecomputationAndOnTheCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  const StepResult plain = unet_training_step(Device::cuda(), false);
  const StepResult again = unet_training_step(Device::cuda(), true);
  const StepResult cpu = unet_training_step(Device::cpu(), true);
  ASSERT_EQ(plain.grads.size(), again.grads.size());
  ASSERT_EQ(plain.grads.size(), cpu.grads.size());
  const double gap = relative_gap(plain.grads, again.grads), gap_cpu = relative_gap(cpu.grads, again.grads);
  std::printf("    CUDA with vs without recomputation: %.3g; CUDA vs CPU: %.3g (of the largest gradient)\n", gap,
              gap_cpu);
  EXPECT_LE(gap, 1e-5);
  EXPECT_LE(gap_cpu, 1e-3);  // fp32 on both, different summation orders
  EXPECT_EQ(plain.offset_after, again.offset_after);
  std::printf("    peak bytes: %zu without recomputation, %zu with\n", plain.peak_bytes, again.peak_bytes);
  EXPECT_LT(again.peak_bytes, plain.peak_bytes * 3 / 4);
  EXPECT_EQ(plain.leaked_bytes, 0u);
  EXPECT_EQ(again.leaked_bytes, 0u);
}

}  // namespace
}  // namespace ddpm
