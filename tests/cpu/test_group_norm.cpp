// GroupNorm (+ AdaGN, + SiLU) on the CPU: finite-difference gradients in double of every
// input in all four variants, forward values against a naive computation written here,
// the zero-mean / unit-variance property, and the error messages.
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/group_norm.h"
#include "support/gradcheck.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using testing::expect_value_error;
using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;
using testing::param;

struct Variant {
  const char* name;
  bool silu, adagn;
};
const Variant kVariants[] = {{"plain", false, false}, {"silu", true, false}, {"adagn", false, true},
                             {"adagn_silu", true, true}};

// Naive y for one element, straight from the definition: the group's mean and biased
// variance computed here from all of its elements.
std::vector<double> naive_group_norm(const std::vector<double>& x, const Shape& s, int G,
                                     const std::vector<double>& gamma, const std::vector<double>& beta,
                                     const std::vector<double>* scale, const std::vector<double>* shift, double eps,
                                     bool silu) {
  const std::int64_t N = s[0], C = s.back(), HW = static_cast<std::int64_t>(x.size()) / (N * C), Cg = C / G;
  std::vector<double> y(x.size());
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t g = 0; g < G; ++g) {
      std::vector<double> vals;
      for (std::int64_t p = 0; p < HW; ++p)
        for (std::int64_t c = g * Cg; c < (g + 1) * Cg; ++c) vals.push_back(x[static_cast<std::size_t>((n * HW + p) * C + c)]);
      double mu = 0, var = 0;
      for (double v : vals) mu += v;
      mu /= static_cast<double>(vals.size());
      for (double v : vals) var += (v - mu) * (v - mu);
      var /= static_cast<double>(vals.size());
      for (std::int64_t p = 0; p < HW; ++p)
        for (std::int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
          std::size_t i = static_cast<std::size_t>((n * HW + p) * C + c), nc = static_cast<std::size_t>(n * C + c);
          double z = (x[i] - mu) / std::sqrt(var + eps) * gamma[static_cast<std::size_t>(c)] +
                     beta[static_cast<std::size_t>(c)];
          if (scale) z = z * (1 + (*scale)[nc]) + (*shift)[nc];
          y[i] = silu ? z / (1 + std::exp(-z)) : z;
        }
    }
  return y;
}

TEST(GroupNormGrad, EveryInputInEveryVariant) {
  const Shape xs{2, 3, 3, 8};
  for (int G : {4, 1, 8}) {
    for (const Variant& v : kVariants) {
      SCOPED_TRACE(std::string(v.name) + " G=" + std::to_string(G));
      Inputs in{param(random_tensor(xs, 11, DType::f64, 1.5)), param(random_tensor({8}, 12)),
                param(random_tensor({8}, 13)), Tensor(), Tensor()};
      if (v.adagn) {
        in[3] = param(random_tensor({2, 8}, 14, DType::f64, 0.5));
        in[4] = param(random_tensor({2, 8}, 15));
      }
      const bool silu = v.silu;
      EXPECT_TRUE(gradcheck(
          [G, silu](const Inputs& t) { return group_norm(t[0], G, t[1], t[2], 1e-5, silu, t[3], t[4]); }, in));
    }
  }
}

TEST(GroupNormGrad, TokensLayoutAndFloat32Forward) {
  // [N, S, C] tokens, the attention layout.
  Inputs in{param(random_tensor({2, 5, 6}, 21)), param(random_tensor({6}, 22)), param(random_tensor({6}, 23)),
            param(random_tensor({2, 6}, 24, DType::f64, 0.3)), param(random_tensor({2, 6}, 25))};
  EXPECT_TRUE(gradcheck([](const Inputs& t) { return group_norm(t[0], 3, t[1], t[2], 1e-5, true, t[3], t[4]); }, in));
  // The float instantiation agrees with the double one.
  Tensor y64 = group_norm(in[0], 3, in[1], in[2], 1e-5, true, in[3], in[4]);
  Tensor y32 = group_norm(in[0].to(DType::f32), 3, in[1].to(DType::f32), in[2].to(DType::f32), 1e-5, true,
                          in[3].to(DType::f32), in[4].to(DType::f32));
  EXPECT_TRUE(testing::all_close(y32, y64, 1e-5, 1e-5));
}

TEST(GroupNormForward, MatchesNaiveComputation) {
  const Shape s{3, 4, 5, 12};
  // A large common offset: the statistics must not lose the variance to cancellation.
  std::vector<double> xv = random_tensor(s, 31, DType::f64, 2.0).to_double_vector();
  for (double& v : xv) v += 50.0;
  std::vector<double> gamma = random_tensor({12}, 32).to_double_vector();
  std::vector<double> beta = random_tensor({12}, 33).to_double_vector();
  std::vector<double> scale = random_tensor({3, 12}, 34, DType::f64, 0.5).to_double_vector();
  std::vector<double> shift = random_tensor({3, 12}, 35).to_double_vector();
  Tensor x = Tensor::from_vector(xv, s), g = Tensor::from_vector(gamma, {12}), b = Tensor::from_vector(beta, {12});
  Tensor sc = Tensor::from_vector(scale, {3, 12}), sh = Tensor::from_vector(shift, {3, 12});
  for (int G : {1, 3, 4, 12}) {
    for (const Variant& v : kVariants) {
      SCOPED_TRACE(std::string(v.name) + " G=" + std::to_string(G));
      std::vector<double> expected = naive_group_norm(xv, s, G, gamma, beta, v.adagn ? &scale : nullptr,
                                                      v.adagn ? &shift : nullptr, 1e-5, v.silu);
      Tensor y64 = group_norm(x, G, g, b, 1e-5, v.silu, v.adagn ? sc : Tensor(), v.adagn ? sh : Tensor());
      EXPECT_TRUE(testing::all_close(y64, Tensor::from_vector(expected, s), 1e-12, 1e-10));
      Tensor y32 = group_norm(x.to(DType::f32), G, g.to(DType::f32), b.to(DType::f32), 1e-5, v.silu,
                              v.adagn ? sc.to(DType::f32) : Tensor(), v.adagn ? sh.to(DType::f32) : Tensor());
      // x is stored in f32 (about 50 * 6e-8 = 3e-6 absolute), which dominates the error.
      EXPECT_TRUE(testing::all_close(y32, Tensor::from_vector(expected, s), 2e-5, 1e-5));
    }
  }
}

TEST(GroupNormForward, EachGroupHasZeroMeanAndUnitVariance) {
  const Shape s{2, 6, 6, 16};
  const int G = 4;
  Tensor x = add_scalar(random_tensor(s, 41, DType::f64, 3.0), -7.0);
  std::vector<double> y = group_norm(x, G, Tensor::full({16}, 1.0, DType::f64), Tensor::zeros({16}, DType::f64))
                              .to_double_vector();
  const std::int64_t HW = 36, C = 16, Cg = 4;
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t g = 0; g < G; ++g) {
      double sum = 0, sq = 0;
      for (std::int64_t p = 0; p < HW; ++p)
        for (std::int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
          double v = y[static_cast<std::size_t>((n * HW + p) * C + c)];
          sum += v;
          sq += v * v;
        }
      const double M = static_cast<double>(HW * Cg);
      EXPECT_NEAR(sum / M, 0.0, 1e-12);
      // var / (var + eps) with var about 9: within 1e-5 of 1.
      EXPECT_NEAR(sq / M, 1.0, 1e-5);
    }
}

TEST(GroupNormForward, ConstantGroupGivesBeta) {
  // A constant group has variance 0: xhat = 0, y = beta, and rstd = 1/sqrt(eps) stays finite.
  Tensor x = Tensor::full({1, 2, 2, 4}, 3.0, DType::f64);
  Tensor beta = Tensor::from_vector(std::vector<double>{0.5, -1, 2, 0}, {4});
  std::vector<double> y = group_norm(x, 2, Tensor::full({4}, 2.0, DType::f64), beta).to_double_vector();
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_DOUBLE_EQ(y[i], beta.to_double_vector()[i % 4]);
}

TEST(GroupNormErrors, MessagesNameTheProblem) {
  Tensor x = Tensor::zeros({2, 3, 3, 8});
  Tensor g = Tensor::full({8}, 1.0), b = Tensor::zeros({8}), s = Tensor::zeros({2, 8});
  expect_value_error([&] { group_norm(x, 3, g, b); }, "num_groups = 3 must be positive and divide the 8 channels");
  expect_value_error([&] { group_norm(x, 0, g, b); }, "num_groups = 0");
  expect_value_error([&] { group_norm(x, 4, Tensor::zeros({4}), b); }, "'gamma' must have shape [8]");
  expect_value_error([&] { group_norm(x, 4, g, Tensor::zeros({2, 8})); }, "'beta' must have shape [8]");
  expect_value_error([&] { group_norm(x, 4, g, b, 1e-5, false, s, Tensor()); }, "got only 'scale'");
  expect_value_error([&] { group_norm(x, 4, g, b, 1e-5, false, Tensor(), s); }, "got only 'shift'");
  expect_value_error([&] { group_norm(x, 4, g, b, 1e-5, false, Tensor::zeros({8}), s); },
                     "'scale' must have shape [2, 8]");
  expect_value_error([&] { group_norm(Tensor::zeros({16, 8}), 4, g, b); }, "must be [N, H, W, C] or [N, S, C]");
  expect_value_error([&] { group_norm(x, 4, g.to(DType::f64), b); }, "'gamma' is f64");
  expect_value_error([&] { group_norm(x, 4, Tensor(), b); }, "'gamma' is an undefined tensor");
}

}  // namespace
}  // namespace ddpm
