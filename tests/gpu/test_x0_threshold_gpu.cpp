// models/diffusion/x0_threshold.h on CUDA against the CPU reference: apply_x0_threshold's
// static clamp and Imagen's dynamic thresholding (per-sample s_n, then clamp(x / s_n, -1, 1))
// on f32 batches of several ranks, where the rows of one batch need different s_n (one inside
// [-1, 1], so s_n = 1, and others pushed out by different factors), with and without the cap S.
#include <cmath>
#include <limits>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "engine/device.h"
#include "models/diffusion/x0_threshold.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using diffusion::X0Threshold;
using testing::check_against_cpu;
using testing::CudaCheck;

// Standard normal values, row n multiplied by row_scales[n % size]: row 0 (0.25) stays inside
// [-1, 1] for the small per-row sizes below (its s_n is 1: the static clamp), the others leave
// it by different amounts (different s_n).
Tensor batch(const Shape& shape, std::uint64_t seed) {
  const std::vector<double> row_scales = {0.25, 1.0, 3.0, 0.6, 7.5};
  std::vector<double> v = testing::random_tensor(shape, seed).to_double_vector();
  const std::size_t per_row = v.size() / static_cast<std::size_t>(shape[0]);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] *= row_scales[(i / per_row) % row_scales.size()];
  return Tensor::from_vector(v, shape, DType::f32);
}

// The clamp moves values exactly; the division by s_n (the same f64 s_n rounded to f32 on both
// devices) is one correctly rounded operation per element, so the results agree to an ulp.
CudaCheck check_with(testing::Tolerance t) {
  CudaCheck c{t};
  c.needs_grad = {false};  // a sampler-side op: no gradient
  c.expect_cuda_output = true;
  return c;
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{5}, {3, 7}, {4, 6, 6, 3}, {5, 16, 16, 4}, {2, 33, 1}};
  return s;
}

TEST(X0ThresholdGpu, StaticClampMatchesCpuExactly) {
  DDPM_REQUIRE_CUDA();
  for (std::size_t k = 0; k < shapes().size(); ++k) {
    SCOPED_TRACE(::testing::Message() << "shape " << k);
    check_against_cpu([](const auto& in) { return diffusion::apply_x0_threshold(in[0], X0Threshold::static_clip()); },
                      {batch(shapes()[k], 10 + k)}, check_with({0, 0}));
  }
}

TEST(X0ThresholdGpu, DynamicMatchesCpu) {
  DDPM_REQUIRE_CUDA();
  const double inf = std::numeric_limits<double>::infinity();
  for (const X0Threshold& policy : {X0Threshold::dynamic(0.995), X0Threshold::dynamic(0.9), X0Threshold::dynamic(1.0),
                                    X0Threshold::dynamic(0.995, 2.0), X0Threshold::dynamic(0.5, inf)}) {
    for (std::size_t k = 0; k < shapes().size(); ++k) {
      SCOPED_TRACE(::testing::Message() << "p " << policy.percentile << ", S " << policy.max_scale << ", shape " << k);
      const Tensor x = batch(shapes()[k], 20 + k);
      check_against_cpu([policy](const auto& in) { return diffusion::apply_x0_threshold(in[0], policy); }, {x},
                        check_with({1e-7, 2e-7}));
      // The scales are computed on the host from the same f32 values: identical on both devices.
      const std::vector<double> s_cpu = diffusion::dynamic_threshold_scales(x, policy.percentile, policy.max_scale);
      const std::vector<double> s_gpu =
          diffusion::dynamic_threshold_scales(x.to(Device::cuda()), policy.percentile, policy.max_scale);
      EXPECT_EQ(s_cpu, s_gpu);
    }
  }
}

// The case the test is about: one batch whose rows need different s_n, including s_n = 1.
TEST(X0ThresholdGpu, RowsWithDifferentScales) {
  DDPM_REQUIRE_CUDA();
  const Tensor x = batch({5, 8, 8, 3}, 3);
  const std::vector<double> s = diffusion::dynamic_threshold_scales(x, 0.995, std::numeric_limits<double>::infinity());
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0], 1.0);  // inside [-1, 1]: the static clamp
  EXPECT_GT(s[2], 1.0);
  EXPECT_GT(s[4], s[2]);  // pushed out further, squeezed harder
  check_against_cpu([](const auto& in) { return diffusion::apply_x0_threshold(in[0], X0Threshold::dynamic(0.995)); },
                    {x}, check_with({1e-7, 2e-7}));
  // Row 0 under dynamic thresholding is bit-identical to the static clamp, on CUDA too.
  const std::vector<float> dyn = diffusion::apply_x0_threshold(x.to(Device::cuda()), X0Threshold::dynamic(0.995)).to_vector();
  const std::vector<float> clamp = diffusion::apply_x0_threshold(x.to(Device::cuda()), X0Threshold::static_clip()).to_vector();
  for (std::size_t i = 0; i < 8 * 8 * 3; ++i) ASSERT_EQ(dyn[i], clamp[i]) << i;
}

}  // namespace
}  // namespace ddpm
