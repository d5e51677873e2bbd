// conv2d on CUDA (cuDNN, fp32) against the CPU reference at UNet shapes, forward and the
// three gradients, for 3x3 padding 1, 1x1 and 3x3 stride 2 padding 1.
//
// The reference runs in f64 on the CPU on the very same inputs (rounded to f32 first), so
// the differences measured are the GPU's fp32 rounding alone. Inputs are N(0,1) and the
// weights N(0, 1/fan_in) as at initialization, so outputs and data gradients are O(1);
// the filter and bias gradients sum N*Ho*Wo terms and are O(sqrt(N*Ho*Wo)), hence their
// larger absolute tolerance.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/conv.h"
#include "support/gradcheck.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/conv2d.h"
#endif

namespace ddpm {
namespace {

using testing::all_close;
using testing::random_tensor;

struct GpuCase {
  const char* name;
  Shape x, w;
  int stride, pad;
};

const GpuCase kUnetCases[] = {
    {"3x3_pad1_32x32_c64", {4, 32, 32, 64}, {64, 3, 3, 64}, 1, 1},
    {"3x3_pad1_16x16_c128_to_256", {2, 16, 16, 128}, {256, 3, 3, 128}, 1, 1},
    {"3x3_pad1_8x8_c256", {2, 8, 8, 256}, {256, 3, 3, 256}, 1, 1},
    {"1x1_16x16_c128_to_64", {4, 16, 16, 128}, {64, 1, 1, 128}, 1, 0},
    {"1x1_8x8_c256_to_128", {2, 8, 8, 256}, {128, 1, 1, 256}, 1, 0},
    {"3x3_stride2_32x32_c64", {4, 32, 32, 64}, {64, 3, 3, 64}, 2, 1},
    {"3x3_stride2_16x16_c128", {2, 16, 16, 128}, {128, 3, 3, 128}, 2, 1},
    {"3x3_stride2_odd_15x15_c64", {2, 15, 15, 64}, {64, 3, 3, 64}, 2, 1},
};

// Not testing::check_against_cpu: that one runs the reference in f32, while this one runs it
// in f64 on the f32-rounded inputs (see the top of the file), with an optional bias.
void check_case(const GpuCase& c, bool with_bias, std::uint64_t seed) {
  const double fan_in = static_cast<double>(c.w[1] * c.w[2] * c.w[3]);
  // Shared inputs, rounded to f32 once; the reference sees the same values in f64.
  Tensor x32 = random_tensor(c.x, seed, DType::f32);
  Tensor w32 = random_tensor(c.w, seed + 1, DType::f32, 1.0 / std::sqrt(fan_in));
  Tensor b32 = random_tensor({c.w[0]}, seed + 2, DType::f32, 0.1);

  Tensor xc = x32.to(DType::f64).set_requires_grad(true);
  Tensor wc = w32.to(DType::f64).set_requires_grad(true);
  Tensor bc = with_bias ? b32.to(DType::f64).set_requires_grad(true) : Tensor();
  Tensor xg = x32.to(Device::cuda()).set_requires_grad(true);
  Tensor wg = w32.to(Device::cuda()).set_requires_grad(true);
  Tensor bg = with_bias ? b32.to(Device::cuda()).set_requires_grad(true) : Tensor();

  Tensor out_c = conv2d(xc, wc, bc, c.stride, c.pad);
  Tensor out_g = conv2d(xg, wg, bg, c.stride, c.pad);
  ASSERT_EQ(out_g.shape(), out_c.shape());
  EXPECT_TRUE(all_close(out_g, out_c, 1e-4, 1e-4)) << "forward";

  Tensor gy = random_tensor(out_c.shape(), seed + 3, DType::f32);
  out_c.backward(gy.to(DType::f64));
  out_g.backward(gy.to(Device::cuda()));
  // Data gradient: sums of cout*kh*kw terms g*w, O(1).
  EXPECT_TRUE(all_close(xg.grad(), xc.grad(), 1e-4, 1e-4)) << "gradient of x";
  // Filter and bias gradients: sums of N*Ho*Wo (up to 4096) terms, O(sqrt(4096)) = O(64).
  EXPECT_TRUE(all_close(wg.grad(), wc.grad(), 2e-3, 1e-4)) << "gradient of weight";
  if (with_bias) EXPECT_TRUE(all_close(bg.grad(), bc.grad(), 2e-3, 1e-4)) << "gradient of bias";
}

TEST(Conv2dGpu, UnetShapesForwardAndGradientsWithBias) {
  DDPM_REQUIRE_CUDA();
  std::uint64_t seed = 1000;
  for (const auto& c : kUnetCases) {
    SCOPED_TRACE(c.name);
    check_case(c, true, seed += 10);
  }
}

TEST(Conv2dGpu, WithoutBias) {
  DDPM_REQUIRE_CUDA();
  check_case(kUnetCases[0], false, 2000);
  check_case(kUnetCases[3], false, 2010);
  check_case(kUnetCases[5], false, 2020);
}

#if DDPM_HAVE_CUDA
TEST(Conv2dGpu, PlansAreCachedPerShape) {
  DDPM_REQUIRE_CUDA();
  Tensor x = random_tensor({2, 8, 8, 32}, 5, DType::f32).to(Device::cuda());
  Tensor w = random_tensor({48, 3, 3, 32}, 6, DType::f32).to(Device::cuda());
  conv2d(x, w, Tensor(), 1, 1);
  std::size_t after_first = cuda::conv2d_plan_count();
  for (int i = 0; i < 3; ++i) conv2d(x, w, Tensor(), 1, 1);
  EXPECT_EQ(cuda::conv2d_plan_count(), after_first);
  conv2d(x, w, Tensor(), 2, 1);  // a new geometry gets a new plan
  EXPECT_EQ(cuda::conv2d_plan_count(), after_first + 1);
}
#endif

TEST(Conv2dGpu, MixingDevicesIsAClearError) {
  DDPM_REQUIRE_CUDA();
  Tensor x = Tensor::zeros({1, 4, 4, 8}, DType::f32, Device::cuda());
  Tensor w = Tensor::zeros({8, 3, 3, 8});
  EXPECT_THROW(conv2d(x, w, Tensor(), 1, 1), ValueError);
  EXPECT_THROW(conv2d(x, w.to(Device::cuda()), Tensor::zeros({8}), 1, 1), ValueError);
}

}  // namespace
}  // namespace ddpm
