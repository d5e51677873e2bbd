// models/run/scatter_plot.h: scatter plots of 2-D point sets, and strips of them side by side
// (ddpm-toy's scatter.png, trajectory.png and forward.png), drawn from scratch like the loss
// chart (loss_plot.h): RGB images, text from engine/io/bitmap_font.
//
// One panel:
//   - a title line above the plot, and an optional caption line under the x axis labels;
//   - a square plot area with FIXED, equal ranges [lo, hi] on both axes (so panels of a strip
//     and runs of different samplers compare by eye; a circle stays a circle), framed by the
//     two axes (black) and a light box on the other two sides;
//   - ticks at the nice_ticks values of [lo, hi] (loss_plot.h: 1-2-5 steps, at most 5 ticks),
//     labelled as %g on both axes; no axis titles (the axes are the two data coordinates);
//   - the layers in order, each point a dot of its layer's colour: radius 0 is one pixel,
//     radius r a (2r + 1)-pixel plus-shaped dot. Points outside [lo, hi]^2 are left out and
//     dots are clipped to the inside of the plot area, so nothing is drawn across the axes.
// Text scale: 2 for panels at least 400 pixels wide, else 1. Margins come from the widths of
// the labels actually drawn.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/png.h"

namespace ddpm::run {

using Rgb = std::array<std::uint8_t, 3>;

struct ScatterLayer {
  std::vector<float> points;  // [n, 2] row-major (x, y)
  Rgb color{0, 0, 0};
  int radius = 1;
};

struct ScatterPanel {
  std::string title;
  std::string caption;  // empty: no caption line
  std::vector<ScatterLayer> layers;
};

// Where everything goes in a panel of height x width (draw_scatter renders exactly this).
struct ScatterFrame {
  int left = 0, top = 0, right = 0, bottom = 0;  // plot area: y axis at x = left, x axis at y = bottom
  double lo = 0, hi = 1;                          // the range of both axes
  std::vector<double> ticks;
  int scale = 1;
};
// ValueError unless lo < hi (finite) and the panel is at least 120 x 120 pixels.
ScatterFrame plan_scatter(int height, int width, double lo, double hi, bool caption);

// The pixel (px, py) of data point (x, y); false when the point lies outside [lo, hi]^2.
bool scatter_pixel(const ScatterFrame& f, double x, double y, int& px, int& py);

// One panel as an RGB image [height, width, 3].
Image draw_scatter(const ScatterPanel& panel, double lo, double hi, int height, int width);

// Panels side by side, each height x panel_width, in one RGB image [height, n * panel_width, 3].
// The panels share the caption row: when any panel has a caption, every one leaves room for it.
Image draw_scatter_strip(const std::vector<ScatterPanel>& panels, double lo, double hi, int height, int panel_width);

}  // namespace ddpm::run
