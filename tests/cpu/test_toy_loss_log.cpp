// The toy kit's loss log (models/toy/loss_log.h): the recorded points are the means of the
// counted losses since the previous point, computed here by hand, and the printed lines keep
// the two formats ddpm-toy train and distillation print.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "models/toy/loss_log.h"

namespace ddpm::toy {
namespace {

TEST(ToyLossLog, PointsAreMeansOfTheCountedStepsSinceThePreviousOne) {
  std::vector<std::string> lines;
  LossLog log(10, 4, "", 4, [&](const std::string& l) { lines.push_back(l); });
  for (std::int64_t step = 0; step < 10; ++step) {
    const double loss = static_cast<double>(step + 1);  // 1, 2, ..., 10
    log.after_step(step, loss, step != 5);               // step 5 (loss 6) skipped
  }
  EXPECT_EQ(log.steps(), (std::vector<std::int64_t>{4, 8, 10}));  // every 4 steps and the last one
  ASSERT_EQ(log.losses().size(), 3u);
  EXPECT_DOUBLE_EQ(log.losses()[0], (1.0 + 2 + 3 + 4) / 4);
  EXPECT_DOUBLE_EQ(log.losses()[1], (5.0 + 7 + 8) / 3);  // without the skipped 6
  EXPECT_DOUBLE_EQ(log.losses()[2], (9.0 + 10) / 2);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].rfind("step 4/10  loss 2.5000  ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[2].substr(lines[2].size() - 2), " s");
}

TEST(ToyLossLog, AllSkippedIsNaNAndTheIndentedFormat) {
  std::vector<std::string> lines;
  LossLog log(3, 2, "  ", 5, [&](const std::string& l) { lines.push_back(l); });
  log.after_step(0, 1.0, false);
  log.after_step(1, 2.0, false);
  log.after_step(2, 0.125, true);
  ASSERT_EQ(log.losses().size(), 2u);
  EXPECT_TRUE(std::isnan(log.losses()[0]));
  EXPECT_EQ(log.losses()[1], 0.125);
  EXPECT_EQ(lines[1].rfind("  step 3/3  loss 0.12500  ", 0), 0u) << lines[1];
  LossLog quiet(2, 1, "", 4, {});  // no sink: recorded only
  quiet.after_step(0, 3.0, true);
  EXPECT_EQ(quiet.losses(), std::vector<double>{3.0});
}

}  // namespace
}  // namespace ddpm::toy
