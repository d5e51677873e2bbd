// models/run/scatter_plot.cpp: the scatter panel and strip (layout in the header).
#include "models/run/scatter_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/error.h"
#include "engine/io/bitmap_font.h"
#include "models/run/loss_plot.h"

namespace ddpm::run {

namespace {

namespace font = ddpm::bitmap_font;

const Rgb kInk{30, 30, 30}, kAxis{0, 0, 0}, kBox{200, 200, 200};

std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v == 0 ? 0.0 : v);  // no "-0"
  return buf;
}

int scale_for(int width) { return width >= 400 ? 2 : 1; }

// A canvas: the whole image, and the panel's column offset inside it.
struct Canvas {
  Image& img;
  int x0;
  void set(int x, int y, Rgb c) {  // x in panel coordinates
    const int gx = x0 + x;
    if (gx < 0 || gx >= img.width || y < 0 || y >= img.height) return;
    std::uint8_t* p = img.pixels.data() + (static_cast<std::size_t>(y) * img.width + gx) * 3;
    p[0] = c[0], p[1] = c[1], p[2] = c[2];
  }
  void hline(int x0_, int x1, int y, Rgb c) {
    for (int x = x0_; x <= x1; ++x) set(x, y, c);
  }
  void vline(int x, int y0, int y1, Rgb c) {
    for (int y = y0; y <= y1; ++y) set(x, y, c);
  }
  void text(int x, int y, const std::string& t, int s) {
    font::draw_text(img.pixels.data(), img.height, img.width, 3, x0 + x, y, t, s, kInk);
  }
};

// The drawn width of a label: the pen advance less the blank column after the last glyph.
int ink_width(const std::string& t, int s) { return t.empty() ? 0 : font::text_width(t, s) - s; }

void draw_panel(Canvas cv, const ScatterPanel& panel, const ScatterFrame& f, int width) {
  const int s = f.scale, tick = 3 * s, gap = 3 * s, pad = 3 * s;
  // The light box first, then the axes over it.
  cv.hline(f.left, f.right, f.top, kBox);
  cv.vline(f.right, f.top, f.bottom, kBox);
  // The points, clipped to the inside of the plot area.
  for (const ScatterLayer& layer : panel.layers) {
    DDPM_CHECK(layer.points.size() % 2 == 0, "draw_scatter: a layer's points must be (x, y) pairs, got "
                                                 << layer.points.size() << " coordinates");
    for (std::size_t i = 0; i + 1 < layer.points.size(); i += 2) {
      int px = 0, py = 0;
      if (!scatter_pixel(f, layer.points[i], layer.points[i + 1], px, py)) continue;
      for (int d = -layer.radius; d <= layer.radius; ++d)
        for (int axis = 0; axis < 2; ++axis) {
          const int x = axis == 0 ? px + d : px, y = axis == 0 ? py : py + d;
          if (x > f.left && x < f.right && y > f.top && y < f.bottom) cv.set(x, y, layer.color);
        }
    }
  }
  cv.vline(f.left, f.top, f.bottom, kAxis);
  cv.hline(f.left, f.right, f.bottom, kAxis);
  for (double t : f.ticks) {
    int px = 0, py = 0;
    scatter_pixel(f, t, t, px, py);
    const std::string label = tick_label(t);
    cv.vline(px, f.bottom, f.bottom + tick, kAxis);
    cv.text(px - ink_width(label, s) / 2, f.bottom + tick + gap, label, s);
    cv.hline(f.left - tick, f.left, py, kAxis);
    cv.text(f.left - tick - gap - ink_width(label, s), py - 7 * s / 2, label, s);
  }
  cv.text(std::max(pad, (width - ink_width(panel.title, s)) / 2), pad, panel.title, s);
  if (!panel.caption.empty())
    cv.text(std::max(pad, (width - ink_width(panel.caption, s)) / 2), f.bottom + tick + 2 * gap + font::text_height(s),
            panel.caption, s);
}

}  // namespace

ScatterFrame plan_scatter(int height, int width, double lo, double hi, bool caption) {
  DDPM_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
             "plan_scatter: the axis range must be finite with lo < hi, got [" << lo << ", " << hi << "]");
  DDPM_CHECK(height >= 120 && width >= 120,
             "plan_scatter: a panel must be at least 120 x 120 pixels, got " << width << "x" << height);
  ScatterFrame f;
  f.lo = lo;
  f.hi = hi;
  f.scale = scale_for(width);
  f.ticks = nice_ticks(lo, hi, 5);
  const int s = f.scale, tick = 3 * s, gap = 3 * s, pad = 3 * s, line = font::text_height(s);
  int label_w = 0;
  for (double t : f.ticks) label_w = std::max(label_w, ink_width(tick_label(t), s));
  f.left = pad + label_w + gap + tick;
  f.top = pad + line + 2 * pad;
  const int below = tick + gap + line + pad + (caption ? gap + line + pad : 0);
  const int side = std::min(width - f.left - 2 * pad - label_w / 2, height - f.top - below);
  DDPM_CHECK(side >= 40, "plan_scatter: a " << width << "x" << height << " panel leaves no room for the plot");
  f.right = f.left + side;
  f.bottom = f.top + side;
  return f;
}

bool scatter_pixel(const ScatterFrame& f, double x, double y, int& px, int& py) {
  if (!(x >= f.lo && x <= f.hi && y >= f.lo && y <= f.hi)) return false;  // NaN too
  const double span = f.hi - f.lo;
  px = f.left + static_cast<int>(std::lround((x - f.lo) / span * (f.right - f.left)));
  py = f.bottom - static_cast<int>(std::lround((y - f.lo) / span * (f.bottom - f.top)));
  return true;
}

Image draw_scatter(const ScatterPanel& panel, double lo, double hi, int height, int width) {
  return draw_scatter_strip({panel}, lo, hi, height, width);
}

Image draw_scatter_strip(const std::vector<ScatterPanel>& panels, double lo, double hi, int height, int panel_width) {
  DDPM_CHECK(!panels.empty(), "draw_scatter_strip: no panels to draw");
  bool caption = false;
  for (const ScatterPanel& p : panels) caption = caption || !p.caption.empty();
  const ScatterFrame f = plan_scatter(height, panel_width, lo, hi, caption);
  Image img;
  img.height = height;
  img.width = panel_width * static_cast<int>(panels.size());
  img.channels = 3;
  img.pixels.assign(static_cast<std::size_t>(img.height) * img.width * 3, 255);
  for (std::size_t k = 0; k < panels.size(); ++k)
    draw_panel(Canvas{img, static_cast<int>(k) * panel_width}, panels[k], f, panel_width);
  return img;
}

}  // namespace ddpm::run
