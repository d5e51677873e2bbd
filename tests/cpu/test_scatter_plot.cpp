// The scatter renderer of ddpm-toy (models/run/scatter_plot.h), by pixels: a point lands
// where the frame's linear map puts it, nothing is drawn outside the plot area, points
// outside the range are left out, the axes are drawn, and a strip offsets its panels.
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/run/scatter_plot.h"

namespace ddpm {
namespace {

using run::Rgb;

const Rgb kRed{220, 0, 0};

bool is(const Image& img, int x, int y, Rgb c) {
  const std::uint8_t* p = img.pixels.data() + (static_cast<std::size_t>(y) * img.width + x) * 3;
  return p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
}

run::ScatterPanel panel_with(std::vector<float> points) {
  run::ScatterPanel p;
  p.title = "points";
  p.caption = "caption";
  p.layers.push_back({std::move(points), kRed, 1});
  return p;
}

TEST(ScatterPlot, FrameIsASquareInsideThePanel) {
  const run::ScatterFrame f = run::plan_scatter(300, 280, -3, 3, true);
  EXPECT_GT(f.left, 0);
  EXPECT_GT(f.top, 0);
  EXPECT_LT(f.right, 280);
  EXPECT_LT(f.bottom, 300);
  EXPECT_EQ(f.right - f.left, f.bottom - f.top);
  EXPECT_EQ(f.ticks, (std::vector<double>{-2, 0, 2}));
  EXPECT_THROW(run::plan_scatter(300, 280, 1, 1, false), ValueError);
  EXPECT_THROW(run::plan_scatter(60, 280, -1, 1, false), ValueError);
}

TEST(ScatterPlot, PointsLandOnTheLinearMapAndStayInsideTheAxes) {
  const int h = 300, w = 280;
  const run::ScatterFrame f = run::plan_scatter(h, w, -3, 3, true);
  // (0, 0) is the centre of the plot area; (1.5, -1.5) three quarters across, a quarter up.
  int px = 0, py = 0;
  ASSERT_TRUE(run::scatter_pixel(f, 0, 0, px, py));
  EXPECT_NEAR(px, (f.left + f.right) / 2.0, 1.0);
  EXPECT_NEAR(py, (f.top + f.bottom) / 2.0, 1.0);
  ASSERT_TRUE(run::scatter_pixel(f, 1.5, -1.5, px, py));
  EXPECT_NEAR(px, f.left + 0.75 * (f.right - f.left), 1.0);
  EXPECT_NEAR(py, f.bottom - 0.25 * (f.bottom - f.top), 1.0);
  EXPECT_FALSE(run::scatter_pixel(f, 3.5, 0, px, py));

  // Points at the centre, on the range's left and top edges (dots clipped there) and outside it.
  const Image img = run::draw_scatter(panel_with({0, 0, 1.5f, -1.5f, -3, 0, 0, 3, 5, 5, -4, 0}), -3, 3, h, w);
  ASSERT_EQ(img.height, h);
  ASSERT_EQ(img.width, w);
  run::scatter_pixel(f, 0, 0, px, py);
  EXPECT_TRUE(is(img, px, py, kRed));
  EXPECT_TRUE(is(img, px + 1, py, kRed));  // radius 1: a plus shape
  EXPECT_TRUE(is(img, px, py - 1, kRed));
  run::scatter_pixel(f, 1.5, -1.5, px, py);
  EXPECT_TRUE(is(img, px, py, kRed));
  int red = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (is(img, x, y, kRed)) {
        ++red;
        EXPECT_TRUE(x > f.left && x < f.right && y > f.top && y < f.bottom) << "red pixel at " << x << ", " << y;
      }
  // Two full plus dots (5 pixels each) and two edge dots cut to their inside arm (1 each).
  EXPECT_EQ(red, 12);
  // The out-of-range points left nothing: the same picture without them is identical.
  EXPECT_EQ(img.pixels, run::draw_scatter(panel_with({0, 0, 1.5f, -1.5f, -3, 0, 0, 3}), -3, 3, h, w).pixels);
  // The axes are black along the left and bottom edges of the plot area.
  EXPECT_TRUE(is(img, f.left, (f.top + f.bottom) / 2, Rgb{0, 0, 0}));
  EXPECT_TRUE(is(img, (f.left + f.right) / 2 + 7, f.bottom, Rgb{0, 0, 0}));
}

TEST(ScatterPlot, StripPlacesEachPanelAtItsOffset) {
  const int h = 200, pw = 180;
  const Image strip = run::draw_scatter_strip({panel_with({}), panel_with({1, 1}), panel_with({})}, -2, 2, h, pw);
  ASSERT_EQ(strip.width, 3 * pw);
  const run::ScatterFrame f = run::plan_scatter(h, pw, -2, 2, true);
  int px = 0, py = 0;
  run::scatter_pixel(f, 1, 1, px, py);
  EXPECT_TRUE(is(strip, pw + px, py, kRed));
  EXPECT_FALSE(is(strip, px, py, kRed));
  EXPECT_FALSE(is(strip, 2 * pw + px, py, kRed));
}

}  // namespace
}  // namespace ddpm
