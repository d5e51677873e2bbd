// The per-class numbers of guided sampling (models/toy/class_metrics.h) on hand-made point
// sets whose answers follow from the definitions by hand: the nearest-class rule, accuracy,
// the spread relative to the data's, and the energy distance's zero for identical sets.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/toy/class_metrics.h"
#include "models/toy/energy_distance.h"

namespace ddpm {
namespace {

// Class 0: the unit circle's four axis points around (0, 0); class 1: the same around (10, 0).
toy::LabelledPoints two_clusters() {
  toy::LabelledPoints r;
  r.num_classes = 2;
  for (int k = 0; k < 2; ++k)
    for (const auto& [dx, dy] : std::vector<std::pair<float, float>>{{1, 0}, {-1, 0}, {0, 1}, {0, -1}}) {
      r.points.push_back(10.0f * k + dx);
      r.points.push_back(dy);
      r.labels.push_back(k);
    }
  return r;
}

TEST(Toy2dClassMetrics, NearestClassIsTheLabelOfTheNearestReferencePoint) {
  const toy::LabelledPoints r = two_clusters();
  // (4.9, 0) is 3.9 from (1, 0) and 4.1 from (9, 0); (5.1, 0) the other way round.
  const std::vector<float> s = {0, 0, 4.9f, 0, 5.1f, 0, 12, 3, -7, -7};
  EXPECT_EQ(toy::nearest_class(s, r), (std::vector<std::int64_t>{0, 0, 1, 1, 0}));
}

TEST(Toy2dClassMetrics, AccuracySpreadAndEnergyOfHandMadeSamples) {
  const toy::LabelledPoints r = two_clusters();
  // The class's own data: accuracy 1, spread 1, energy 0.
  const std::vector<float> same(r.points.begin(), r.points.begin() + 8);
  toy::ClassStats s = toy::class_stats(same, 0, r);
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.accuracy, 1.0);
  EXPECT_NEAR(s.spread, 1.0, 1e-12);
  EXPECT_NEAR(s.energy, 0.0, 1e-12);
  // Contracted to half the radius (mean distance 0.5 against the data's 1), one of four
  // samples in the other class: that one is 9 from mu_0 = (0, 0).
  const std::vector<float> pulled = {0.5f, 0, -0.5f, 0, 0, 0.5f, 9, 0};
  s = toy::class_stats(pulled, 0, r);
  EXPECT_DOUBLE_EQ(s.accuracy, 0.75);
  EXPECT_NEAR(s.spread, (0.5 + 0.5 + 0.5 + 9) / 4 / 1.0, 1e-6);
  EXPECT_NEAR(s.energy, toy::energy_distance(pulled, same), 1e-12);
  EXPECT_GT(s.energy, 0.0);
}

TEST(Toy2dClassMetrics, PerClassSplitsByRequestedLabel) {
  toy::LabelledPoints r = two_clusters();
  r.num_classes = 3;  // class 2 has no reference point and is never requested
  // Requested 1, 0, 1: the class-1 samples sit at (10, 0) (spread 0) and (0, 0) (wrong class).
  const std::vector<float> s = {10, 0, 0, 1, 0, 0};
  const std::vector<toy::ClassStats> per = toy::per_class_stats(s, {1, 0, 1}, r);
  ASSERT_EQ(per.size(), 3u);
  EXPECT_EQ(per[0].count, 1);
  EXPECT_DOUBLE_EQ(per[0].accuracy, 1.0);
  EXPECT_EQ(per[1].count, 2);
  EXPECT_DOUBLE_EQ(per[1].accuracy, 0.5);
  EXPECT_NEAR(per[1].spread, (0.0 + 10.0) / 2, 1e-6);
  EXPECT_EQ(per[2].count, 0);
  EXPECT_TRUE(std::isnan(per[2].accuracy));
}

TEST(Toy2dClassMetrics, RefusesWhatItCannotMeasure) {
  toy::LabelledPoints r = two_clusters();
  EXPECT_THROW(toy::class_stats({}, 0, r), ValueError);
  EXPECT_THROW(toy::class_stats({0, 0}, 2, r), ValueError);
  EXPECT_THROW(toy::per_class_stats({0, 0}, {0, 1}, r), ValueError);
  r.num_classes = 3;
  EXPECT_THROW(toy::class_stats({0, 0}, 2, r), ValueError);  // no reference point of class 2
  r.labels[0] = 5;
  EXPECT_THROW(toy::nearest_class({0, 0}, r), ValueError);
  EXPECT_THROW(toy::nearest_class({0, 0}, toy::LabelledPoints{}), ValueError);
}

}  // namespace
}  // namespace ddpm
