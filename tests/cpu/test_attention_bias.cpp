// The attention core with an additive logit bias [heads, Sq, Sk] on the CPU (the relative
// position bias of models/unet/temporal.h): the forward against a naive double computation
// written here, finite-difference gradients in double for q, k, v AND the bias (self- and
// cross-attention), a zero bias giving the plain op bit for bit (outputs and gradients),
// the bias reaching every batch element, and the shape errors.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/attention.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "support/gradcheck.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using testing::gradcheck;
using testing::Inputs;
using testing::param;
using testing::random_tensor;

// Independent reference: per (b, h), dense scores q_i . k_j / sqrt(d) + bias[h, i, j], a
// softmax with an explicit max, times v. q [B, Sq, C], k and v [B, Sk, C], bias [heads, Sq, Sk].
std::vector<double> naive_biased_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                           int heads) {
  const std::int64_t B = q.dim(0), Sq = q.dim(1), Sk = k.dim(1), C = q.dim(2), d = C / heads;
  const std::vector<double> qv = q.to_double_vector(), kv = k.to_double_vector(), vv = v.to_double_vector(),
                            bv = bias.to_double_vector();
  std::vector<double> out(qv.size(), 0.0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < Sq; ++i) {
        std::vector<double> w(static_cast<std::size_t>(Sk));
        for (std::int64_t j = 0; j < Sk; ++j) {
          double s = 0;
          for (std::int64_t c = 0; c < d; ++c) s += qv[(b * Sq + i) * C + h * d + c] * kv[(b * Sk + j) * C + h * d + c];
          w[j] = s / std::sqrt(double(d)) + bv[(h * Sq + i) * Sk + j];
        }
        const double m = *std::max_element(w.begin(), w.end());
        double z = 0;
        for (double x : w) z += std::exp(x - m);
        for (std::int64_t c = 0; c < d; ++c) {
          double o = 0;
          for (std::int64_t j = 0; j < Sk; ++j) o += std::exp(w[j] - m) / z * vv[(b * Sk + j) * C + h * d + c];
          out[(b * Sq + i) * C + h * d + c] = o;
        }
      }
  return out;
}

TEST(AttentionBias, ForwardMatchesNaiveComputation) {
  for (int heads : {1, 2, 4}) {
    SCOPED_TRACE("heads " + std::to_string(heads));
    const Tensor q = random_tensor({3, 5, 8}, 41, DType::f64, 1.5);
    const Tensor k = random_tensor({3, 6, 8}, 42, DType::f64, 1.5);  // cross: Sk = 6 != Sq = 5
    const Tensor v = random_tensor({3, 6, 8}, 43);
    const Tensor bias = random_tensor({heads, 5, 6}, 44, DType::f64, 2.0);
    const std::vector<double> expected = naive_biased_attention(q, k, v, bias, heads);
    const std::vector<double> got = attention(q, k, v, bias, heads).to_double_vector();
    ASSERT_EQ(got.size(), expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-13) << "element " << i;
    // The bias changes the result (else the check above would not test it).
    const std::vector<double> plain = attention(q, k, v, heads).to_double_vector();
    double gap = 0;
    for (std::size_t i = 0; i < got.size(); ++i) gap = std::max(gap, std::fabs(got[i] - plain[i]));
    EXPECT_GT(gap, 1e-2);
    // f32 matches f64 to float rounding.
    const Tensor out32 = attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), bias.to(DType::f32), heads);
    EXPECT_TRUE(testing::all_close(out32, Tensor::from_vector(expected, {3, 5, 8}), 1e-6, 1e-5));
  }
}

TEST(AttentionBias, GradcheckQKVAndBias) {
  for (int heads : {1, 2}) {
    SCOPED_TRACE("self-attention, heads " + std::to_string(heads));
    Inputs in{param(random_tensor({2, 4, 6}, 51)), param(random_tensor({2, 4, 6}, 52)),
              param(random_tensor({2, 4, 6}, 53)), param(random_tensor({heads, 4, 4}, 54, DType::f64, 1.5))};
    EXPECT_TRUE(gradcheck([heads](const Inputs& x) { return attention(x[0], x[1], x[2], x[3], heads); }, in));
  }
  SCOPED_TRACE("cross-attention Sq 3, Sk 5, three images");
  Inputs in{param(random_tensor({3, 3, 4}, 55)), param(random_tensor({3, 5, 4}, 56)),
            param(random_tensor({3, 5, 4}, 57)), param(random_tensor({2, 3, 5}, 58, DType::f64, 1.5))};
  EXPECT_TRUE(gradcheck([](const Inputs& x) { return attention(x[0], x[1], x[2], x[3], 2, true); }, in));
}

TEST(AttentionBias, BiasGradientIsTheBatchSumOfPerImageGradients) {
  // dBias = sum_b dS_b: the gradient of the batched call equals the sum of the gradients of
  // one-image calls (each with the same bias).
  const Tensor q = random_tensor({3, 4, 4}, 61), k = random_tensor({3, 4, 4}, 62), v = random_tensor({3, 4, 4}, 63);
  const Tensor w = random_tensor({3, 4, 4}, 64);
  Tensor bias = param(random_tensor({2, 4, 4}, 65));
  sum(mul(attention(q, k, v, bias, 2), w)).backward();
  const std::vector<double> batched = bias.grad().to_double_vector();
  std::vector<double> summed(batched.size(), 0.0);
  for (std::int64_t b = 0; b < 3; ++b) {
    Tensor bb = param(bias.detach().clone());
    auto one = [b](const Tensor& x) { return slice(x, 0, b, 1); };
    sum(mul(attention(one(q), one(k), one(v), bb, 2), one(w))).backward();
    const std::vector<double> g = bb.grad().to_double_vector();
    for (std::size_t e = 0; e < g.size(); ++e) summed[e] += g[e];
  }
  for (std::size_t e = 0; e < summed.size(); ++e) EXPECT_NEAR(batched[e], summed[e], 1e-13) << "element " << e;
}

TEST(AttentionBias, ZeroBiasIsThePlainOpBitForBit) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dt == DType::f32 ? "f32" : "f64");
    Tensor q = param(random_tensor({2, 5, 8}, 71, dt)), k = param(random_tensor({2, 5, 8}, 72, dt)),
           v = param(random_tensor({2, 5, 8}, 73, dt));
    Tensor q2 = param(q.detach().clone()), k2 = param(k.detach().clone()), v2 = param(v.detach().clone());
    const Tensor w = random_tensor({2, 5, 8}, 74, dt);
    Tensor zero = param(Tensor::zeros({2, 5, 5}, dt));
    const Tensor plain = attention(q, k, v, 2), biased = attention(q2, k2, v2, zero, 2);
    EXPECT_TRUE(testing::same_bits(biased, plain));
    sum(mul(plain, w)).backward();
    sum(mul(biased, w)).backward();
    EXPECT_TRUE(testing::same_bits(q2.grad(), q.grad()));
    EXPECT_TRUE(testing::same_bits(k2.grad(), k.grad()));
    EXPECT_TRUE(testing::same_bits(v2.grad(), v.grad()));
    // A constant bias along each query row cancels in the softmax: dBias rows sum to zero.
    const std::vector<double> gb = zero.grad().to_double_vector();
    for (std::size_t row = 0; row < 10; ++row) {
      double s = 0;
      for (std::size_t j = 0; j < 5; ++j) s += gb[row * 5 + j];
      EXPECT_NEAR(s, 0.0, dt == DType::f32 ? 1e-6 : 1e-14) << "row " << row;
    }
  }
}

TEST(AttentionBias, ShapeDtypeAndUndefinedBiasAreValueErrors) {
  const Tensor q = random_tensor({2, 4, 8}, 81), k = random_tensor({2, 3, 8}, 82);
  testing::expect_value_error([&] { attention(q, k, k, Tensor::zeros({2, 3, 4}, DType::f64), 2); },
                              "the logit 'bias' must be [heads, Sq, Sk] = [2, 4, 3]");
  testing::expect_value_error([&] { attention(q, k, k, Tensor::zeros({2, 4, 3}, DType::f32), 2); }, "bias");
  testing::expect_value_error([&] { attention(q, k, k, Tensor(), 2); }, "'bias' is an undefined tensor");
}

}  // namespace
}  // namespace ddpm
