// Small host-to-device uploads through the pinned staging ring (kernels/cuda/staging.h):
// they arrive intact when the host runs far ahead of the GPU and slots are reused, and they
// do not wait for the kernels queued before them.
#include <gtest/gtest.h>

#include <vector>

#include "engine/ops/linalg.h"
#include "engine/tensor.h"
#include "support/gradcheck.h"
#if DDPM_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/context.h"
#include "kernels/cuda/staging.h"
#endif

namespace ddpm {
namespace {
#if DDPM_HAVE_CUDA

// Work that keeps the stream busy for milliseconds: an fp32 GEMM of 2 x 4096^3 flops.
Tensor busy_work() {
  Tensor a = Tensor::full({4096, 4096}, 1.0, DType::f32, Device::cuda());
  return matmul(a, a);
}
#endif

TEST(StagingGpu, ManyUploadsArriveIntactAcrossSlotReuse) {
  DDPM_REQUIRE_CUDA();
#if DDPM_HAVE_CUDA
  const cuda::StagingStats before = cuda::staging_stats();
  Tensor keep = busy_work();  // the uploads below queue behind it
  const int count = 3 * cuda::kStagingSlots;  // every slot is reused twice
  std::vector<Tensor> uploaded;
  for (int i = 0; i < count; ++i) {
    std::vector<float> v(static_cast<std::size_t>(1 + i % 200));
    for (std::size_t j = 0; j < v.size(); ++j) v[j] = static_cast<float>(i * 1000 + static_cast<int>(j));
    uploaded.push_back(Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())}, Device::cuda()));
  }  // each v is gone before its copy necessarily ran: the ring holds the bytes
  for (int i = 0; i < count; ++i) {
    const std::vector<float> got = uploaded[static_cast<std::size_t>(i)].cpu().to_vector();
    ASSERT_EQ(got.size(), static_cast<std::size_t>(1 + i % 200));
    for (std::size_t j = 0; j < got.size(); ++j)
      ASSERT_EQ(got[j], static_cast<float>(i * 1000 + static_cast<int>(j))) << "upload " << i << " element " << j;
  }
  EXPECT_EQ(cuda::staging_stats().staged - before.staged, static_cast<unsigned long long>(count));
#endif
}

TEST(StagingGpu, SmallUploadDoesNotWaitForQueuedKernels) {
  DDPM_REQUIRE_CUDA();
#if DDPM_HAVE_CUDA
  Tensor warm = busy_work();  // cuBLAS initialised, pool warm
  cuda::synchronize();
  Tensor keep = busy_work();  // milliseconds of queued work
  Tensor t = Tensor::from_vector(std::vector<float>{1.f, 2.f, 3.f}, {3}, Device::cuda());
  // Had the upload waited, the GEMM before it would be done and the stream idle.
  EXPECT_EQ(cudaStreamQuery(cuda::stream()), cudaErrorNotReady);
  cuda::synchronize();
  EXPECT_EQ(t.cpu().to_vector(), (std::vector<float>{1.f, 2.f, 3.f}));
#endif
}

TEST(StagingGpu, LargeUploadTakesThePlainPath) {
  DDPM_REQUIRE_CUDA();
#if DDPM_HAVE_CUDA
  const cuda::StagingStats before = cuda::staging_stats();
  std::vector<float> v(cuda::kStagingSlotBytes / sizeof(float) + 1);
  for (std::size_t j = 0; j < v.size(); ++j) v[j] = static_cast<float>(j) * 0.5f;
  Tensor t = Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())}, Device::cuda());
  EXPECT_EQ(cuda::staging_stats().staged, before.staged);
  EXPECT_EQ(t.cpu().to_vector(), v);
#endif
}

}  // namespace
}  // namespace ddpm
