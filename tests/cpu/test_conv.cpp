// conv2d on the CPU: forward against a direct seven-loop convolution written here
// (independent of im2col + GEMM), finite-difference gradient checks in double for x,
// weight and bias in the three UNet configurations and odd shapes, and the error cases.
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/conv.h"
#include "support/gradcheck.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using testing::all_close;
using testing::expect_value_error;
using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;
using testing::param;

// out[n, oy, ox, co] = b[co] + sum_{ky, kx, ci} x[n, oy*s - p + ky, ox*s - p + kx, ci] w[co, ky, kx, ci]
Tensor direct_conv(const Tensor& x, const Tensor& w, const Tensor& b, int s, int p) {
  const auto N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  const auto K = w.dim(0), R = w.dim(1), S = w.dim(2);
  const auto Ho = (H + 2 * p - R) / s + 1, Wo = (W + 2 * p - S) / s + 1;
  std::vector<double> xv = x.to_double_vector(), wv = w.to_double_vector();
  std::vector<double> bv = b.defined() ? b.to_double_vector() : std::vector<double>(static_cast<std::size_t>(K), 0.0);
  std::vector<double> out(static_cast<std::size_t>(N * Ho * Wo * K));
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t oy = 0; oy < Ho; ++oy)
      for (std::int64_t ox = 0; ox < Wo; ++ox)
        for (std::int64_t k = 0; k < K; ++k) {
          double acc = bv[static_cast<std::size_t>(k)];
          for (std::int64_t r = 0; r < R; ++r)
            for (std::int64_t q = 0; q < S; ++q)
              for (std::int64_t c = 0; c < C; ++c) {
                std::int64_t iy = oy * s - p + r, ix = ox * s - p + q;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                acc += xv[static_cast<std::size_t>(((n * H + iy) * W + ix) * C + c)] *
                       wv[static_cast<std::size_t>(((k * R + r) * S + q) * C + c)];
              }
          out[static_cast<std::size_t>(((n * Ho + oy) * Wo + ox) * K + k)] = acc;
        }
  return Tensor::from_vector(out, {N, Ho, Wo, K});
}

struct ConvCase {
  const char* name;
  Shape x, w;  // [N, H, W, Cin], [Cout, kh, kw, Cin]
  int stride, pad;
  Shape out;
};

const ConvCase kCases[] = {
    {"3x3_pad1", {2, 5, 5, 3}, {4, 3, 3, 3}, 1, 1, {2, 5, 5, 4}},
    {"1x1", {2, 5, 6, 3}, {4, 1, 1, 3}, 1, 0, {2, 5, 6, 4}},
    {"3x3_stride2_pad1", {2, 6, 6, 3}, {4, 3, 3, 3}, 2, 1, {2, 3, 3, 4}},
    {"3x3_stride2_pad1_odd_input", {1, 7, 5, 2}, {3, 3, 3, 2}, 2, 1, {1, 4, 3, 3}},
    {"2x3_kernel_no_pad", {1, 4, 6, 2}, {3, 2, 3, 2}, 1, 0, {1, 3, 4, 3}},
    {"5x5_pad2_stride3", {2, 7, 8, 1}, {2, 5, 5, 1}, 3, 2, {2, 3, 3, 2}},
    {"1x1_stride2", {1, 5, 5, 2}, {3, 1, 1, 2}, 2, 0, {1, 3, 3, 3}},
    {"kernel_equals_padded_input", {1, 2, 2, 2}, {2, 4, 4, 2}, 1, 1, {1, 1, 1, 2}},
};

TEST(Conv2d, ForwardMatchesDirectConvolution) {
  std::uint64_t seed = 10;
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    Tensor x = random_tensor(c.x, ++seed), w = random_tensor(c.w, ++seed), b = random_tensor({c.w[0]}, ++seed);
    Tensor expected = direct_conv(x, w, b, c.stride, c.pad);
    ASSERT_EQ(expected.shape(), c.out);
    EXPECT_TRUE(all_close(conv2d(x, w, b, c.stride, c.pad), expected, 1e-12, 1e-12));
    EXPECT_TRUE(all_close(conv2d(x, w, Tensor(), c.stride, c.pad), direct_conv(x, w, Tensor(), c.stride, c.pad),
                          1e-12, 1e-12));
    // f32: the same inputs rounded to float, against the double reference on them.
    Tensor xf = x.to(DType::f32), wf = w.to(DType::f32), bf = b.to(DType::f32);
    Tensor out_f = conv2d(xf, wf, bf, c.stride, c.pad);
    EXPECT_EQ(out_f.dtype(), DType::f32);
    EXPECT_TRUE(all_close(out_f, direct_conv(xf, wf, bf, c.stride, c.pad), 1e-5, 1e-5));
  }
}

TEST(Conv2d, ForwardHandValues) {
  // One 3x3 image of 1..9, a 2x2 all-ones filter, no padding: each output is a window sum.
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 3, 3, 1});
  Tensor w = Tensor::full({1, 2, 2, 1}, 1.0, DType::f64);
  Tensor b = Tensor::from_vector(std::vector<double>{0.5}, {1});
  EXPECT_EQ(conv2d(x, w, b).to_double_vector(), (std::vector<double>{12.5, 16.5, 24.5, 28.5}));
  // Padding 1, stride 2: windows at the corners see the zero border.
  EXPECT_EQ(conv2d(x, w, Tensor(), 2, 1).to_double_vector(), (std::vector<double>{1, 5, 11, 28}));
}

TEST(Conv2dGrad, GradcheckXWeightBias) {
  std::uint64_t seed = 100;
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    Tensor x = param(random_tensor(c.x, ++seed));
    Tensor w = param(random_tensor(c.w, ++seed));
    Tensor b = param(random_tensor({c.w[0]}, ++seed));
    int s = c.stride, p = c.pad;
    EXPECT_TRUE(gradcheck([s, p](const Inputs& in) { return conv2d(in[0], in[1], in[2], s, p); }, {x, w, b}));
    EXPECT_TRUE(gradcheck([s, p](const Inputs& in) { return conv2d(in[0], in[1], Tensor(), s, p); }, {x, w}));
  }
}

TEST(Conv2dGrad, OnlyTheInputsThatNeedIt) {
  // A frozen weight and input: only the bias gets a gradient, and it is sum of g over N, H, W.
  Tensor x = random_tensor({2, 4, 4, 3}, 7), w = random_tensor({5, 3, 3, 3}, 8);
  Tensor b = param(random_tensor({5}, 9));
  Tensor out = conv2d(x, w, b, 1, 1);
  Tensor g = random_tensor(out.shape(), 10);
  out.backward(g);
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  std::vector<double> gv = g.to_double_vector(), expected(5, 0.0);
  for (std::size_t i = 0; i < gv.size(); ++i) expected[i % 5] += gv[i];
  EXPECT_TRUE(all_close(b.grad(), Tensor::from_vector(expected, {5}), 1e-12, 1e-12));
}

TEST(Conv2dErrors, BadShapesAreValueErrors) {
  Tensor x = Tensor::zeros({2, 5, 5, 3}), w = Tensor::zeros({4, 3, 3, 3}), b = Tensor::zeros({4});
  expect_value_error([&] { conv2d(x, Tensor::zeros({4, 3, 3, 2}), b, 1, 1); }, "has 3 input channels");
  expect_value_error([&] { conv2d(Tensor::zeros({5, 5, 3}), w, b, 1, 1); }, "'x' must be an NHWC image batch");
  expect_value_error([&] { conv2d(x, Tensor::zeros({4, 9, 3}), b, 1, 1); }, "'weight' must be a filter bank");
  expect_value_error([&] { conv2d(x, Tensor::zeros({4, 7, 7, 3}), Tensor(), 1, 0); }, "larger than the padded input");
  expect_value_error([&] { conv2d(x, Tensor::zeros({4, 8, 3, 3}), Tensor(), 1, 1); }, "larger than the padded input");
  expect_value_error([&] { conv2d(x, w, Tensor::zeros({3}), 1, 1); }, "'bias' must have shape [4]");
  expect_value_error([&] { conv2d(x, w, b, 0, 1); }, "stride must be at least 1");
  expect_value_error([&] { conv2d(x, w, b, 1, -1); }, "padding must be non-negative");
  expect_value_error([&] { conv2d(x, w.to(DType::f64), b, 1, 1); }, "conv2d");
  expect_value_error([&] { conv2d(Tensor::zeros({2, 0, 5, 3}), w, b, 1, 1); }, "empty dimension");
}

}  // namespace
}  // namespace ddpm
