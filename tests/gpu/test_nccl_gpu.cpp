// The NCCL communicator (engine/dist/nccl.h) at world 1 on one GPU (ncclCommInitAll over a
// single device): an all-reduce of a CUDA buffer, in f32 and f64, on the engine's stream,
// must return the buffer unchanged (a sum over one rank is the value), and a broadcast from
// root 0 likewise; bad arguments are ValueErrors. The multi-rank path is the same calls with
// ncclCommInitRank; the data-parallel trainer's CPU tests (tests/dist) cover the semantics.
#include <vector>

#include <gtest/gtest.h>

#include "engine/dist/nccl.h"
#include "engine/error.h"
#include "engine/tensor.h"
#include "support/gradcheck.h"

#if DDPM_HAVE_CUDA
#include "kernels/cuda/context.h"
#endif

namespace ddpm::dist {
namespace {

TEST(NcclGpu, WorldOneAllReduceAndBroadcastKeepTheBuffer) {
  DDPM_REQUIRE_CUDA();
#if DDPM_HAVE_CUDA
  ASSERT_TRUE(nccl_compiled());
  std::unique_ptr<NcclComm> nccl = NcclComm::single_device(cuda::current_device());
  EXPECT_EQ(nccl->world_size(), 1);
  EXPECT_EQ(nccl->rank(), 0);

  std::vector<float> host(10007);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = 0.001f * static_cast<float>(i) - 3.0f;
  Tensor x = Tensor::from_vector(host, {static_cast<std::int64_t>(host.size())}, Device::cuda(cuda::current_device()));
  nccl->all_reduce_sum(x.raw_data(), x.numel(), DType::f32);
  EXPECT_EQ(x.to_vector(), host);  // ordered on the stream: to_vector reads after the reduction

  // f64 buffers (engine tensors on CUDA are f32, so a plain device allocation).
  const std::vector<double> dh{1.0 / 3.0, -2.5, 1e300};
  void* dd = nullptr;
  ASSERT_EQ(cudaMalloc(&dd, dh.size() * sizeof(double)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dd, dh.data(), dh.size() * sizeof(double), cudaMemcpyHostToDevice), cudaSuccess);
  nccl->all_reduce_sum(dd, static_cast<std::int64_t>(dh.size()), DType::f64);
  cuda::synchronize();
  std::vector<double> back(dh.size());
  ASSERT_EQ(cudaMemcpy(back.data(), dd, dh.size() * sizeof(double), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dd);
  EXPECT_EQ(back, dh);

  nccl->broadcast(x.raw_data(), x.nbytes(), 0);
  EXPECT_EQ(x.to_vector(), host);

  EXPECT_THROW(nccl->all_reduce_sum(x.raw_data(), -1, DType::f32), ValueError);
  EXPECT_THROW(nccl->all_reduce_sum(x.raw_data(), 1, DType::bf16), ValueError);
  EXPECT_THROW(nccl->broadcast(x.raw_data(), 4, 1), ValueError);
#endif
}

}  // namespace
}  // namespace ddpm::dist
