// tests/gpu/test_profiler_gpu.cpp: the profiler on CUDA: event timing and launch counting.
#include <gtest/gtest.h>

#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/profiler.h"
#include "engine/rng.h"
#include "support/gradcheck.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/check.h"
#endif

namespace ddpm {
namespace {

TEST(ProfilerGpu, TimesOpsWithEventsAndCountsLaunches) {
  DDPM_REQUIRE_CUDA();
#if DDPM_HAVE_CUDA
  const Device dev = Device::cuda();
  Generator gen(1);
  Tensor x = randn({4, 16, 16, 32}, gen, dev), w = randn({32, 3, 3, 32}, gen, dev);
  Tensor y = add(conv2d(x, w, Tensor(), 1, 1), x);  // warm-up (cuDNN algorithm choice)

  const std::uint64_t k0 = cuda::kernel_launch_count();
  Tensor z = silu(x);
  EXPECT_GE(cuda::kernel_launch_count(), k0 + 1);

  Profiler::start(dev);
  y = add(conv2d(x, w, Tensor(), 1, 1), x);
  ProfileResult r = Profiler::stop();
  EXPECT_TRUE(r.counts_launches);
  EXPECT_GE(r.engine_kernels, 1u);  // add
  EXPECT_GE(r.library_calls, 1u);   // cudnnConvolutionForward
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.records[0].name, "conv2d");
  EXPECT_EQ(r.records[1].name, "add");
  for (const OpRecord& rec : r.records) {
    EXPECT_GT(rec.ms, 0.0) << rec.name;
    EXPECT_TRUE(rec.device.is_cuda());
  }
  EXPECT_GT(r.total_ms, 0.0);
  EXPECT_LE(r.op_ms(), r.total_ms * 1.001);
#endif
}

}  // namespace
}  // namespace ddpm
