// The classes of the 2-D datasets (models/toy/datasets2d.h), each checked against its
// definition recomputed from the point itself (the standardization undone): the nearest
// mode, the nearer moon, the third of the swiss roll, the quadrant of the board, the nearest
// ring; the classes have equal weights; and the points of a seed are the ones the datasets
// gave before they had labels (the labels reuse the draws, they add none).
#include <cmath>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/toy/datasets2d.h"

namespace ddpm {
namespace {

constexpr std::int64_t kN = 20000;
const double kPi = std::acos(-1.0);

std::array<double, 2> raw(const PointDataset& d, const toy::Standardization& st, std::int64_t i) {
  return {d.points[2 * i] * st.scale + st.mean[0], d.points[2 * i + 1] * st.scale + st.mean[1]};
}

// FNV-1a over the bytes of the f32 coordinates.
std::uint64_t fingerprint(const std::vector<float>& v) {
  std::uint64_t h = 1469598103934665603ull;
  for (const float f : v) {
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    for (int k = 0; k < 4; ++k) h = (h ^ ((b >> (8 * k)) & 0xffu)) * 1099511628211ull;
  }
  return h;
}

TEST(Toy2dLabels, PointsOfASeedAreTheSameAsBeforeTheLabels) {
  // Fingerprints of make_toy2d(name, 1000, 5).points taken from the code before labels were
  // added to swissroll and the checkerboard's labels became quadrants (commit of this test's
  // parent). A changed draw order or formula changes them.
  const std::vector<std::pair<std::string, std::uint64_t>> pinned = {
      {"gaussians8", 0xa55e3b9d1910c274ull}, {"moons", 0xd951753b775063b2ull},
      {"swissroll", 0x7eb1d9c89cbde039ull},  {"checkerboard", 0x841098cfb465552cull},
      {"rings", 0x6b2d7372b6425c1eull}};
  for (const auto& [name, fp] : pinned) EXPECT_EQ(fingerprint(toy::make_toy2d(name, 1000, 5).points), fp) << name;
}

// The class of a raw point by the dataset's definition (-1: none can be told, e.g. a
// swiss-roll point nearer no turn).
int defined_class(const std::string& name, const PointDataset& d, const std::array<double, 2>& p) {
  if (name == "gaussians8") {
    int best = 0;
    for (int k = 1; k < 8; ++k)
      if (std::hypot(p[0] - d.centres[k][0], p[1] - d.centres[k][1]) <
          std::hypot(p[0] - d.centres[best][0], p[1] - d.centres[best][1]))
        best = k;
    return best;
  }
  if (name == "moons") {  // unit circles around (0, 0) (upper) and (1, 1/2) (lower)
    const double up = std::fabs(std::hypot(p[0], p[1]) - 1.0) + (p[1] < -0.3 ? 10 : 0);
    const double lo = std::fabs(std::hypot(p[0] - 1.0, p[1] - 0.5) - 1.0) + (p[1] > 0.8 ? 10 : 0);
    return up < lo ? 0 : 1;
  }
  if (name == "swissroll") {  // the turn th = phi + 2 pi k nearest in radius, then its third
    const double r = std::hypot(p[0], p[1]), phi = std::atan2(p[1], p[0]);
    double th = -1, best = 1e9;
    for (int k = -1; k <= 3; ++k) {
      const double cand = phi + 2 * kPi * k;
      if (cand >= 1.5 * kPi - 0.5 && cand <= 4.5 * kPi + 0.5 && std::fabs(r - cand) < best)
        best = std::fabs(r - cand), th = cand;
    }
    if (th < 0) return -1;
    return static_cast<int>(std::min(2.0, std::max(0.0, std::floor((th - 1.5 * kPi) / kPi))));
  }
  if (name == "checkerboard") return (p[0] >= 0 ? 1 : 0) + (p[1] >= 0 ? 2 : 0);
  return static_cast<int>(std::min(2.0, std::max(0.0, std::round(std::hypot(p[0], p[1])) - 1)));  // rings
}

TEST(Toy2dLabels, EveryLabelMatchesItsDefinitionAndClassesHaveEqualWeight) {
  // The least agreement expected: noise can carry a point across a boundary only for the
  // moons (0.08 noise where the halves pass 0.5 apart) and the swiss roll (0.4 noise at the
  // thirds' ends); the modes, rings and the noiseless board are separated by > 6 std.
  const std::vector<std::pair<std::string, double>> min_agree = {
      {"gaussians8", 0.999}, {"moons", 0.99}, {"swissroll", 0.97}, {"checkerboard", 1.0}, {"rings", 0.999}};
  for (const auto& [name, agree_at_least] : min_agree) {
    const PointDataset d = toy::make_toy2d(name, kN, 21);
    const toy::Standardization st = toy::toy2d_standardization(name);
    const int K = toy::toy2d_num_classes(name);
    ASSERT_EQ(d.labels.size(), static_cast<std::size_t>(kN)) << name;
    std::vector<double> weight(static_cast<std::size_t>(K), 0);
    std::int64_t agree = 0;
    for (std::int64_t i = 0; i < kN; ++i) {
      ASSERT_TRUE(d.labels[i] >= 0 && d.labels[i] < K) << name << " label " << d.labels[i];
      weight[static_cast<std::size_t>(d.labels[i])] += 1.0 / kN;
      agree += defined_class(name, d, raw(d, st, i)) == d.labels[i];
    }
    EXPECT_GE(agree / double(kN), agree_at_least) << name;
    for (int k = 0; k < K; ++k) EXPECT_NEAR(weight[k], 1.0 / K, 0.015) << name << " class " << k;
  }
  EXPECT_THROW(toy::toy2d_num_classes("spiral"), ValueError);
}

}  // namespace
}  // namespace ddpm
