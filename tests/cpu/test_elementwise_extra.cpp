// The elementwise ops added for the diffusion math: tanh, sigmoid, clamp (min, max, both)
// and the comparison masks. Forward values against <cmath>, gradients by finite
// differences in double, and the clamp rule at and beyond the bounds.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;
using testing::param;

TEST(ElementwiseExtra, TanhAndSigmoidValues) {
  std::vector<double> xs{-3.0, -0.5, 0.0, 0.25, 4.0};
  Tensor x = Tensor::from_vector(xs, {5});
  std::vector<double> th = tanh(x).to_double_vector(), sg = sigmoid(x).to_double_vector();
  for (std::size_t i = 0; i < xs.size(); ++i) {
    EXPECT_NEAR(th[i], std::tanh(xs[i]), 1e-15);
    EXPECT_NEAR(sg[i], 1.0 / (1.0 + std::exp(-xs[i])), 1e-15);
  }
}

TEST(ElementwiseExtra, TanhAndSigmoidGradients) {
  Tensor x = param(random_tensor({3, 4, 2}, 11, DType::f64, 2.0));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return tanh(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return sigmoid(in[0]); }, {x}));
}

TEST(ElementwiseExtra, ClampValuesAndGradientRule) {
  Tensor x = param(Tensor::from_vector(std::vector<double>{-2.0, -1.0, -0.3, 0.0, 0.7, 1.0, 3.0}, {7}));
  Tensor y = clamp(x, -1.0, 1.0);
  EXPECT_EQ(y.to_double_vector(), (std::vector<double>{-1.0, -1.0, -0.3, 0.0, 0.7, 1.0, 1.0}));
  y.backward(Tensor::full({7}, 1.0, DType::f64));
  // Inside the closed range [-1, 1] the gradient passes; outside it is 0.
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{0, 1, 1, 1, 1, 1, 0}));
  EXPECT_EQ(clamp_min(x, 0.5).to_double_vector(), (std::vector<double>{0.5, 0.5, 0.5, 0.5, 0.7, 1.0, 3.0}));
  EXPECT_EQ(clamp_max(x, -0.5).to_double_vector(), (std::vector<double>{-2.0, -1.0, -0.5, -0.5, -0.5, -0.5, -0.5}));
  std::vector<double> nan_in = clamp(Tensor::from_vector(std::vector<double>{NAN}, {1}), -1, 1).to_double_vector();
  EXPECT_TRUE(std::isnan(nan_in[0])) << "clamp must not hide NaN";
  EXPECT_THROW(clamp(x, 1.0, -1.0), ValueError);
}

TEST(ElementwiseExtra, ClampGradcheckAwayFromTheBounds) {
  // Values spread over [-2, 2] but none within 1e-3 of the bounds +-0.8 (the kink).
  std::vector<double> v;
  for (int i = 0; i < 24; ++i) v.push_back(-2.0 + 4.0 * (i + 0.37) / 24.0);
  Tensor x = param(Tensor::from_vector(v, {2, 3, 4}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return clamp(in[0], -0.8, 0.8); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return clamp_min(in[0], 0.1); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return clamp_max(in[0], -0.1); }, {x}));
}

TEST(ElementwiseExtra, ComparisonMasksAreConstants) {
  Tensor x = param(Tensor::from_vector(std::vector<double>{-1.0, 0.0, 0.5, 2.0}, {4}));
  Tensor gt = greater_than(x, 0.0), lt = less_than(x, 0.5);
  EXPECT_EQ(gt.to_double_vector(), (std::vector<double>{0, 0, 1, 1}));
  EXPECT_EQ(lt.to_double_vector(), (std::vector<double>{1, 1, 0, 0}));
  EXPECT_EQ(gt.dtype(), DType::f64);
  EXPECT_FALSE(gt.requires_grad()) << "a mask is not on the tape";
  // A mask times a function of x: the gradient flows only through the function.
  Tensor y = mul(greater_than(x, 0.0), square(x));
  y.backward(Tensor::full({4}, 1.0, DType::f64));
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{0, 0, 1.0, 4.0}));
}

}  // namespace
}  // namespace ddpm
