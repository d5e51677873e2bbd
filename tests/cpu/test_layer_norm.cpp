// LayerNorm over the last axis on the CPU: finite-difference gradients in double of x,
// gamma and beta at several shapes (odd C, C = 1, rank 1 to 4), forward values against a
// computation written here from the definition, the zero-mean / unit-variance property,
// and the error messages.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/layer_norm.h"
#include "support/gradcheck.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using testing::expect_value_error;
using testing::gradcheck;
using testing::Inputs;
using testing::param;
using testing::random_tensor;

// y for every row of x [R, C] straight from the definition: mean, biased variance, eps
// inside the square root.
std::vector<double> naive_layer_norm(const std::vector<double>& x, std::int64_t C, const std::vector<double>& gamma,
                                     const std::vector<double>& beta, double eps) {
  std::vector<double> y(x.size());
  const std::int64_t R = static_cast<std::int64_t>(x.size()) / C;
  for (std::int64_t r = 0; r < R; ++r) {
    double mu = 0, var = 0;
    for (std::int64_t c = 0; c < C; ++c) mu += x[static_cast<std::size_t>(r * C + c)];
    mu /= static_cast<double>(C);
    for (std::int64_t c = 0; c < C; ++c) {
      const double d = x[static_cast<std::size_t>(r * C + c)] - mu;
      var += d * d;
    }
    var /= static_cast<double>(C);
    for (std::int64_t c = 0; c < C; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * C + c), cu = static_cast<std::size_t>(c);
      y[i] = (x[i] - mu) / std::sqrt(var + eps) * gamma[cu] + beta[cu];
    }
  }
  return y;
}

TEST(LayerNormGrad, XGammaBetaAtSeveralShapes) {
  // Tokens [N, L, C] with an odd C, an image-like rank 4, a single row, and C = 1 (xhat = 0:
  // dx must vanish and dgamma too).
  const Shape shapes[] = {{2, 3, 7}, {2, 2, 3, 4}, {5}, {3, 1}, {4, 9}};
  std::uint64_t seed = 100;
  for (const Shape& s : shapes) {
    SCOPED_TRACE("x " + shape_str(s));
    const std::int64_t C = s.back();
    Inputs in{param(random_tensor(s, ++seed, DType::f64, 1.5)), param(random_tensor({C}, ++seed)),
              param(random_tensor({C}, ++seed))};
    EXPECT_TRUE(gradcheck([](const Inputs& t) { return layer_norm(t[0], t[1], t[2]); }, in));
  }
}

TEST(LayerNormGrad, LargeEpsAndOffsetRows) {
  // eps comparable to the variance changes every term of dx; a large offset tests that the
  // backward recomputes xhat from the saved mean rather than from raw x.
  Tensor x = add_scalar(random_tensor({3, 6}, 121, DType::f64, 0.3), 20.0);
  Inputs in{param(x), param(random_tensor({6}, 122)), param(random_tensor({6}, 123))};
  EXPECT_TRUE(gradcheck([](const Inputs& t) { return layer_norm(t[0], t[1], t[2], 0.05); }, in));
}

TEST(LayerNormForward, MatchesNaiveComputationInBothDtypes) {
  const std::int64_t C = 11;
  const Shape s{2, 5, C};
  std::vector<double> xv = random_tensor(s, 131, DType::f64, 2.0).to_double_vector();
  for (double& v : xv) v += 30.0;  // a common offset: the variance must survive cancellation
  std::vector<double> gamma = random_tensor({C}, 132).to_double_vector();
  std::vector<double> beta = random_tensor({C}, 133).to_double_vector();
  Tensor x = Tensor::from_vector(xv, s), g = Tensor::from_vector(gamma, {C}), b = Tensor::from_vector(beta, {C});
  for (double eps : {1e-5, 1e-6, 0.1}) {
    SCOPED_TRACE("eps " + std::to_string(eps));
    Tensor expected = Tensor::from_vector(naive_layer_norm(xv, C, gamma, beta, eps), s);
    EXPECT_TRUE(testing::all_close(layer_norm(x, g, b, eps), expected, 1e-12, 1e-10));
    // x stored in f32 carries about 30 * 6e-8 = 2e-6 absolute error, amplified by rstd ~ 0.5.
    Tensor y32 = layer_norm(x.to(DType::f32), g.to(DType::f32), b.to(DType::f32), eps);
    EXPECT_EQ(y32.dtype(), DType::f32);
    EXPECT_TRUE(testing::all_close(y32, expected, 2e-5, 1e-5));
  }
}

TEST(LayerNormForward, EachRowHasZeroMeanAndUnitVariance) {
  const std::int64_t C = 24;
  Tensor x = add_scalar(random_tensor({4, 3, C}, 141, DType::f64, 3.0), -5.0);
  std::vector<double> y =
      layer_norm(x, Tensor::full({C}, 1.0, DType::f64), Tensor::zeros({C}, DType::f64)).to_double_vector();
  for (std::int64_t r = 0; r < 12; ++r) {
    double sum = 0, sq = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      const double v = y[static_cast<std::size_t>(r * C + c)];
      sum += v;
      sq += v * v;
    }
    EXPECT_NEAR(sum / C, 0.0, 1e-12);
    EXPECT_NEAR(sq / C, 1.0, 1e-5);  // var / (var + eps) with var about 9
  }
}

TEST(LayerNormForward, ConstantRowGivesBeta) {
  // Variance 0: xhat = 0 and y = beta; rstd = 1/sqrt(eps) stays finite.
  Tensor beta = Tensor::from_vector(std::vector<double>{0.5, -1, 2}, {3});
  std::vector<double> y = layer_norm(Tensor::full({2, 3}, 4.0, DType::f64), Tensor::full({3}, 3.0, DType::f64), beta)
                              .to_double_vector();
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_DOUBLE_EQ(y[i], beta.to_double_vector()[i % 3]);
}

TEST(LayerNormGrad, IsOneTapeNodeWithThreeInputs) {
  Tensor x = param(random_tensor({2, 4}, 151)), g = param(random_tensor({4}, 152)), b = param(random_tensor({4}, 153));
  Tensor y = layer_norm(x, g, b);
  ASSERT_TRUE(y.impl()->grad_fn != nullptr);
  EXPECT_STREQ(y.impl()->grad_fn->name, "layer_norm");
  EXPECT_EQ(y.impl()->grad_fn->inputs.size(), 3u);
  NoGradGuard no_grad;
  EXPECT_FALSE(layer_norm(x, g, b).requires_grad());
}

TEST(LayerNormErrors, MessagesNameTheProblem) {
  Tensor x = Tensor::zeros({2, 3, 8});
  Tensor g = Tensor::full({8}, 1.0), b = Tensor::zeros({8});
  expect_value_error([&] { layer_norm(x, Tensor::zeros({3}), b); },
                     "layer_norm: 'gamma' must have shape [8] (the last axis of x [2, 3, 8]), got [3]");
  expect_value_error([&] { layer_norm(x, g, Tensor::zeros({1, 8})); }, "'beta' must have shape [8]");
  expect_value_error([&] { layer_norm(x, g.to(DType::f64), b); }, "'gamma' is f64");
  expect_value_error([&] { layer_norm(x, g, b.to(DType::f64)); }, "'beta' is f64");
  expect_value_error([&] { layer_norm(x, Tensor(), b); }, "'gamma' is an undefined tensor");
  expect_value_error([&] { layer_norm(Tensor::zeros({2, 0}), Tensor::zeros({0}), Tensor::zeros({0})); },
                     "layer_norm: 'x' of shape [2, 0] is empty");
  expect_value_error([&] { layer_norm(x, g, b, -1.0); }, "eps must be non-negative, got -1");
  expect_value_error([&] { layer_norm(Tensor::zeros({2, 8}, DType::f16), g, b); }, "layer_norm: 'x' is");
}

}  // namespace
}  // namespace ddpm
