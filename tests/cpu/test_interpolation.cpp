// Slerp of DDIM latents (models/diffusion/interpolation.h): the endpoints, constant norm on
// the great circle, the angle growing linearly in the fraction, and the reason for slerp:
// the norm of lerp's midpoint of two Gaussian latents collapses to sqrt(D / 2).
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/rng.h"
#include "models/diffusion/interpolation.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

double dot(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  double d = 0;
  for (std::size_t k = 0; k < x.size(); ++k) d += x[k] * y[k];
  return d;
}
double norm(const Tensor& a) { return std::sqrt(dot(a, a)); }
double angle(const Tensor& a, const Tensor& b) { return std::acos(dot(a, b) / (norm(a) * norm(b))); }

Tensor gaussian(std::uint64_t seed, const Shape& shape = {1, 4, 4, 3}) {
  Generator g(seed);
  return randn(shape, g, Device::cpu(), DType::f64);
}

TEST(Slerp, EndpointsAreTheInputs) {
  const Tensor a = gaussian(1), b = gaussian(2);
  const std::vector<double> va = a.to_double_vector(), vb = b.to_double_vector();
  const std::vector<double> s0 = slerp(a, b, 0.0).to_double_vector(), s1 = slerp(a, b, 1.0).to_double_vector();
  for (std::size_t k = 0; k < va.size(); ++k) {
    EXPECT_NEAR(s0[k], va[k], 1e-12);
    EXPECT_NEAR(s1[k], vb[k], 1e-12);
  }
}

TEST(Slerp, KeepsTheNormOfEqualNormOrthogonalInputs) {
  // b = the part of a second draw orthogonal to a, rescaled to |a| (Gram-Schmidt).
  const Tensor a = gaussian(3), r = gaussian(4);
  std::vector<double> va = a.to_double_vector(), vb = r.to_double_vector();
  const double proj = dot(a, r) / dot(a, a);
  for (std::size_t k = 0; k < vb.size(); ++k) vb[k] -= proj * va[k];
  Tensor b = Tensor::from_vector(vb, a.shape());
  b = Tensor::from_vector([&] {
        std::vector<double> v = b.to_double_vector();
        const double f = norm(a) / norm(b);
        for (double& e : v) e *= f;
        return v;
      }(), a.shape());
  ASSERT_NEAR(slerp_angle(a, b), M_PI / 2, 1e-12);
  for (double f : {0.1, 0.25, 0.5, 0.8}) EXPECT_NEAR(norm(slerp(a, b, f)), norm(a), 1e-12 * norm(a)) << f;
}

TEST(Slerp, AngleIsLinearInTheFraction) {
  // Equal norms at an angle well below pi/2 (not orthogonal): slerp moves along the great
  // circle with angle(a, slerp(f)) = f theta and angle(slerp(f), b) = (1 - f) theta.
  const Tensor a = gaussian(5);
  std::vector<double> vb = gaussian(6).to_double_vector(), va = a.to_double_vector();
  for (std::size_t k = 0; k < vb.size(); ++k) vb[k] = 2.0 * vb[k] + 1.5 * va[k];
  const double rescale = norm(a) / norm(Tensor::from_vector(vb, a.shape()));
  for (double& e : vb) e *= rescale;
  const Tensor b = Tensor::from_vector(vb, a.shape());
  const double theta = slerp_angle(a, b);
  EXPECT_NEAR(theta, angle(a, b), 1e-12);
  for (double f : {0.2, 0.5, 0.7}) {
    const Tensor m = slerp(a, b, f);
    EXPECT_NEAR(angle(a, m), f * theta, 1e-9) << f;
    EXPECT_NEAR(angle(m, b), (1 - f) * theta, 1e-9) << f;
  }
}

TEST(Slerp, KeepsGaussianLatentsTypicalWhereLerpDoesNot) {
  // Two independent N(0, I) latents of D = 3072 (32x32x3): norms about sqrt(D), nearly
  // orthogonal. Slerp's midpoint keeps the norm; lerp's falls to about sqrt(D / 2).
  const Tensor a = gaussian(7, {1, 32, 32, 3}), b = gaussian(8, {1, 32, 32, 3});
  const double rootD = std::sqrt(3072.0);
  EXPECT_NEAR(slerp_angle(a, b), M_PI / 2, 0.1);
  EXPECT_NEAR(norm(slerp(a, b, 0.5)) / rootD, 1.0, 0.05);
  std::vector<double> lerp = a.to_double_vector(), vb = b.to_double_vector();
  for (std::size_t k = 0; k < lerp.size(); ++k) lerp[k] = 0.5 * lerp[k] + 0.5 * vb[k];
  EXPECT_NEAR(norm(Tensor::from_vector(lerp, a.shape())) / rootD, std::sqrt(0.5), 0.05);
}

TEST(Slerp, ParallelInputsAndErrors) {
  const Tensor a = gaussian(9);
  const std::vector<double> m = slerp(a, a, 0.3).to_double_vector(), va = a.to_double_vector();
  for (std::size_t k = 0; k < va.size(); ++k) EXPECT_NEAR(m[k], va[k], 1e-12);
  testing::expect_value_error([&] { slerp(a, gaussian(1, {1, 2, 2, 3}), 0.5); }, "one shape");
  testing::expect_value_error([&] { slerp(a, a, 1.5); }, "[0, 1]");
  testing::expect_value_error([&] { slerp(a, Tensor::zeros(a.shape(), DType::f64), 0.5); }, "zero vector");
  EXPECT_EQ(interpolation_fractions(5), (std::vector<double>{0.0, 0.25, 0.5, 0.75, 1.0}));
  testing::expect_value_error([&] { interpolation_fractions(1); }, "at least 2 frames");
}

}  // namespace
}  // namespace ddpm::diffusion
