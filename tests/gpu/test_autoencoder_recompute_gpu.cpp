// Activation checkpointing of the KL autoencoder on CUDA (models/autoencoder/autoencoder.h,
// engine/recompute.h): a training step of a small autoencoder with recomputation gives the
// loss and gradients of the step without it (and of the CPU step), holds fewer bytes at its
// peak, and leaves nothing behind.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>

#include "engine/math_mode.h"
#include "support/autoencoder_recompute_step.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::relative_gap;
using testing::AutoencoderStep;
using testing::autoencoder_training_step;

TEST(RecomputeGpu, AutoencoderGradientsMatchWithoutRecomputationAndOnTheCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  const AutoencoderStep plain = autoencoder_training_step(Device::cuda(), DType::f32, false, 4, 32);
  const AutoencoderStep again = autoencoder_training_step(Device::cuda(), DType::f32, true, 4, 32);
  const AutoencoderStep cpu = autoencoder_training_step(Device::cpu(), DType::f32, true, 4, 32);
  ASSERT_EQ(plain.grads.size(), again.grads.size());
  ASSERT_EQ(plain.grads.size(), cpu.grads.size());
  const double gap = relative_gap(plain.grads, again.grads), gap_cpu = relative_gap(cpu.grads, again.grads);
  std::printf("    CUDA with vs without recomputation: %.3g; CUDA vs CPU: %.3g (of the largest gradient)\n", gap,
              gap_cpu);
  // The recomputed forward runs the same kernels under no-grad mode, so the loss is the same
  // (to a reduction's rounding); the gradients agree to the summation order of tensors with
  // several consumers.
  EXPECT_NEAR(plain.loss, again.loss, 1e-6 * std::fabs(plain.loss));
  EXPECT_NEAR(cpu.loss, again.loss, 1e-4 * std::fabs(cpu.loss));
  EXPECT_LE(gap, 1e-5);
  EXPECT_LE(gap_cpu, 1e-3);  // fp32 on both, different summation orders
  std::printf("    peak bytes: %zu without recomputation, %zu with\n", plain.peak_bytes, again.peak_bytes);
  EXPECT_LT(again.peak_bytes, plain.peak_bytes * 3 / 4);
  EXPECT_EQ(plain.leaked_bytes, 0u);
  EXPECT_EQ(again.leaked_bytes, 0u);
}

}  // namespace
}  // namespace ddpm
