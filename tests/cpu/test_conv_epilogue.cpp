// conv2d's fused epilogue on the CPU (engine/ops/conv.h): the per-sample bias and the
// residual added in the convolution's output pass.
//   - finite-difference gradient checks in double for every combination of bias,
//     sample_bias and residual, with all inputs requiring grad and with only some of them
//     (the bias gradient has two code paths: from the [N, Cout] sample-bias gradient when
//     both are wanted, from g otherwise);
//   - the fused result equals the separate adds it replaces bit for bit (f32 and f64), and
//     against a direct formula;
//   - the kernel-level reference (cpu::conv2d_epilogue / conv2d_backward_sample_bias) on
//     hand values;
//   - the error cases name the argument.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "kernels/cpu/conv2d.h"
#include "support/gradcheck.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using testing::all_close;
using testing::expect_value_error;
using testing::gradcheck;
using testing::Inputs;
using testing::param;
using testing::random_tensor;

struct EpilogueCase {
  const char* name;
  Shape x, w;  // [N, H, W, Cin], [Cout, kh, kw, Cin]
  int stride, pad;
};

const EpilogueCase kCases[] = {
    {"3x3_pad1", {2, 4, 4, 3}, {5, 3, 3, 3}, 1, 1},
    {"1x1", {3, 3, 4, 2}, {4, 1, 1, 2}, 1, 0},
    {"3x3_stride2_pad1_odd", {2, 5, 5, 2}, {3, 3, 3, 2}, 2, 1},
};

Shape out_shape(const EpilogueCase& c) {
  return {c.x[0], (c.x[1] + 2 * c.pad - c.w[1]) / c.stride + 1, (c.x[2] + 2 * c.pad - c.w[2]) / c.stride + 1, c.w[0]};
}

bool bit(int mask, int i) { return (mask >> i) & 1; }

TEST(Conv2dEpilogueGrad, EveryCombinationOfBiasSampleBiasResidual) {
  std::uint64_t seed = 500;
  for (const auto& c : kCases) {
    const Shape o = out_shape(c);
    // mask bit 0: bias, bit 1: sample_bias, bit 2: residual
    for (int mask = 0; mask < 8; ++mask) {
      SCOPED_TRACE(std::string(c.name) + " mask " + std::to_string(mask));
      const bool use_b = bit(mask, 0), use_sb = bit(mask, 1), use_r = bit(mask, 2);
      Inputs in{param(random_tensor(c.x, ++seed)), param(random_tensor(c.w, ++seed))};
      if (use_b) in.push_back(param(random_tensor({c.w[0]}, ++seed)));
      if (use_sb) in.push_back(param(random_tensor({o[0], o[3]}, ++seed)));
      if (use_r) in.push_back(param(random_tensor(o, ++seed)));
      const int s = c.stride, p = c.pad;
      auto f = [=](const Inputs& v) {
        std::size_t k = 2;
        Tensor b = use_b ? v[k++] : Tensor();
        Tensor sb = use_sb ? v[k++] : Tensor();
        Tensor r = use_r ? v[k++] : Tensor();
        return conv2d(v[0], v[1], b, s, p, sb, r);
      };
      EXPECT_TRUE(gradcheck(f, in));
    }
  }
}

// Only some inputs require grad: the bias alone (its gradient from g, not from the sample
// bias), the sample bias alone, the residual alone, and bias with sample bias but frozen x, W.
TEST(Conv2dEpilogueGrad, OnlySomeInputsRequireGrad) {
  const EpilogueCase& c = kCases[0];
  const Shape o = out_shape(c);
  for (int mask = 1; mask < 8; ++mask) {  // which of (bias, sample_bias, residual) require grad
    SCOPED_TRACE("requires-grad mask " + std::to_string(mask));
    Tensor x = random_tensor(c.x, 1), w = random_tensor(c.w, 2);
    Tensor b = random_tensor({c.w[0]}, 3), sb = random_tensor({o[0], o[3]}, 4), r = random_tensor(o, 5);
    if (bit(mask, 0)) b = param(b);
    if (bit(mask, 1)) sb = param(sb);
    if (bit(mask, 2)) r = param(r);
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return conv2d(v[0], v[1], v[2], 1, 1, v[3], v[4]); },
                          {x, w, b, sb, r}));
  }
}

TEST(Conv2dEpilogueGrad, GradientsByFormula) {
  // d sample_bias[n, c] = sum over pixels of g; d residual = g; d bias = sum over n, pixels of g.
  const EpilogueCase& c = kCases[1];
  const Shape o = out_shape(c);
  Tensor x = random_tensor(c.x, 11), w = random_tensor(c.w, 12);
  Tensor b = param(random_tensor({o[3]}, 13)), sb = param(random_tensor({o[0], o[3]}, 14));
  Tensor r = param(random_tensor(o, 15));
  Tensor out = conv2d(x, w, b, 1, 0, sb, r);
  Tensor g = random_tensor(o, 16);
  out.backward(g);
  const std::int64_t N = o[0], P = o[1] * o[2], C = o[3];
  std::vector<double> gv = g.to_double_vector(), gsb(static_cast<std::size_t>(N * C), 0.0),
                      gb(static_cast<std::size_t>(C), 0.0);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t p = 0; p < P; ++p)
      for (std::int64_t ch = 0; ch < C; ++ch) {
        const double v = gv[static_cast<std::size_t>((n * P + p) * C + ch)];
        gsb[static_cast<std::size_t>(n * C + ch)] += v;
        gb[static_cast<std::size_t>(ch)] += v;
      }
  EXPECT_TRUE(all_close(sb.grad(), Tensor::from_vector(gsb, {N, C}), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(b.grad(), Tensor::from_vector(gb, {C}), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(r.grad(), g, 0, 0));
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
}

// ((conv + bias) + sample_bias) + residual is exactly what the separate adds computed.
TEST(Conv2dEpilogue, FusedEqualsSeparateAddsBitForBit) {
  for (DType dt : {DType::f32, DType::f64}) {
    for (const auto& c : kCases) {
      SCOPED_TRACE(std::string(c.name) + (dt == DType::f32 ? " f32" : " f64"));
      const Shape o = out_shape(c);
      Tensor x = random_tensor(c.x, 21, dt), w = random_tensor(c.w, 22, dt), b = random_tensor({o[3]}, 23, dt);
      Tensor sb = random_tensor({o[0], o[3]}, 24, dt), r = random_tensor(o, 25, dt);
      Tensor conv = conv2d(x, w, b, c.stride, c.pad);
      Tensor with_sb = add(conv, sb.reshape({o[0], 1, 1, o[3]}));
      EXPECT_TRUE(all_close(conv2d(x, w, b, c.stride, c.pad, sb), with_sb, 0, 0)) << "sample_bias";
      EXPECT_TRUE(all_close(conv2d(x, w, b, c.stride, c.pad, Tensor(), r), add(r, conv), 0, 0)) << "residual";
      EXPECT_TRUE(all_close(conv2d(x, w, b, c.stride, c.pad, sb, r), add(with_sb, r), 0, 0)) << "both";
    }
  }
}

TEST(Conv2dEpilogue, KernelReferenceHandValues) {
  // y [n=2, pixels=2, c=3]
  std::vector<double> y{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const std::vector<double> bias{100, 200, 300}, sb{10, 20, 30, 40, 50, 60};
  const std::vector<double> res{0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 1, 2, 3, 4, 5, 6};
  cpu::conv2d_epilogue<double>(y.data(), bias.data(), sb.data(), res.data(), 2, 2, 3);
  EXPECT_EQ(y, (std::vector<double>{111.5, 222.5, 333.5, 114.25, 225.25, 336.25, 148, 260, 372, 154, 266, 378}));
  std::vector<double> only_sb{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  cpu::conv2d_epilogue<double>(only_sb.data(), nullptr, sb.data(), nullptr, 2, 2, 3);
  EXPECT_EQ(only_sb, (std::vector<double>{11, 22, 33, 14, 25, 36, 47, 58, 69, 50, 61, 72}));

  const std::vector<double> gy{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  std::vector<double> gsb(6, -1), gb(3, -1);
  cpu::conv2d_backward_sample_bias<double>(gy.data(), gsb.data(), gb.data(), 2, 2, 3);
  EXPECT_EQ(gsb, (std::vector<double>{5, 7, 9, 17, 19, 21}));
  EXPECT_EQ(gb, (std::vector<double>{22, 26, 30}));
}

TEST(Conv2dEpilogueErrors, BadEpilogueInputsAreValueErrors) {
  // out [2, 5, 5, 4]
  Tensor x = Tensor::zeros({2, 5, 5, 3}), w = Tensor::zeros({4, 3, 3, 3}), b = Tensor::zeros({4});
  expect_value_error([&] { conv2d(x, w, b, 1, 1, Tensor::zeros({2, 3})); }, "'sample_bias' must have shape [2, 4]");
  expect_value_error([&] { conv2d(x, w, b, 1, 1, Tensor::zeros({4})); }, "'sample_bias' must have shape [2, 4]");
  expect_value_error([&] { conv2d(x, w, b, 1, 1, Tensor::zeros({2, 1, 1, 4})); }, "'sample_bias' must have shape");
  expect_value_error([&] { conv2d(x, w, b, 1, 1, Tensor(), Tensor::zeros({2, 5, 5, 3})); },
                     "'residual' must have shape [2, 5, 5, 4]");
  // Stride 2: the residual must have the strided output's size, not the input's.
  expect_value_error([&] { conv2d(x, w, b, 2, 1, Tensor(), Tensor::zeros({2, 5, 5, 4})); },
                     "'residual' must have shape [2, 3, 3, 4]");
  expect_value_error([&] { conv2d(x, w, b, 1, 1, Tensor::zeros({2, 4}, DType::f64)); }, "sample_bias");
  expect_value_error([&] { conv2d(x, w, b, 1, 1, Tensor(), Tensor::zeros({2, 5, 5, 4}, DType::f64)); }, "residual");
}

}  // namespace
}  // namespace ddpm
