// Inverted dropout: gradient with a fixed generator state, the dropped fraction and the
// mean on a large tensor, the identity cases, reproducibility from (seed, offset), errors.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/dropout.h"
#include "kernels/common/philox.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;

TEST(Dropout, GradientWithAFixedMask) {
  Tensor x = random_tensor({3, 4, 5}, 1);
  x.set_requires_grad(true);
  // A fresh generator in every evaluation: the same (seed, offset), so the same mask.
  EXPECT_TRUE(gradcheck(
      [](const Inputs& in) {
        Generator gen(1234, 8);
        return dropout(in[0], 0.3, gen, true);
      },
      {x}));
}

TEST(Dropout, DropsAboutPAndKeepsTheMean) {
  const std::int64_t n = 1 << 18;
  Tensor ones = Tensor::full({n}, 1.0, DType::f32);
  for (double p : {0.1, 0.5}) {
    SCOPED_TRACE(p);
    Generator gen(7);
    std::vector<float> y = dropout(ones, p, gen, true).to_vector();
    std::int64_t dropped = 0;
    double sum = 0;
    for (float v : y) {
      if (v == 0.f)
        ++dropped;
      else
        EXPECT_FLOAT_EQ(v, static_cast<float>(1.0 / (1.0 - p)));
      sum += v;
    }
    // Binomial standard deviation of the fraction: sqrt(p (1 - p) / n) <= 0.001.
    EXPECT_NEAR(static_cast<double>(dropped) / n, p, 0.005);
    EXPECT_NEAR(sum / n, 1.0, 0.01);  // E[y] = x
    EXPECT_EQ(gen.offset(), static_cast<std::uint64_t>(n));
  }
}

TEST(Dropout, MaskIsThePhiloxStreamAndBackwardReusesIt) {
  Tensor x = random_tensor({100}, 2);
  x.set_requires_grad(true);
  Generator gen(99, 40);
  const double p = 0.25;
  Tensor y = dropout(x, p, gen, true);
  std::vector<double> xv = x.to_double_vector(), yv = y.to_double_vector();
  for (std::size_t i = 0; i < xv.size(); ++i) {
    bool drop = philox::uniform_at(99, 40 + i) < p;
    EXPECT_EQ(yv[i], drop ? 0.0 : xv[i] * (1.0 / 0.75)) << i;  // x * scale, scale = 1/(1-p)
  }
  y.backward(Tensor::full({100}, 1.0, DType::f64));
  std::vector<double> gv = x.grad().to_double_vector();
  for (std::size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(gv[i], yv[i] == 0.0 ? 0.0 : 1.0 / 0.75) << i;
  // The next draw uses fresh elements of the stream.
  Tensor y2 = dropout(x, p, gen, true);
  EXPECT_NE(y2.to_double_vector(), yv);
}

TEST(Dropout, IdentityWhenEvaluatingOrPZero) {
  Tensor x = random_tensor({4, 4}, 3);
  Generator gen(5);
  EXPECT_TRUE(dropout(x, 0.5, gen, false).same_as(x));
  EXPECT_TRUE(dropout(x, 0.0, gen, true).same_as(x));
  EXPECT_EQ(gen.offset(), 0u);  // nothing drawn
}

TEST(Dropout, Errors) {
  Tensor x = Tensor::zeros({4});
  Generator gen(5);
  for (double p : {-0.1, 1.0, 1.5, std::nan("")}) {
    try {
      dropout(x, p, gen, true);
      FAIL() << p;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("dropout: probability p"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace ddpm
