// The loss chart (loss.png): nice ticks, tick labels, layout, and the rendered image,
// including the degenerate inputs a fresh or broken run produces.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/error.h"
#include "models/run/loss_plot.h"

namespace ddpm::run {
namespace {

using Img = std::vector<std::uint8_t>;

bool dark(const Img& img, int w, int x, int y) {
  const std::uint8_t* p = &img[(static_cast<std::size_t>(y) * w + x) * 3];
  return p[0] < 100 && p[1] < 100 && p[2] < 100;
}
bool blue(const Img& img, int w, int x, int y) {
  const std::uint8_t* p = &img[(static_cast<std::size_t>(y) * w + x) * 3];
  return p[2] > 150 && p[0] < 100;
}
int count_in(const Img& img, int w, int x0, int y0, int x1, int y1, bool (*pred)(const Img&, int, int, int)) {
  int n = 0;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) n += pred(img, w, x, y) ? 1 : 0;
  return n;
}

// A realistic curve: 0.7 falling to 0.03 over 2000 steps, logged every 100.
void realistic(std::vector<std::int64_t>* steps, std::vector<double>* losses) {
  for (int s = 100; s <= 2000; s += 100) {
    steps->push_back(s);
    losses->push_back(0.03 + 0.67 * std::exp(-s / 400.0));
  }
}

TEST(LossPlot, NiceTicks) {
  EXPECT_EQ(nice_ticks(0, 2000), (std::vector<double>{0, 500, 1000, 1500, 2000}));
  EXPECT_EQ(nice_ticks(0, 37), (std::vector<double>{0, 10, 20, 30}));
  EXPECT_EQ(nice_ticks(0, 100), (std::vector<double>{0, 20, 40, 60, 80, 100}));
  EXPECT_EQ(nice_ticks(0, 300), (std::vector<double>{0, 50, 100, 150, 200, 250, 300}));
  EXPECT_EQ(nice_ticks(0, 50000), (std::vector<double>{0, 10000, 20000, 30000, 40000, 50000}));
  EXPECT_EQ(nice_ticks(-3, 12), (std::vector<double>{0, 5, 10}));
  EXPECT_EQ(nice_ticks(0, 1, 7, 1.0), (std::vector<double>{0, 1}));  // min_step keeps steps whole
  const std::vector<double> frac = nice_ticks(0.013, 0.087);           // step 0.01: 0.02 .. 0.08
  ASSERT_EQ(frac.size(), 7u);
  EXPECT_NEAR(frac.front(), 0.02, 1e-12);
  EXPECT_NEAR(frac.back(), 0.08, 1e-12);
  for (double hi : {7.0, 13.0, 99.0, 1234.0, 77777.0}) {
    const std::size_t n = nice_ticks(0, hi).size();
    EXPECT_GE(n, 3u) << hi;
    EXPECT_LE(n, 7u) << hi;
  }
  EXPECT_THROW(nice_ticks(5, 5), ValueError);
}

TEST(LossPlot, StepLabels) {
  EXPECT_EQ(format_step_tick(0), "0");
  EXPECT_EQ(format_step_tick(500), "500");
  EXPECT_EQ(format_step_tick(1500), "1500");
  EXPECT_EQ(format_step_tick(9000), "9000");
  EXPECT_EQ(format_step_tick(10000), "10k");
  EXPECT_EQ(format_step_tick(12500), "12.5k");
  EXPECT_EQ(format_step_tick(500000), "500k");
  EXPECT_EQ(format_step_tick(1000000), "1M");
  EXPECT_EQ(format_step_tick(2500000), "2.5M");
}

TEST(LossPlot, LossLabels) {
  EXPECT_EQ(format_loss_tick(1), "1");
  EXPECT_EQ(format_loss_tick(0.1), "0.1");
  EXPECT_EQ(format_loss_tick(0.5), "0.5");
  EXPECT_EQ(format_loss_tick(0.01), "0.01");
  EXPECT_EQ(format_loss_tick(0.02), "0.02");
  EXPECT_EQ(format_loss_tick(std::pow(10.0, -3)), "0.001");
  EXPECT_EQ(format_loss_tick(std::pow(10.0, -4)), "1e-4");
  EXPECT_EQ(format_loss_tick(2 * std::pow(10.0, -5)), "2e-5");
  EXPECT_EQ(format_loss_tick(10), "10");
  EXPECT_EQ(format_loss_tick(1000), "1000");
  EXPECT_EQ(format_loss_tick(std::pow(10.0, 4)), "1e4");
  EXPECT_EQ(format_loss_tick(5e4), "5e4");
}

TEST(LossPlot, LogTicksAddTwoAndFiveOnShortRanges) {
  const std::vector<LossTick> two = log_ticks(-2, 0);
  const double want[] = {0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1};
  ASSERT_EQ(two.size(), 7u);
  for (int i = 0; i < 7; ++i) {
    EXPECT_NEAR(two[i].value, want[i], 1e-12);
    EXPECT_EQ(two[i].major, i % 3 == 0) << i;
  }
  const std::vector<LossTick> four = log_ticks(-4, 0);  // four decades: powers of ten only
  ASSERT_EQ(four.size(), 5u);
  for (const LossTick& t : four) EXPECT_TRUE(t.major);
}

TEST(LossPlot, ChartHasLabelsLeftOfTheYAxisAndBelowTheXAxis) {
  std::vector<std::int64_t> steps;
  std::vector<double> losses;
  realistic(&steps, &losses);
  const int h = 360, w = 640;
  const LossChart c = plan_loss_chart(steps, losses, h, w);
  EXPECT_EQ(c.exp_lo, -2);
  EXPECT_EQ(c.exp_hi, 0);
  EXPECT_EQ(c.step_ticks, (std::vector<double>{0, 500, 1000, 1500, 2000}));
  EXPECT_EQ(c.loss_ticks.size(), 7u);
  EXPECT_EQ(c.title.rfind("loss 0.03", 0), 0u) << c.title;
  EXPECT_NE(c.title.find("at step 2000"), std::string::npos) << c.title;
  ASSERT_GT(c.left, 40);  // room for "0.05" at scale 2 and the axis title
  ASSERT_LT(c.bottom, h - 30);
  const Img img = draw_loss_curve(steps, losses, h, w);
  ASSERT_EQ(img.size(), static_cast<std::size_t>(h) * w * 3);
  for (int y = c.top; y <= c.bottom; ++y) ASSERT_TRUE(dark(img, w, c.left, y)) << "y axis at row " << y;
  for (int x = c.left; x <= c.right; ++x) ASSERT_TRUE(dark(img, w, x, c.bottom)) << "x axis at column " << x;
  EXPECT_GT(count_in(img, w, 0, c.top - 8, c.left - 8, c.bottom + 8, dark), 200) << "y labels and title";
  EXPECT_GT(count_in(img, w, c.left - 8, c.bottom + 8, w, h, dark), 100) << "x labels and title";
  EXPECT_GT(count_in(img, w, 0, 0, w, c.top - 8, dark), 100) << "title line";
  EXPECT_GT(count_in(img, w, c.left + 1, c.top, c.right + 1, c.bottom, blue), 500) << "the curve";
  // The first point (0.70 at step 100) lies near the top: between the 0.5 and 1 grid lines.
  int first_blue = -1;
  const int x100 = c.left + static_cast<int>(std::lround(100.0 / 2000 * (c.right - c.left)));
  for (int y = c.top; y <= c.bottom && first_blue < 0; ++y)
    if (blue(img, w, x100, y)) first_blue = y;
  const double frac = (c.bottom - first_blue) / static_cast<double>(c.bottom - c.top);  // 0 bottom, 1 top
  EXPECT_NEAR(frac, (std::log10(losses[0]) + 2) / 2, 0.03);
}

// Zero points, one point, equal losses and unusable losses still give axes and labels.
TEST(LossPlot, DegenerateInputsGiveAValidChart) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    const char* name;
    std::vector<std::int64_t> steps;
    std::vector<double> losses;
    int blue_min;
  };
  const Case cases[] = {
      {"no points", {}, {}, 0},
      {"one point", {50}, {0.2}, 9},
      {"equal losses", {10, 20, 30}, {0.1, 0.1, 0.1}, 50},
      {"only unusable losses", {10, 20}, {nan, -1.0}, 0},
  };
  for (const Case& k : cases)
    for (auto [h, w] : {std::pair{360, 640}, std::pair{120, 160}}) {
      SCOPED_TRACE(std::string(k.name) + " " + std::to_string(w) + "x" + std::to_string(h));
      const LossChart c = plan_loss_chart(k.steps, k.losses, h, w);
      ASSERT_LT(c.left, c.right);
      ASSERT_LT(c.top, c.bottom);
      const Img img = draw_loss_curve(k.steps, k.losses, h, w);
      ASSERT_EQ(img.size(), static_cast<std::size_t>(h) * w * 3);
      EXPECT_TRUE(dark(img, w, c.left, c.top) && dark(img, w, c.left, c.bottom) && dark(img, w, c.right, c.bottom));
      EXPECT_GT(count_in(img, w, 0, 0, c.left - 2, h, dark), 20);
      EXPECT_GT(count_in(img, w, 0, c.bottom + 2, w, h, dark), 20);
      const int n_blue = count_in(img, w, 0, 0, w, h, blue);
      if (k.blue_min == 0)
        EXPECT_EQ(n_blue, 0);
      else
        EXPECT_GE(n_blue, k.blue_min);
    }
  const LossChart equal = plan_loss_chart({10, 20, 30}, {0.1, 0.1, 0.1}, 360, 640);
  EXPECT_EQ(equal.exp_lo, -2);  // 0.1 = 10^-1 exactly: one decade more below, off the x axis
  EXPECT_EQ(equal.exp_hi, -1);
  EXPECT_EQ(plan_loss_chart({}, {}, 360, 640).title, "no finite loss logged yet");
}

// On a small image the x labels thin out instead of running into each other.
TEST(LossPlot, SmallImageKeepsXLabelsApart) {
  std::vector<std::int64_t> steps;
  std::vector<double> losses;
  realistic(&steps, &losses);
  const LossChart c = plan_loss_chart(steps, losses, 120, 160);
  EXPECT_EQ(c.scale, 1);
  ASSERT_GE(c.step_ticks.size(), 2u);
  EXPECT_LT(c.step_ticks.size(), 5u);  // 0 500 1000 1500 2000 would need ~150 pixels
  const double spacing = (c.step_ticks[1] - c.step_ticks[0]) / (c.step_hi - c.step_lo) * (c.right - c.left);
  EXPECT_GE(spacing, 4 * 6 - 1 + 6);  // "1000" plus one character
  EXPECT_EQ(c.title.find(" at "), std::string::npos) << c.title;  // shortened to fit
}

TEST(LossPlot, RejectsBadArguments) {
  EXPECT_THROW(draw_loss_curve({1, 2}, {0.5}, 360, 640), ValueError);
  EXPECT_THROW(draw_loss_curve({}, {}, 100, 640), ValueError);
}

}  // namespace
}  // namespace ddpm::run
