// The exact (erf) GELU on the CPU: values against the standard normal CDF from tables (not
// from the code under test), the finite-difference gradient in double over the whole
// range (tails included, where dy/dx leaves [0, 1]), and f32 against f64.
#include <vector>

#include <gtest/gtest.h>

#include "engine/ops/elementwise.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::gradcheck;
using testing::Inputs;
using testing::param;
using testing::random_tensor;

TEST(Gelu, ValuesAreXTimesTheNormalCdf) {
  // Phi(1) = 0.8413447460685429, Phi(2) = 0.9772498680518208, Phi(0.5) = 0.6914624612740131
  // (standard normal table; also PyTorch's torch.nn.functional.gelu at these points).
  Tensor x = Tensor::from_vector(std::vector<double>{0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -8.0, 8.0}, {8});
  const std::vector<double> expected{0.0,
                                     0.8413447460685429,
                                     -1.0 * (1 - 0.8413447460685429),
                                     2.0 * 0.9772498680518208,
                                     -2.0 * (1 - 0.9772498680518208),
                                     0.5 * 0.6914624612740131,
                                     0.0,   // -8 Phi(-8) ~ -5e-15
                                     8.0};  // 8 Phi(8) = 8 - 5e-15
  std::vector<double> y = gelu(x).to_double_vector();
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], expected[i], 1e-14) << "x = " << i;
}

TEST(Gelu, GradientMatchesFiniteDifferences) {
  // Spread over [-6, 6]: dy/dx = Phi + x phi dips below 0 near x = -0.75 and exceeds 1 near 0.75.
  Tensor x = param(random_tensor({4, 7}, 51, DType::f64, 2.5));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return gelu(in[0]); }, {x}));
  Tensor fixed = param(Tensor::from_vector(std::vector<double>{-6, -3, -0.75, 0, 0.75, 3, 6}, {7}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return gelu(in[0]); }, {fixed}));
}

TEST(Gelu, Float32AgreesWithFloat64) {
  Tensor x = random_tensor({3, 50}, 52, DType::f64, 3.0);
  Tensor y32 = gelu(x.to(DType::f32));
  EXPECT_EQ(y32.dtype(), DType::f32);
  EXPECT_TRUE(testing::all_close(y32, gelu(x), 1e-6, 1e-6));
}

}  // namespace
}  // namespace ddpm
