// The attention core on the CPU: finite-difference gradients in double for q, k and v
// (self-attention, and cross-attention with Sq != Sk including Sk = 1), the forward against
// a naive per-head computation written here, the uniform-attention property (q = 0 gives
// the mean of v), the single-key property (Sk = 1 copies v), the single tape node, and the
// error messages.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/attention.h"
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

// Independent reference: copy each head out as dense matrices, scale q and k by d^(-1/4)
// each, form the scores, softmax with an explicit max, multiply by v.
// q is [B, Sq, C]; k, v are [B, Sk, C].
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads) {
  const std::int64_t B = q.dim(0), Sq = q.dim(1), Sk = k.dim(1), C = q.dim(2), d = C / heads;
  std::vector<double> qv = q.to_double_vector(), kv = k.to_double_vector(), vv = v.to_double_vector();
  std::vector<double> out(qv.size(), 0.0);
  const double a = std::pow(double(d), -0.25);
  auto at_q = [&](std::int64_t b, std::int64_t s, std::int64_t h, std::int64_t c) {
    return static_cast<std::size_t>((b * Sq + s) * C + h * d + c);
  };
  auto at_k = [&](std::int64_t b, std::int64_t s, std::int64_t h, std::int64_t c) {
    return static_cast<std::size_t>((b * Sk + s) * C + h * d + c);
  };
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < heads; ++h) {
      std::vector<std::vector<double>> w(static_cast<std::size_t>(Sq), std::vector<double>(Sk));
      for (std::int64_t i = 0; i < Sq; ++i) {
        for (std::int64_t j = 0; j < Sk; ++j) {
          double s = 0;
          for (std::int64_t c = 0; c < d; ++c) s += (a * qv[at_q(b, i, h, c)]) * (a * kv[at_k(b, j, h, c)]);
          w[i][j] = s;
        }
        double m = w[i][0];
        for (double x : w[i]) m = std::max(m, x);
        double z = 0;
        for (double x : w[i]) z += std::exp(x - m);
        for (double& x : w[i]) x = std::exp(x - m) / z;
      }
      for (std::int64_t i = 0; i < Sq; ++i)
        for (std::int64_t c = 0; c < d; ++c) {
          double o = 0;
          for (std::int64_t j = 0; j < Sk; ++j) o += w[i][j] * vv[at_k(b, j, h, c)];
          out[at_q(b, i, h, c)] = o;
        }
    }
  }
  return out;
}

TEST(Attention, GradcheckQKVForOneTwoAndFourHeads) {
  for (int heads : {1, 2, 4}) {
    SCOPED_TRACE("heads " + std::to_string(heads));
    Tensor q = param(random_tensor({2, 5, 8}, 11));
    Tensor k = param(random_tensor({2, 5, 8}, 12));
    Tensor v = param(random_tensor({2, 5, 8}, 13));
    EXPECT_TRUE(gradcheck([heads](const Inputs& in) { return attention(in[0], in[1], in[2], heads); }, {q, k, v}));
  }
}

TEST(Attention, GradcheckPeakedSoftmaxAndSharedInput) {
  // Large scores make the softmax nearly one-hot, where dS is small and easily wrong.
  Tensor q = param(random_tensor({2, 5, 8}, 21, DType::f64, 3.0));
  Tensor k = param(random_tensor({2, 5, 8}, 22, DType::f64, 3.0));
  Tensor v = param(random_tensor({2, 5, 8}, 23));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return attention(in[0], in[1], in[2], 2); }, {q, k, v}));
  // Self-attention on an NHWC activation [N, H, W, C] -> [N, H*W, C], one tensor as q, k, v.
  Tensor x = param(random_tensor({2, 2, 3, 4}, 24));
  EXPECT_TRUE(gradcheck(
      [](const Inputs& in) {
        Tensor t = in[0].reshape({2, 6, 4});
        return attention(t, t, t, 2);
      },
      {x}));
}

TEST(Attention, ForwardMatchesNaivePerHeadComputation) {
  for (int heads : {1, 2, 4, 8}) {
    SCOPED_TRACE("heads " + std::to_string(heads));
    Tensor q = random_tensor({3, 7, 8}, 31, DType::f64, 1.5);
    Tensor k = random_tensor({3, 7, 8}, 32, DType::f64, 1.5);
    Tensor v = random_tensor({3, 7, 8}, 33);
    std::vector<double> expected = naive_attention(q, k, v, heads);
    std::vector<double> got = attention(q, k, v, heads).to_double_vector();
    ASSERT_EQ(got.size(), expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-13) << "element " << i;
    // The f32 path matches the f64 one to float rounding.
    Tensor out32 = attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), heads);
    EXPECT_EQ(out32.dtype(), DType::f32);
    EXPECT_TRUE(all_close(out32, Tensor::from_vector(expected, {3, 7, 8}), 1e-6, 1e-5));
  }
}

TEST(Attention, Float32GradientsMatchFloat64) {
  Tensor q = random_tensor({2, 9, 16}, 41), k = random_tensor({2, 9, 16}, 42), v = random_tensor({2, 9, 16}, 43);
  Tensor w = random_tensor({2, 9, 16}, 44);
  std::vector<Tensor> g64, g32;
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor qq = param(q.to(dt)), kk = param(k.to(dt)), vv = param(v.to(dt));
    attention(qq, kk, vv, 4).backward(w.to(dt));
    auto& g = dt == DType::f64 ? g64 : g32;
    g = {qq.grad(), kk.grad(), vv.grad()};
  }
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(all_close(g32[i], g64[i], 1e-5, 1e-4)) << "input " << i;
}

TEST(Attention, ZeroQueryGivesTheMeanOfValuesOverTokens) {
  const std::int64_t B = 2, S = 6, C = 8;
  Tensor q = Tensor::zeros({B, S, C}, DType::f64);
  Tensor k = random_tensor({B, S, C}, 51, DType::f64, 4.0);
  Tensor v = random_tensor({B, S, C}, 52);
  std::vector<double> vv = v.to_double_vector();
  for (int heads : {1, 4}) {
    std::vector<double> out = attention(q, k, v, heads).to_double_vector();
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t c = 0; c < C; ++c) {
        double mean = 0;
        for (std::int64_t s = 0; s < S; ++s) mean += vv[static_cast<std::size_t>((b * S + s) * C + c)] / S;
        for (std::int64_t s = 0; s < S; ++s)
          EXPECT_NEAR(out[static_cast<std::size_t>((b * S + s) * C + c)], mean, 1e-14);
      }
  }
}

// Cross-attention: q [B, Sq, C] from image tokens, k and v [B, Sk, C] from a context.
TEST(CrossAttention, GradcheckQKVWithFewerAndMoreKeysThanQueries) {
  struct Case {
    std::int64_t sq, sk;
    int heads;
  };
  for (const Case& c : {Case{6, 3, 2}, Case{6, 1, 2}, Case{6, 1, 1}, Case{2, 7, 4}, Case{1, 4, 1}}) {
    SCOPED_TRACE("Sq " + std::to_string(c.sq) + " Sk " + std::to_string(c.sk) + " heads " + std::to_string(c.heads));
    Tensor q = param(random_tensor({2, c.sq, 8}, 71, DType::f64, 1.5));
    Tensor k = param(random_tensor({2, c.sk, 8}, 72, DType::f64, 1.5));
    Tensor v = param(random_tensor({2, c.sk, 8}, 73));
    const int heads = c.heads;
    EXPECT_TRUE(gradcheck([heads](const Inputs& in) { return attention(in[0], in[1], in[2], heads); }, {q, k, v}));
  }
}

TEST(CrossAttention, ForwardMatchesNaivePerHeadComputation) {
  for (std::int64_t sk : {1, 3, 11}) {
    for (int heads : {1, 4}) {
      SCOPED_TRACE("Sk " + std::to_string(sk) + " heads " + std::to_string(heads));
      Tensor q = random_tensor({3, 5, 8}, 81, DType::f64, 1.5);
      Tensor k = random_tensor({3, sk, 8}, 82, DType::f64, 1.5);
      Tensor v = random_tensor({3, sk, 8}, 83);
      Tensor out = attention(q, k, v, heads);
      ASSERT_EQ(out.shape(), (Shape{3, 5, 8}));
      std::vector<double> expected = naive_attention(q, k, v, heads);
      std::vector<double> got = out.to_double_vector();
      for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-13) << "element " << i;
      Tensor out32 = attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), heads);
      EXPECT_TRUE(all_close(out32, Tensor::from_vector(expected, {3, 5, 8}), 1e-6, 1e-5));
    }
  }
}

TEST(CrossAttention, OneKeyCopiesItsValueAndGivesNoQueryOrKeyGradient) {
  // A softmax over one key is 1 whatever the score: out_i = v_0 for every query, so the
  // output does not depend on q or k (dq = dk = 0) and dv sums g over the queries.
  const std::int64_t B = 2, Sq = 5, C = 4;
  Tensor q = param(random_tensor({B, Sq, C}, 91, DType::f64, 3.0));
  Tensor k = param(random_tensor({B, 1, C}, 92, DType::f64, 3.0));
  Tensor v = param(random_tensor({B, 1, C}, 93));
  Tensor g = random_tensor({B, Sq, C}, 94);
  Tensor out = attention(q, k, v, 2);
  std::vector<double> o = out.to_double_vector(), vv = v.to_double_vector(), gv = g.to_double_vector();
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < Sq; ++i)
      for (std::int64_t c = 0; c < C; ++c)
        EXPECT_NEAR(o[static_cast<std::size_t>((b * Sq + i) * C + c)], vv[static_cast<std::size_t>(b * C + c)], 1e-15);
  out.backward(g);
  for (double x : q.grad().to_double_vector()) EXPECT_NEAR(x, 0.0, 1e-14);
  for (double x : k.grad().to_double_vector()) EXPECT_NEAR(x, 0.0, 1e-14);
  std::vector<double> dv = v.grad().to_double_vector();
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t c = 0; c < C; ++c) {
      double sum = 0;
      for (std::int64_t i = 0; i < Sq; ++i) sum += gv[static_cast<std::size_t>((b * Sq + i) * C + c)];
      EXPECT_NEAR(dv[static_cast<std::size_t>(b * C + c)], sum, 1e-13);
    }
}

TEST(Attention, IsOneTapeNode) {
  Tensor q = param(random_tensor({1, 4, 4}, 61));
  Tensor out = attention(q, q, q, 2);
  ASSERT_TRUE(out.impl()->grad_fn != nullptr);
  EXPECT_STREQ(out.impl()->grad_fn->name, "attention");
  EXPECT_EQ(out.impl()->grad_fn->inputs.size(), 3u);
  NoGradGuard no_grad;
  EXPECT_FALSE(attention(q, q, q, 2).requires_grad());
}

TEST(Attention, HeadsFromCountOrChannelsPerHead) {
  EXPECT_EQ(attention_heads(256, 4), 4);
  EXPECT_EQ(attention_heads(256, 1, 64), 4);
  EXPECT_EQ(attention_heads(128, 8, 64), 2);  // channels per head wins
  EXPECT_THROW(attention_heads(96, 1, 64), ValueError);
  EXPECT_THROW(attention_heads(96, 5), ValueError);
  EXPECT_THROW(attention_heads(96, 0), ValueError);
}

TEST(AttentionErrors, MessagesNameTheOpAndShapes) {
  Tensor x = Tensor::zeros({2, 5, 8});
  try {
    attention(x, x, x, 3);
    FAIL();
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("attention: num_heads 3 does not divide the 8 channels"), std::string::npos) << m;
  }
  // k and v may have another token count than q (cross-attention), but not another B or C,
  // and v must match k.
  expect_value_error([&] { attention(x, Tensor::zeros({3, 4, 8}), Tensor::zeros({3, 4, 8}), 2); },
                     "attention: 'k' must be [B, Sk, C] with the B = 2 and C = 8 of 'q' [2, 5, 8], got shape [3, 4, 8]");
  expect_value_error([&] { attention(x, Tensor::zeros({2, 4, 4}), Tensor::zeros({2, 4, 4}), 2); },
                     "with the B = 2 and C = 8 of 'q' [2, 5, 8], got shape [2, 4, 4]");
  expect_value_error([&] { attention(x, Tensor::zeros({2, 4, 8}), x, 2); },
                     "attention: 'v' must have the shape of 'k' [2, 4, 8] (one value per key), got [2, 5, 8]");
  expect_value_error([&] { attention(x, Tensor::zeros({2, 0, 8}), Tensor::zeros({2, 0, 8}), 2); },
                     "attention: 'k' and 'v' need at least one token, got shape [2, 0, 8]");
  expect_value_error([&] { attention(x, Tensor::zeros({8}), x, 2); }, "'k' must be [B, Sk, C]");
  EXPECT_THROW(attention(x, x, Tensor::zeros({2, 5, 4}), 2), ValueError);
  EXPECT_THROW(attention(x, x, x, 0), ValueError);
  EXPECT_THROW(attention(Tensor::zeros({2, 2, 2, 8}), x, x, 1), ValueError);  // NHWC not reshaped
  EXPECT_THROW(attention(x, x, Tensor::zeros({2, 5, 8}, DType::f64), 1), ValueError);
  EXPECT_THROW(attention(x, Tensor(), x, 1), ValueError);
}

}  // namespace
}  // namespace ddpm
