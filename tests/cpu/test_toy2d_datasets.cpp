// The 2-D datasets of ddpm-toy (models/toy/datasets2d.h): each one's standardized moments
// against the closed forms of the header (sample mean 0, mean per-coordinate variance 1),
// and its geometry against its raw definition after undoing the standardization: the
// mixture's modes, the moons' two halves, the swiss roll's turns, the checkerboard's cells,
// the rings' radii. And reproducibility from a seed.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/toy/datasets2d.h"

namespace ddpm {
namespace {

constexpr std::int64_t kN = 20000;

// The raw coordinates of point i (the standardization undone).
std::array<double, 2> raw(const PointDataset& d, const toy::Standardization& st, std::int64_t i) {
  return {d.points[2 * i] * st.scale + st.mean[0], d.points[2 * i + 1] * st.scale + st.mean[1]};
}

TEST(Toy2dDatasets, EveryDatasetIsCentredWithUnitVariance) {
  for (const std::string& name : toy::toy2d_names()) {
    const PointDataset d = toy::make_toy2d(name, kN, 11);
    ASSERT_EQ(d.points.size(), static_cast<std::size_t>(2 * kN)) << name;
    double m[2] = {0, 0}, v[2] = {0, 0};
    for (std::int64_t i = 0; i < kN; ++i)
      for (int c = 0; c < 2; ++c) m[c] += d.points[2 * i + c] / double(kN);
    for (std::int64_t i = 0; i < kN; ++i)
      for (int c = 0; c < 2; ++c) v[c] += (d.points[2 * i + c] - m[c]) * (d.points[2 * i + c] - m[c]) / double(kN);
    // Standard errors at n = 20000: ~0.01 for a mean, ~0.015 for a variance of these shapes.
    EXPECT_NEAR(m[0], 0.0, 0.04) << name;
    EXPECT_NEAR(m[1], 0.0, 0.04) << name;
    EXPECT_NEAR((v[0] + v[1]) / 2, 1.0, 0.04) << name;
  }
}

TEST(Toy2dDatasets, SameSeedSamePointsOtherSeedOtherPoints) {
  for (const std::string& name : toy::toy2d_names()) {
    EXPECT_EQ(toy::make_toy2d(name, 100, 5).points, toy::make_toy2d(name, 100, 5).points) << name;
    EXPECT_NE(toy::make_toy2d(name, 100, 5).points, toy::make_toy2d(name, 100, 6).points) << name;
  }
  EXPECT_THROW(toy::make_toy2d("spiral", 10, 0), ValueError);
}

TEST(Toy2dDatasets, GaussiansSitOnTheirModes) {
  const PointDataset d = toy::make_toy2d("gaussians8", kN, 1);
  ASSERT_EQ(d.centres.size(), 8u);
  double sq = 0;
  for (std::int64_t i = 0; i < kN; ++i) {
    const auto& c = d.centres[static_cast<std::size_t>(d.labels[i])];
    EXPECT_NEAR(std::hypot(c[0], c[1]), std::sqrt(2 * (1 - 0.01)), 1e-12);
    sq += (std::pow(d.points[2 * i] - c[0], 2) + std::pow(d.points[2 * i + 1] - c[1], 2)) / (2.0 * kN);
  }
  EXPECT_NEAR(std::sqrt(sq), 0.1, 0.003);  // the per-coordinate std of each mode
}

TEST(Toy2dDatasets, MoonsAreTwoHalfCircles) {
  const PointDataset d = toy::make_toy2d("moons", kN, 2);
  const toy::Standardization st = toy::toy2d_standardization("moons");
  double count[2] = {0, 0}, radius[2] = {0, 0}, on_side[2] = {0, 0};
  for (std::int64_t i = 0; i < kN; ++i) {
    const auto p = raw(d, st, i);
    const int h = static_cast<int>(d.labels[i]);
    // Upper: unit circle around (0, 0), y >= 0; lower: unit circle around (1, 1/2), y <= 1/2.
    const double cx = h == 0 ? 0.0 : 1.0, cy = h == 0 ? 0.0 : 0.5;
    count[h] += 1;
    radius[h] += std::hypot(p[0] - cx, p[1] - cy);
    on_side[h] += h == 0 ? p[1] > -0.24 : p[1] < 0.74;  // 3 noise std past the flat side
  }
  for (int h = 0; h < 2; ++h) {
    EXPECT_NEAR(count[h] / kN, 0.5, 0.02) << "half " << h;
    EXPECT_NEAR(radius[h] / count[h], 1.0, 0.01) << "half " << h;
    EXPECT_GE(on_side[h] / count[h], 0.99) << "half " << h;
  }
}

TEST(Toy2dDatasets, SwissRollPointsLieOnTheSpiralNotBetweenItsTurns) {
  const PointDataset d = toy::make_toy2d("swissroll", kN, 3);
  const toy::Standardization st = toy::toy2d_standardization("swissroll");
  const double pi = std::acos(-1.0);
  int near = 0;
  for (std::int64_t i = 0; i < kN; ++i) {
    const auto p = raw(d, st, i);
    // The spiral th (cos th, sin th): a point at angle phi and radius r is |r - th| from the
    // turn th = phi + 2 pi k nearest in radius; the turns are 2 pi apart.
    const double r = std::hypot(p[0], p[1]), phi = std::atan2(p[1], p[0]);
    double best = 1e9;
    for (int k = -1; k <= 3; ++k) best = std::min(best, std::fabs(r - (phi + 2 * pi * k)));
    near += best < 1.6;  // 4 noise std; the gaps are pi wide on each side
  }
  EXPECT_GE(near / double(kN), 0.99);
}

TEST(Toy2dDatasets, CheckerboardFillsOnlyTheEvenCells) {
  const PointDataset d = toy::make_toy2d("checkerboard", kN, 4);
  const toy::Standardization st = toy::toy2d_standardization("checkerboard");
  std::vector<double> per_cell(8, 0);
  for (std::int64_t i = 0; i < kN; ++i) {
    const auto p = raw(d, st, i);
    ASSERT_TRUE(p[0] >= -2 - 1e-6 && p[0] <= 2 + 1e-6 && p[1] >= -2 - 1e-6 && p[1] <= 2 + 1e-6) << i;
    const int ci = static_cast<int>(std::floor(p[0] + 1e-9)), cj = static_cast<int>(std::floor(p[1] + 1e-9));
    EXPECT_EQ(((ci + cj) % 2 + 2) % 2, 0) << "point " << i << " at " << p[0] << ", " << p[1];
    // The 8 filled cells: rows cj in {-2..1}, two columns each.
    per_cell[static_cast<std::size_t>(2 * (std::min(cj, 1) + 2) + (std::min(ci, 1) + 2) / 2)] += 1.0 / kN;
  }
  for (double f : per_cell) EXPECT_NEAR(f, 1.0 / 8, 0.01);
}

TEST(Toy2dDatasets, RingsHaveRadiiOneTwoThree) {
  const PointDataset d = toy::make_toy2d("rings", kN, 5);
  const toy::Standardization st = toy::toy2d_standardization("rings");
  double count[3] = {0, 0, 0}, r1[3] = {0, 0, 0}, r2[3] = {0, 0, 0};
  for (std::int64_t i = 0; i < kN; ++i) {
    const auto p = raw(d, st, i);
    const int k = static_cast<int>(d.labels[i]);
    const double r = std::hypot(p[0], p[1]);
    count[k] += 1, r1[k] += r, r2[k] += r * r;
  }
  for (int k = 0; k < 3; ++k) {
    const double mean = r1[k] / count[k], sd = std::sqrt(r2[k] / count[k] - mean * mean);
    EXPECT_NEAR(count[k] / kN, 1.0 / 3, 0.02) << "ring " << k;
    EXPECT_NEAR(mean, k + 1.0, 0.01) << "ring " << k;
    EXPECT_NEAR(sd, 0.08, 0.01) << "ring " << k;  // the radial part of the isotropic noise
  }
}

}  // namespace
}  // namespace ddpm
