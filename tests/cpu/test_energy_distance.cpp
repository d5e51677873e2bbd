// The energy distance of ddpm-toy (models/toy/energy_distance.h): exact values on tiny sets,
// the closed form for shifted Gaussians (the Rice mean) against its large-shift asymptote,
// and the V-statistic on Gaussian draws against closed form + its known bias.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/rng.h"
#include "models/toy/energy_distance.h"

namespace ddpm {
namespace {

std::vector<float> gaussian(std::int64_t n, double shift, std::uint64_t seed) {
  Generator g(seed);
  std::vector<float> p = randn({n, 2}, g).to_vector();
  for (std::int64_t i = 0; i < n; ++i) p[2 * i] += static_cast<float>(shift);
  return p;
}

TEST(EnergyDistance, ExactOnTinySets) {
  const std::vector<float> a = {0.5f, -1.0f, 2.0f, 3.0f, -1.0f, 0.0f};
  EXPECT_EQ(toy::energy_distance(a, a), 0.0);
  // One point each: 2 |a - b| (the within-set terms vanish).
  EXPECT_NEAR(toy::energy_distance({0, 0}, {3, 4}), 10.0, 1e-12);
  // {0, 2} against {1} on a line: 2 * 1 - (0 + 2 + 2 + 0) / 4 - 0 = 1.
  EXPECT_NEAR(toy::energy_distance({0, 0, 2, 0}, {1, 0}), 1.0, 1e-12);
  EXPECT_TRUE(std::isnan(toy::energy_distance({NAN, 0}, {0, 0})));  // never a perfect score
  EXPECT_THROW(toy::energy_distance({}, a), ValueError);
  EXPECT_THROW(toy::energy_distance({1, 2, 3}, a), ValueError);
}

TEST(EnergyDistance, ClosedFormIsZeroAtNoShiftAndLinearFarAway) {
  EXPECT_NEAR(toy::gaussian_shift_energy_distance(0.0), 0.0, 1e-12);
  // |N(mu, 2 I)| ~ |mu| + 2 / (2 |mu|) for large |mu| (the perpendicular spread), so
  // D^2 -> 2 (|mu| + 1 / |mu|) - 2 sqrt(pi), up to O(|mu|^-3).
  for (double mu : {10.0, 20.0})
    EXPECT_NEAR(toy::gaussian_shift_energy_distance(mu), 2 * (mu + 1 / mu) - 2 * std::sqrt(M_PI), 3 / (mu * mu * mu));
  // Small shifts: D^2 grows like mu^2 (a smooth, even function of mu with minimum 0).
  const double d1 = toy::gaussian_shift_energy_distance(0.01), d2 = toy::gaussian_shift_energy_distance(0.02);
  EXPECT_NEAR(d2 / d1, 4.0, 0.01);
}

TEST(EnergyDistance, VStatisticMatchesClosedFormPlusItsBias) {
  // E[D_V^2] = D^2 + (1/n + 1/m) E|X - X'| with E|X - X'| = sqrt(pi) for N(0, I_2).
  const std::int64_t n = 1500;
  const double bias = 2.0 / n * std::sqrt(M_PI);
  double previous = -1;
  for (double shift : {0.0, 0.5, 1.0, 2.0}) {
    const double d = toy::energy_distance(gaussian(n, 0.0, 1), gaussian(n, shift, 2));
    const double expected = toy::gaussian_shift_energy_distance(shift) + bias;
    std::printf("[ energy ] shift %.1f: %.5f, closed form + bias %.5f\n", shift, d, expected);
    EXPECT_NEAR(d, expected, 0.1 * expected + 0.002) << "shift " << shift;
    EXPECT_GT(d, previous) << "grows with the shift";
    previous = d;
  }
}

}  // namespace
}  // namespace ddpm
