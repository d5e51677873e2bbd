// conv2d on CUDA (cuDNN, fp32) against the CPU reference at UNet shapes, forward and the
// three gradients, for 3x3 padding 1, 1x1 and 3x3 stride 2 padding 1; under both algorithm
// searches (benchmark, the default, and heuristic), with TF32 allowed (engine/math_mode.h),
// and switching TF32 off again.
//
// The reference runs in f64 on the CPU on the very same inputs (rounded to f32 first), so
// the differences measured are the GPU's fp32 rounding alone. Inputs are N(0,1) and the
// weights N(0, 1/fan_in) as at initialization, so outputs and data gradients are O(1);
// the filter and bias gradients sum N*Ho*Wo terms and are O(sqrt(N*Ho*Wo)), hence their
// larger absolute tolerance.
//
// TF32 tolerance. With TF32 each input of a product keeps 10 mantissa bits: a relative error
// of up to 2^-11 ~ 4.9e-4 when rounded, up to 2^-10 ~ 9.8e-4 (biased toward zero) when
// truncated, as some tensor-core kernels do. An output sum_i x_i w_i of K such products then
// errs by about (2^-11..2^-10) * |output| systematically plus ~3e-4 * rms(output) at random;
// over 10^5 outputs (4.5 sigma) the largest error stays below ~1.5e-3 of the largest |output|.
// The checks: max |error| <= 3e-3 * max |reference| and NMSE <= 1e-5 (rms error <= ~3e-3 of
// the rms output), for the outputs and all three gradients alike (each relative to its own
// scale, so the O(64) filter gradient is covered by the same numbers).
#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/math_mode.h"
#include "engine/ops/conv.h"
#include "support/gradcheck.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/conv2d.h"
#endif

namespace ddpm {
namespace {

using testing::all_close;
using testing::same_bits;
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

// The CUDA results of one case: output and the three gradients.
struct GpuResults {
  Tensor y, gx, gw, gb;
};

// Not testing::check_against_cpu: that one runs the reference in f32, while this one runs it
// in f64 on the f32-rounded inputs (see the top of the file), with an optional bias.
// tf32: compare at the TF32 tolerance instead of fp32's. Returns the CUDA results (on the host).
GpuResults check_case(const GpuCase& c, bool with_bias, std::uint64_t seed, bool tf32 = false) {
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
  GpuResults r;
  EXPECT_EQ(out_g.shape(), out_c.shape());
  if (out_g.shape() != out_c.shape()) return r;
  Tensor gy = random_tensor(out_c.shape(), seed + 3, DType::f32);
  out_c.backward(gy.to(DType::f64));
  out_g.backward(gy.to(Device::cuda()));
  r.y = out_g.to(Device::cpu());
  r.gx = xg.grad().to(Device::cpu());
  r.gw = wg.grad().to(Device::cpu());
  if (with_bias) r.gb = bg.grad().to(Device::cpu());

  if (tf32) {
    const double rel = 3e-3, nmse = 1e-5;  // see "TF32 tolerance" at the top
    EXPECT_TRUE(testing::within_scale(r.y, out_c, rel, nmse)) << "forward (TF32)";
    EXPECT_TRUE(testing::within_scale(r.gx, xc.grad(), rel, nmse)) << "gradient of x (TF32)";
    EXPECT_TRUE(testing::within_scale(r.gw, wc.grad(), rel, nmse)) << "gradient of weight (TF32)";
    if (with_bias) EXPECT_TRUE(testing::within_scale(r.gb, bc.grad(), rel, nmse)) << "gradient of bias (TF32)";
    return r;
  }
  EXPECT_TRUE(all_close(r.y, out_c, 1e-4, 1e-4)) << "forward";
  // Data gradient: sums of cout*kh*kw terms g*w, O(1).
  EXPECT_TRUE(all_close(r.gx, xc.grad(), 1e-4, 1e-4)) << "gradient of x";
  // Filter and bias gradients: sums of N*Ho*Wo (up to 4096) terms, O(sqrt(4096)) = O(64).
  EXPECT_TRUE(all_close(r.gw, wc.grad(), 2e-3, 1e-4)) << "gradient of weight";
  if (with_bias) EXPECT_TRUE(all_close(r.gb, bc.grad(), 2e-3, 1e-4)) << "gradient of bias";
  return r;
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

TEST(Conv2dGpu, HeuristicAlgorithmSearch) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_conv_algo_search(ConvAlgoSearch::heuristic);
  std::uint64_t seed = 3000;
  for (const auto& c : kUnetCases) {
    SCOPED_TRACE(c.name);
    check_case(c, true, seed += 10);
  }
}

TEST(Conv2dGpu, Tf32ForwardAndGradientsWithinTf32Tolerance) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(true);
  std::uint64_t seed = 4000;
  for (const auto& c : kUnetCases) {
    SCOPED_TRACE(c.name);
    check_case(c, true, seed += 10, /*tf32=*/true);
  }
  set_conv_algo_search(ConvAlgoSearch::heuristic);
  check_case(kUnetCases[0], true, 4500, /*tf32=*/true);
  check_case(kUnetCases[3], false, 4510, /*tf32=*/true);
}

TEST(Conv2dGpu, SwitchingTf32OffRestoresFp32Results) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  for (int i : {0, 3, 5}) {
    const GpuCase& c = kUnetCases[i];
    SCOPED_TRACE(c.name);
    set_allow_tf32(false);
    GpuResults before = check_case(c, true, 5000 + i);
    set_allow_tf32(true);
    check_case(c, true, 5000 + i, /*tf32=*/true);
    set_allow_tf32(false);
    GpuResults after = check_case(c, true, 5000 + i);  // fp32 tolerance again
    // The fp32 plan is cached and its algorithms deterministic: the very same bits.
    EXPECT_TRUE(same_bits(after.y, before.y)) << "forward";
    EXPECT_TRUE(same_bits(after.gx, before.gx)) << "gradient of x";
    EXPECT_TRUE(same_bits(after.gw, before.gw)) << "gradient of weight";
    EXPECT_TRUE(same_bits(after.gb, before.gb)) << "gradient of bias";
  }
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
  {
    MathModeScope restore;
    set_allow_tf32(true);  // the math mode is part of the key: a TF32 plan beside the fp32 one
    conv2d(x, w, Tensor(), 1, 1);
    EXPECT_EQ(cuda::conv2d_plan_count(), after_first + 2);
  }
  conv2d(x, w, Tensor(), 1, 1);  // fp32 again: the first plan, from the cache
  EXPECT_EQ(cuda::conv2d_plan_count(), after_first + 2);
}

// The default settings choose deterministic algorithms for every direction at every UNet
// shape (the guarantee engine/math_mode.h documents), and report them.
TEST(Conv2dGpu, DefaultAlgorithmsAreDeterministicAndBenchmarked) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  for (bool tf32 : {false, true}) {
    set_allow_tf32(tf32);
    for (const auto& c : kUnetCases) {
      SCOPED_TRACE(std::string(c.name) + (tf32 ? " tf32" : " fp32"));
      Tensor x = random_tensor(c.x, 6, DType::f32).to(Device::cuda()).set_requires_grad(true);
      Tensor w = random_tensor(c.w, 7, DType::f32).to(Device::cuda()).set_requires_grad(true);
      Tensor y = conv2d(x, w, Tensor(), c.stride, c.pad);
      y.backward(Tensor::full(y.shape(), 1.0, DType::f32, Device::cuda()));
      Conv2dGeometry g = make_conv2d_geometry(c.x[0], c.x[1], c.x[2], c.x[3], c.w[0], c.w[1], c.w[2], c.stride, c.pad);
      cuda::Conv2dPlanInfo info = cuda::conv2d_plan_info(g);
      std::cout << "    [plan] " << c.name << (tf32 ? " tf32: " : " fp32: ") << info.str() << "\n";
      ASSERT_TRUE(info.exists);
      EXPECT_TRUE(info.forward.chosen && info.backward_data.chosen && info.backward_filter.chosen);
      EXPECT_TRUE(info.deterministic());
      EXPECT_TRUE(info.forward.benchmarked);
      if (!tf32) EXPECT_FALSE(info.forward.tf32_permitted || info.backward_data.tf32_permitted ||
                              info.backward_filter.tf32_permitted);
    }
  }
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
