// The UNet's data-movement and embedding ops on CUDA against the CPU reference, forward
// and backward, at UNet shapes: 2x resampling, concat/split/slice, timestep and class
// embeddings, and dropout (whose masks must be bit-equal across devices).
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/dropout.h"
#include "engine/ops/embedding.h"
#include "engine/ops/resample.h"
#include "engine/rng.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::all_close;
using testing::check_against_cpu;
using testing::CudaCheck;
using testing::random_tensor;

// Exact agreement, and the CUDA run's output must be on the device.
const CudaCheck kExact = [] {
  CudaCheck c{{0, 0}};
  c.expect_cuda_output = true;
  return c;
}();

// Same sums in the same order on both devices: resampling and copies are exact.
TEST(ResampleGpu, UpsampleAndAvgPool) {
  DDPM_REQUIRE_CUDA();
  Tensor x = random_tensor({4, 16, 16, 256}, 1);
  check_against_cpu([](const auto& in) { return upsample_nearest2x(in[0]); }, {x}, kExact);
  check_against_cpu([](const auto& in) { return avg_pool2x(in[0]); }, {x}, kExact);
  // C not a multiple of 4 takes the scalar path of the kernels.
  Tensor odd = random_tensor({2, 8, 6, 3}, 2);
  check_against_cpu([](const auto& in) { return upsample_nearest2x(in[0]); }, {odd}, kExact);
  check_against_cpu([](const auto& in) { return avg_pool2x(in[0]); }, {odd}, kExact);
}

TEST(ResampleGpu, ConcatSplitSlice) {
  DDPM_REQUIRE_CUDA();
  Tensor h = random_tensor({4, 16, 16, 256}, 3), skip = random_tensor({4, 16, 16, 128}, 4);
  check_against_cpu([](const auto& in) { return concat({in[0], in[1]}, -1); }, {h, skip}, kExact);
  Tensor a = random_tensor({2, 16, 16, 64}, 5), b = random_tensor({3, 16, 16, 64}, 6);
  check_against_cpu([](const auto& in) { return concat({in[0], in[1]}, 0); }, {a, b}, kExact);
  Tensor c = random_tensor({4, 8, 16, 64}, 7);
  check_against_cpu([](const auto& in) { return concat({in[0], in[1]}, 1); }, {c, c}, kExact);
  for (int axis : {0, 1, 3}) {
    SCOPED_TRACE(axis);
    check_against_cpu([axis](const auto& in) { return slice(in[0], axis, 1, 2); }, {h}, kExact);
    check_against_cpu(
        [axis](const auto& in) {
          std::vector<Tensor> p = split(in[0], {1, in[0].dim(axis) - 1}, axis);
          return concat({p[1], p[0]}, axis);
        },
        {h}, kExact);
  }
}

TEST(ResampleGpu, TimestepEmbedding) {
  DDPM_REQUIRE_CUDA();
  std::vector<double> ts;
  for (int i = 0; i < 128; ++i) ts.push_back(i * 7.8125 + 0.25 * (i % 3));  // 0 .. ~992, some non-integer
  Tensor t = Tensor::from_vector(ts, {128}, DType::f32);
  for (auto style : {TimestepEmbeddingStyle::ddpm, TimestepEmbeddingStyle::improved})
    for (int dim : {512, 129}) {
      SCOPED_TRACE(std::string(timestep_embedding_style_name(style)) + " " + std::to_string(dim));
      Tensor e_c = timestep_embedding(t, dim, style);
      Tensor e_g = timestep_embedding(t.to(Device::cuda()), dim, style);
      // Both computed in double and rounded once to float: at most one float ulp apart.
      EXPECT_TRUE(all_close(e_g, e_c, 1e-7, 1e-6));
    }
}

TEST(ResampleGpu, ClassEmbedding) {
  DDPM_REQUIRE_CUDA();
  Tensor table = random_tensor({1000, 512}, 8);
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 128; ++i) ids.push_back((i * 37) % 1000);
  ids[5] = ids[77] = ids[100] = 3;  // repeated ids accumulate in the same order on both devices
  check_against_cpu([ids](const auto& in) { return embedding(in[0], ids); }, {table}, kExact);
  EXPECT_THROW(embedding(table.to(DType::f32).to(Device::cuda()), {1000}), ValueError);
}

TEST(ResampleGpu, DropoutMasksAreBitEqual) {
  DDPM_REQUIRE_CUDA();
  Tensor x = random_tensor({4, 16, 16, 256}, 9, DType::f32);
  for (double p : {0.1, 0.3}) {
    SCOPED_TRACE(p);
    Generator gen_c(2024, 12), gen_g(2024, 12);
    Tensor xc = x.clone().set_requires_grad(true), xg = x.to(Device::cuda()).set_requires_grad(true);
    Tensor yc = dropout(xc, p, gen_c, true), yg = dropout(xg, p, gen_g, true);
    EXPECT_EQ(gen_c.offset(), gen_g.offset());
    EXPECT_EQ(yg.to_vector(), yc.to_vector());  // same mask, same float multiply
    Tensor w = random_tensor(x.shape(), 10, DType::f32);
    yc.backward(w);
    yg.backward(w.to(Device::cuda()));
    EXPECT_EQ(xg.grad().to_vector(), xc.grad().to_vector());
  }
}

}  // namespace
}  // namespace ddpm
