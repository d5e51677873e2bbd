// The tape: accumulation, shared inputs, no-grad, detach, deep graphs, and errors.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

namespace ddpm {
namespace {

Tensor leaf(std::vector<double> v) {
  Shape s{static_cast<std::int64_t>(v.size())};
  Tensor t = Tensor::from_vector(v, s);
  t.set_requires_grad(true);
  return t;
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1, 2, 3});
  sum(mul(x, x)).backward();  // d/dx sum x^2 = 2x
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{2, 4, 6}));
  sum(scale(x, 3.0)).backward();  // += 3
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{5, 7, 9}));
}

TEST(Autograd, ASharedInputSumsItsGradients) {
  // y = x*x + x*3 (x read three times, two paths through different nodes)
  Tensor x = leaf({2});
  Tensor y = add(mul(x, x), scale(x, 3.0));
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 2 * 2 + 3);
}

TEST(Autograd, DiamondGraphVisitsEachNodeOnce) {
  Tensor x = leaf({1.5});
  Tensor a = exp(x);
  Tensor y = mul(add(a, a), a);  // 2 e^{2x}; dy/dx = 4 e^{2x}
  y.backward();
  EXPECT_NEAR(x.grad().item(), 4 * std::exp(3.0), 1e-12);
}

TEST(Autograd, NoGradRecordsNothingAndDetachCutsTheTape) {
  Tensor x = leaf({1, 2});
  {
    NoGradGuard guard;
    Tensor y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
  }
  Tensor y = mul(x.detach(), x);  // only the right factor is differentiated
  sum(y).backward();
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{1, 2}));
  EXPECT_FALSE(x.detach().requires_grad());
}

TEST(Autograd, EnableGradInsideNoGradRecordsThenRestores) {
  Tensor x = leaf({3});
  NoGradGuard off;
  {
    EnableGradGuard on;
    EXPECT_TRUE(grad_enabled());
    Tensor y = mul(x, x);
    ASSERT_TRUE(y.requires_grad());
    y.backward();
    EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{6}));  // d x^2 / dx at 3
  }
  EXPECT_FALSE(grad_enabled());
  EXPECT_FALSE(mul(x, x).requires_grad());
}

TEST(Autograd, DeepChainsDoNotRecurse) {
  Tensor x = leaf({1});
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = add_scalar(y, 1e-6);
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
}

TEST(Autograd, BackwardErrorsAreClear) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2}, {2});
  EXPECT_THROW(sum(x).backward(), ValueError);  // nothing requires grad
  Tensor y = mul(leaf({1, 2}), leaf({3, 4}));
  EXPECT_THROW(y.backward(), ValueError);  // not a single element and no gradient given
  EXPECT_THROW(y.backward(Tensor::zeros({3}, DType::f64)), ValueError);
}

TEST(Autograd, PreboundLeafGradientIsAccumulatedInPlace) {
  // The parameter slab binds .grad to a view of the gradient slab; backward must add into
  // that very buffer rather than replace it.
  Tensor x = leaf({1, 1});
  Tensor slot = Tensor::full({2}, 10.0, DType::f64);
  x.set_grad(slot);
  sum(scale(x, 2.0)).backward();
  EXPECT_TRUE(x.grad().same_as(slot));
  EXPECT_EQ(slot.to_double_vector(), (std::vector<double>{12, 12}));
}

}  // namespace
}  // namespace ddpm

#include "support/gradcheck.h"

namespace ddpm {
namespace {

// The checker itself must be able to fail: an op whose backward is off by a factor of 2
// has to be caught, and the correct one has to pass.
TEST(Gradcheck, CatchesAWrongBackward) {
  auto doubled = [](double factor) {
    return [factor](const std::vector<Tensor>& in) {
      Tensor out = scale(in[0].detach(), 3.0);
      record(out, "test_scale", {in[0]}, [factor](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{scale(g, 3.0 * factor)};
      });
      return out;
    };
  };
  Tensor x = testing::random_tensor({4}, 1);
  x.set_requires_grad(true);
  EXPECT_TRUE(testing::gradcheck(doubled(1.0), {x}));
  EXPECT_FALSE(testing::gradcheck(doubled(2.0), {x}));
}

}  // namespace
}  // namespace ddpm
