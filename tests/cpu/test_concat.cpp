// concat, split and slice along the first, a middle and the last axis: values, gradients
// in double, and the error cases.
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;
using testing::param;

Tensor iota(const Shape& s, double start = 0) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(s)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = start + static_cast<double>(i);
  return Tensor::from_vector(v, s);
}

TEST(Concat, ValuesAlongEachAxis) {
  Tensor a = iota({2, 2}), b = iota({2, 1}, 10);
  EXPECT_EQ(concat({a, b}, -1).to_double_vector(), (std::vector<double>{0, 1, 10, 2, 3, 11}));
  Tensor c = iota({1, 2}, 20);
  EXPECT_EQ(concat({a, c}, 0).to_double_vector(), (std::vector<double>{0, 1, 2, 3, 20, 21}));
  // Middle axis of [2, 1, 2] and [2, 2, 2]: per outer index, a's row then b's two rows.
  Tensor m = concat({iota({2, 1, 2}), iota({2, 2, 2}, 100)}, 1);
  EXPECT_EQ(m.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(m.to_double_vector(), (std::vector<double>{0, 1, 100, 101, 102, 103, 2, 3, 104, 105, 106, 107}));
}

TEST(Concat, SliceAndSplitInvertConcat) {
  Tensor x = random_tensor({2, 3, 4, 5}, 3);
  for (int axis : {0, 1, 2, 3, -1}) {
    SCOPED_TRACE(axis);
    std::int64_t n = x.dim(axis);
    std::vector<Tensor> parts = split(x, {1, n - 1}, axis);
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[0].dim(axis), 1);
    EXPECT_EQ(concat(parts, axis).to_double_vector(), x.to_double_vector());
    Tensor s = slice(x, axis, 1, n - 1);
    EXPECT_EQ(s.to_double_vector(), parts[1].to_double_vector());
  }
  // slice of the middle axis by value: x[:, 1:3] of a [2, 4] matrix.
  EXPECT_EQ(slice(iota({2, 4}), 1, 1, 2).to_double_vector(), (std::vector<double>{1, 2, 5, 6}));
  EXPECT_EQ(slice(iota({2, 4}), 1, 2, 0).shape(), (Shape{2, 0}));
}

TEST(Concat, Gradients) {
  // The UNet's skip connection: channels of h and skip joined along the last axis.
  Tensor h = param(random_tensor({2, 2, 3, 3}, 1)), skip = param(random_tensor({2, 2, 3, 2}, 2));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return concat({in[0], in[1]}, -1); }, {h, skip}));
  Tensor a = param(random_tensor({1, 3, 2}, 3)), b = param(random_tensor({2, 3, 2}, 4));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return concat({in[0], in[1]}, 0); }, {a, b}));
  Tensor c = param(random_tensor({2, 1, 3}, 5)), d = param(random_tensor({2, 4, 3}, 6));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return concat({in[0], in[1], in[0]}, 1); }, {c, d}));
  Tensor x = param(random_tensor({3, 4, 5}, 7));
  for (int axis : {0, 1, 2}) {
    SCOPED_TRACE(axis);
    EXPECT_TRUE(gradcheck([axis](const Inputs& in) { return slice(in[0], axis, 1, 2); }, {x}));
    // Both split outputs used, with different weights, through separate slice nodes.
    EXPECT_TRUE(gradcheck(
        [axis](const Inputs& in) {
          std::vector<Tensor> p = split(in[0], {2, in[0].dim(axis) - 2}, axis);
          return concat({scale(p[1], 3.0), p[0]}, axis);
        },
        {x}));
  }
}

TEST(Concat, Errors) {
  Tensor a = Tensor::zeros({2, 3, 4}), b = Tensor::zeros({2, 5, 4});
  try {
    concat({a, b}, -1);
    FAIL();
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("concat: xs[1] has shape [2, 5, 4] but xs[0] has shape [2, 3, 4]"), std::string::npos) << m;
  }
  EXPECT_EQ(concat({a, b}, 1).shape(), (Shape{2, 8, 4}));
  EXPECT_THROW(concat({}, 0), ValueError);
  EXPECT_THROW(concat({a, Tensor::zeros({2, 3})}, 0), ValueError);
  EXPECT_THROW(concat({a, Tensor::zeros({2, 3, 4}, DType::f64)}, 0), ValueError);
  EXPECT_THROW(concat({a, a}, 3), ValueError);
  try {
    slice(a, 1, 2, 2);
    FAIL();
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("slice"), std::string::npos) << m;
    EXPECT_NE(m.find("size 3"), std::string::npos) << m;
  }
  EXPECT_THROW(slice(a, 1, -1, 1), ValueError);
  EXPECT_THROW(slice(a, 1, 0, -1), ValueError);
  EXPECT_THROW(slice(a, -4, 0, 1), ValueError);
  EXPECT_THROW(split(a, {1, 1}, 1), ValueError);
  EXPECT_THROW(split(a, {4, -1}, 1), ValueError);
}

}  // namespace
}  // namespace ddpm
