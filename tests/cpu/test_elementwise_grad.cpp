// Finite-difference gradient checks in double for the elementwise and reduction ops,
// including the broadcasting forms the UNet uses (per-channel {C}, per-sample {N,1,1,1}).
#include <cmath>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::gradcheck;
using testing::random_positive;
using testing::random_tensor;
using testing::Inputs;
using testing::param;

struct BinaryCase {
  const char* name;
  Shape a, b;
};

const BinaryCase kBroadcastCases[] = {
    {"same", {2, 3, 3, 4}, {2, 3, 3, 4}},
    {"per_channel", {2, 3, 3, 4}, {4}},
    {"per_sample", {2, 3, 3, 4}, {2, 1, 1, 1}},
    {"per_sample_channel", {2, 3, 3, 4}, {2, 1, 1, 4}},
    {"both_sides", {2, 1, 4}, {3, 1}},
};

TEST(ElementwiseGrad, AddSubMulDivWithBroadcasting) {
  for (const auto& c : kBroadcastCases) {
    SCOPED_TRACE(c.name);
    Tensor a = param(random_tensor(c.a, 1));
    Tensor b = param(random_tensor(c.b, 2));
    Tensor bpos = param(random_positive(c.b, 3));
    EXPECT_TRUE(gradcheck([](const Inputs& in) { return add(in[0], in[1]); }, {a, b}));
    EXPECT_TRUE(gradcheck([](const Inputs& in) { return sub(in[0], in[1]); }, {a, b}));
    EXPECT_TRUE(gradcheck([](const Inputs& in) { return mul(in[0], in[1]); }, {a, b}));
    EXPECT_TRUE(gradcheck([](const Inputs& in) { return div(in[0], in[1]); }, {a, bpos}));
  }
}

TEST(ElementwiseGrad, UnaryOps) {
  Tensor x = param(random_tensor({3, 5}, 4, DType::f64, 2.0));
  Tensor p = param(random_positive({3, 5}, 5));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return silu(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return exp(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return square(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return scale(in[0], -0.7); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return add_scalar(in[0], 3.0); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return neg(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return log(in[0]); }, {p}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return sqrt(in[0]); }, {p}));
}

TEST(ElementwiseGrad, ForwardValues) {
  Tensor x = Tensor::from_vector(std::vector<double>{-1.0, 0.0, 2.0}, {3});
  std::vector<double> y = silu(x).to_double_vector();
  EXPECT_NEAR(y[0], -1.0 / (1 + std::exp(1.0)), 1e-15);
  EXPECT_EQ(y[1], 0.0);
  EXPECT_NEAR(y[2], 2.0 / (1 + std::exp(-2.0)), 1e-15);
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<double>{10, 20, 30}, {3});
  EXPECT_EQ(add(a, b).to_double_vector(), (std::vector<double>{11, 22, 33, 14, 25, 36}));
  Tensor col = Tensor::from_vector(std::vector<double>{2, 4}, {2, 1});
  EXPECT_EQ(div(a, col).to_double_vector(), (std::vector<double>{0.5, 1, 1.5, 1, 1.25, 1.5}));
}

TEST(ReduceGrad, SumAndMeanOverAxes) {
  Tensor x = param(random_tensor({2, 3, 4, 5}, 6));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return sum(in[0], {1, 2}); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return sum(in[0], {-1}, true); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return mean(in[0], {0, 3}); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return mean(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return sum_to(in[0], {3, 1, 5}); }, {x}));
  Tensor c = param(random_tensor({5}, 7));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return expand_to(in[0], {2, 3, 5}); }, {c}));
}

TEST(ReduceGrad, ForwardValuesAndMse) {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(sum(a, {0}).to_double_vector(), (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(sum(a, {1}).to_double_vector(), (std::vector<double>{6, 15}));
  EXPECT_EQ(sum(a, {1}, true).shape(), (Shape{2, 1}));
  EXPECT_DOUBLE_EQ(mean(a).item(), 3.5);
  Tensor b = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 8}, {2, 3});
  EXPECT_DOUBLE_EQ(mse_loss(a, b).item(), 4.0 / 6.0);
  Tensor p = param(random_tensor({2, 4, 4, 3}, 8));
  Tensor t = random_tensor({2, 4, 4, 3}, 9);
  EXPECT_TRUE(gradcheck([t](const Inputs& in) { return mse_loss(in[0], t); }, {p}));
}

TEST(ElementwiseErrors, MessagesNameTheOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3});
  Tensor b = Tensor::zeros({4});
  try {
    add(a, b);
    FAIL();
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("add: shapes [2, 3] and [4] do not broadcast"), std::string::npos) << m;
  }
  EXPECT_THROW(mul(a, Tensor::zeros({2, 3}, DType::f64)), ValueError);
  EXPECT_THROW(sum(a, {2}), ValueError);
  EXPECT_THROW(sum(a, {0, 0}), ValueError);
  EXPECT_THROW(mse_loss(a, Tensor::zeros({3, 2})), ValueError);
  EXPECT_THROW(sum_to(a, {3, 3}), ValueError);
}

}  // namespace
}  // namespace ddpm
