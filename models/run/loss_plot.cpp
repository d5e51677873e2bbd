// models/run/loss_plot.cpp: ticks, labels, layout and rasterisation of the loss chart.
//
// The layout is computed from the outside in: a padding, the text of the axis titles, the
// tick labels (their widest one), the tick marks; what remains is the plot area. The y axis
// maps log10(loss) linearly onto [bottom, top], the x axis maps the step onto [left, right].
#include "models/run/loss_plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <utility>

#include "engine/error.h"
#include "engine/io/bitmap_font.h"

namespace ddpm::run {
namespace {

namespace font = ddpm::bitmap_font;
using Rgb = std::array<std::uint8_t, 3>;

const Rgb kInk{30, 30, 30}, kAxis{0, 0, 0}, kMajorGrid{200, 200, 200}, kMinorGrid{232, 232, 232},
    kCurve{31, 90, 200};

// snprintf("%.*f") with the trailing zeros (and a trailing '.') removed.
std::string trim_decimal(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", std::max(decimals, 0), v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

// The usable points: finite, positive losses (a log axis cannot show the others).
void usable_points(const std::vector<std::int64_t>& steps, const std::vector<double>& losses,
                   std::vector<double>* xs, std::vector<double>* ls) {
  DDPM_CHECK(steps.size() == losses.size(), "draw_loss_curve: " << steps.size() << " steps but " << losses.size()
                                                                << " losses");
  for (std::size_t i = 0; i < steps.size(); ++i)
    if (std::isfinite(losses[i]) && losses[i] > 0) {
      xs->push_back(static_cast<double>(steps[i]));
      ls->push_back(losses[i]);
    }
}

// Bresenham's line, clipped to the image.
void draw_line(std::vector<std::uint8_t>& img, int h, int w, int x0, int y0, int x1, int y1, Rgb rgb) {
  int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    if (x0 >= 0 && x0 < w && y0 >= 0 && y0 < h)
      for (int c = 0; c < 3; ++c) img[(static_cast<std::size_t>(y0) * w + x0) * 3 + c] = rgb[c];
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) { err += dy; x0 += sx; }
    if (e2 <= dx) { err += dx; y0 += sy; }
  }
}

// The visible width of a label: the pen advance less the blank column after the last glyph.
int ink_width(const std::string& s, int scale) { return s.empty() ? 0 : font::text_width(s, scale) - scale; }
// Digits and capitals fill rows 0..6: centring uses that height, not the descender row.
int cap_height(int scale) { return 7 * scale; }

// Pixel coordinates of the plan.
int x_of(const LossChart& c, double step) {
  return c.left + static_cast<int>(std::lround((step - c.step_lo) / (c.step_hi - c.step_lo) * (c.right - c.left)));
}
int y_of(const LossChart& c, double loss) {
  const double f = (std::log10(loss) - c.exp_lo) / static_cast<double>(c.exp_hi - c.exp_lo);
  return c.bottom - static_cast<int>(std::lround(f * (c.bottom - c.top)));
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int max_ticks, double min_step) {
  DDPM_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
             "nice_ticks: the range must be finite with lo < hi, got " << lo << ".." << hi);
  DDPM_CHECK(max_ticks >= 2, "nice_ticks: max_ticks must be at least 2, got " << max_ticks);
  auto count = [&](double step) {
    return static_cast<long long>(std::floor(hi / step + 1e-9) - std::ceil(lo / step - 1e-9)) + 1;
  };
  // Start one decade below range / max_ticks, which surely gives too many ticks.
  double power = std::pow(10.0, std::floor(std::log10((hi - lo) / max_ticks)) - 1);
  double step = 0;
  for (bool found = false; !found; power *= 10)
    for (double m : {1.0, 2.0, 5.0}) {
      step = m * power;
      if (step >= min_step && count(step) <= max_ticks) {
        found = true;
        break;
      }
    }
  std::vector<double> ticks;
  const long long k0 = static_cast<long long>(std::ceil(lo / step - 1e-9));
  const long long k1 = static_cast<long long>(std::floor(hi / step + 1e-9));
  for (long long k = k0; k <= k1; ++k) ticks.push_back(k == 0 ? 0.0 : static_cast<double>(k) * step);
  return ticks;
}

std::string format_step_tick(double v) {
  const double a = std::fabs(v);
  if (a < 1e4) return trim_decimal(v, 3);
  if (a < 1e6) return trim_decimal(v / 1e3, 3) + "k";
  return trim_decimal(v / 1e6, 3) + "M";
}

std::string format_loss_tick(double v) {
  if (!std::isfinite(v) || v <= 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
  }
  // v = m * 10^e with 1 <= m < 10; the small bias keeps 0.001 (stored as 0.00099999...) at e = -3.
  int e = static_cast<int>(std::floor(std::log10(v) + 1e-9));
  double m = v / std::pow(10.0, e);
  if (std::stod(trim_decimal(m, 2)) >= 10) {  // 9.999 rounds to 10: renormalise
    ++e;
    m /= 10;
  }
  if (e >= -3 && e <= 3) return trim_decimal(v, 2 - e);  // 3 significant digits
  return trim_decimal(m, 2) + "e" + std::to_string(e);
}

std::vector<LossTick> log_ticks(int exp_lo, int exp_hi) {
  DDPM_CHECK(exp_lo < exp_hi, "log_ticks: need exp_lo < exp_hi, got " << exp_lo << ", " << exp_hi);
  const bool minor = exp_hi - exp_lo <= 2;
  std::vector<LossTick> ticks;
  for (int e = exp_lo; e <= exp_hi; ++e) {
    const double p = std::pow(10.0, e);
    ticks.push_back({p, true});
    if (minor && e < exp_hi) {
      ticks.push_back({2 * p, false});
      ticks.push_back({5 * p, false});
    }
  }
  return ticks;
}

LossChart plan_loss_chart(const std::vector<std::int64_t>& steps, const std::vector<double>& losses, int height,
                          int width) {
  DDPM_CHECK(height >= 120 && width >= 160,
             "draw_loss_curve: the image must be at least 160 wide and 120 tall, got " << width << "x" << height);
  std::vector<double> xs, ls;
  usable_points(steps, losses, &xs, &ls);
  LossChart c;
  c.scale = width >= 480 && height >= 240 ? 2 : 1;
  const int s = c.scale;

  // Ranges. x: from 0 (or the first step, if negative) to the last step.
  if (!xs.empty()) {
    c.step_lo = std::min(0.0, *std::min_element(xs.begin(), xs.end()));
    c.step_hi = std::max(*std::max_element(xs.begin(), xs.end()), c.step_lo + 1);
    const auto [mn, mx] = std::minmax_element(ls.begin(), ls.end());
    c.exp_lo = static_cast<int>(std::floor(std::log10(*mn)));
    if (std::log10(*mn) == c.exp_lo) --c.exp_lo;  // a minimum of exactly 10^k would lie on the x axis
    c.exp_hi = std::max(static_cast<int>(std::ceil(std::log10(*mx))), c.exp_lo + 1);
    char buf[96];
    std::snprintf(buf, sizeof buf, "loss %.4g at step %lld", ls.back(), static_cast<long long>(xs.back()));
    c.title = buf;
  } else {
    c.title = "no finite loss logged yet";
  }
  c.loss_ticks = log_ticks(c.exp_lo, c.exp_hi);

  // Margins, from the labels that will be drawn.
  const int pad = 3 * s, gap = 3 * s, tick = 3 * s, text_h = font::text_height(s);
  int y_label_w = 0;
  for (const LossTick& t : c.loss_ticks) y_label_w = std::max(y_label_w, ink_width(format_loss_tick(t.value), s));
  c.left = pad + text_h + gap + y_label_w + gap + tick;
  c.top = pad + text_h + gap + cap_height(s) / 2;  // the title, then room for half the top y label
  c.bottom = height - 1 - (pad + text_h + gap + text_h + gap + tick);  // x title, x labels, ticks
  // The x ticks: as many as fit (up to 7) with a glyph's advance between neighbouring labels;
  // the right margin holds half the widest label, centred under the last tick.
  for (int max_ticks = 7; max_ticks >= 2; --max_ticks) {
    c.step_ticks = nice_ticks(c.step_lo, c.step_hi, max_ticks, 1.0);
    int x_label_w = 0;
    for (double t : c.step_ticks) x_label_w = std::max(x_label_w, ink_width(format_step_tick(t), s));
    c.right = width - 1 - std::max(pad, x_label_w / 2 + s);
    const double spacing = c.step_ticks.size() < 2 ? 1e9
                                                   : (c.step_ticks[1] - c.step_ticks[0]) / (c.step_hi - c.step_lo) *
                                                         (c.right - c.left);
    if (spacing >= x_label_w + font::kAdvance * s) break;
  }
  // The title falls back to its first words when the full line does not fit.
  if (!xs.empty() && c.left + ink_width(c.title, s) > width - pad) c.title = c.title.substr(0, c.title.find(" at "));
  return c;
}

std::vector<std::uint8_t> draw_loss_curve(const std::vector<std::int64_t>& steps, const std::vector<double>& losses,
                                          int height, int width) {
  const LossChart c = plan_loss_chart(steps, losses, height, width);
  std::vector<double> xs, ls;
  usable_points(steps, losses, &xs, &ls);
  std::vector<std::uint8_t> img(static_cast<std::size_t>(height) * width * 3, 255);
  const int s = c.scale, tick = 3 * s, gap = 3 * s, pad = 3 * s;
  auto text = [&](int x, int y, const std::string& t, Rgb rgb, font::Direction d = font::Direction::kRight) {
    font::draw_text(img.data(), height, width, 3, x, y, t, s, rgb, d);
  };

  // Grid: vertical lines at the step ticks, horizontal ones at the loss ticks (minor first,
  // so a major line is never painted over by a lighter one).
  for (double t : c.step_ticks) draw_line(img, height, width, x_of(c, t), c.top, x_of(c, t), c.bottom, kMinorGrid);
  for (int pass = 0; pass < 2; ++pass)
    for (const LossTick& t : c.loss_ticks)
      if (t.major == (pass == 1))
        draw_line(img, height, width, c.left, y_of(c, t.value), c.right, y_of(c, t.value),
                  t.major ? kMajorGrid : kMinorGrid);

  // The curve (2 pixels thick: the line and the same line one pixel lower), or a marker.
  for (std::size_t i = 1; i < xs.size(); ++i)
    for (int dy = 0; dy < 2; ++dy)
      draw_line(img, height, width, x_of(c, xs[i - 1]), y_of(c, ls[i - 1]) + dy, x_of(c, xs[i]), y_of(c, ls[i]) + dy,
                kCurve);
  if (xs.size() == 1)
    for (int dy = -2; dy <= 2; ++dy)
      draw_line(img, height, width, x_of(c, xs[0]) - 2, y_of(c, ls[0]) + dy, x_of(c, xs[0]) + 2, y_of(c, ls[0]) + dy,
                kCurve);

  // Axes, tick marks and tick labels.
  draw_line(img, height, width, c.left, c.top, c.left, c.bottom, kAxis);
  draw_line(img, height, width, c.left, c.bottom, c.right, c.bottom, kAxis);
  for (double t : c.step_ticks) {
    const int x = x_of(c, t);
    draw_line(img, height, width, x, c.bottom, x, c.bottom + tick, kAxis);
    const std::string label = format_step_tick(t);
    text(x - ink_width(label, s) / 2, c.bottom + tick + gap, label, kInk);
  }
  for (const LossTick& t : c.loss_ticks) {
    const int y = y_of(c, t.value);
    draw_line(img, height, width, c.left - (t.major ? tick : tick / 2), y, c.left, y, kAxis);
    const std::string label = format_loss_tick(t.value);
    text(c.left - tick - gap - ink_width(label, s), y - cap_height(s) / 2, label, kInk);
  }

  // Axis titles and the title line.
  const std::string x_title = "step", y_title = "loss (log scale)";
  text((c.left + c.right) / 2 - ink_width(x_title, s) / 2, height - pad - font::text_height(s), x_title, kInk);
  text(pad, (c.top + c.bottom) / 2 + ink_width(y_title, s) / 2, y_title, kInk, font::Direction::kUp);
  text(c.left, pad, c.title, kInk);
  return img;
}

namespace {

// A linear axis from lo to hi (hi rounded up to the next tick) with its ticks.
struct LinearAxis {
  double lo = 0, hi = 1;
  std::vector<double> ticks;
};
LinearAxis linear_axis(double lo, double hi, int max_ticks) {
  LinearAxis a;
  a.lo = std::min(0.0, lo);
  a.hi = hi > a.lo ? hi : a.lo + 1;
  a.ticks = nice_ticks(a.lo, a.hi, max_ticks);
  if (a.ticks.size() >= 2 && a.ticks.back() < a.hi) {
    const double step = a.ticks[1] - a.ticks[0];
    a.hi = a.ticks.back() + step;
    a.ticks.push_back(a.hi);
  }
  return a;
}

}  // namespace

std::vector<std::uint8_t> draw_line_chart(const LineChartSpec& spec, int height, int width) {
  DDPM_CHECK(height >= 120 && width >= 160,
             "draw_line_chart: the image must be at least 160 wide and 120 tall, got " << width << "x" << height);
  DDPM_CHECK(spec.xs.size() == spec.ys.size(),
             "draw_line_chart: " << spec.xs.size() << " x values but " << spec.ys.size() << " y values");
  std::vector<double> xs, ys;
  for (std::size_t i = 0; i < spec.xs.size(); ++i)
    if (std::isfinite(spec.xs[i]) && std::isfinite(spec.ys[i])) {
      xs.push_back(spec.xs[i]);
      ys.push_back(spec.ys[i]);
    }
  const auto [x_min, x_max] = xs.empty() ? std::pair<double, double>{0, 1}
                                         : std::pair<double, double>{*std::min_element(xs.begin(), xs.end()),
                                                                     *std::max_element(xs.begin(), xs.end())};
  const auto [y_min, y_max] = ys.empty() ? std::pair<double, double>{0, 1}
                                         : std::pair<double, double>{*std::min_element(ys.begin(), ys.end()),
                                                                     *std::max_element(ys.begin(), ys.end())};
  const int s = width >= 480 && height >= 240 ? 2 : 1;
  const int pad = 3 * s, gap = 3 * s, tick = 3 * s, text_h = font::text_height(s);
  const LinearAxis ya = linear_axis(y_min, y_max, 6);
  int y_label_w = 0;
  for (double t : ya.ticks) y_label_w = std::max(y_label_w, ink_width(format_step_tick(t), s));
  const int left = pad + text_h + gap + y_label_w + gap + tick;
  const int top = pad + text_h + gap + cap_height(s) / 2;
  const int bottom = height - 1 - (pad + text_h + gap + text_h + gap + tick);
  // x ticks: as many as fit with a glyph's advance between neighbouring labels.
  LinearAxis xa;
  int right = width - 1 - pad;
  for (int max_ticks = 7; max_ticks >= 2; --max_ticks) {
    xa = linear_axis(x_min, x_max, max_ticks);
    int x_label_w = 0;
    for (double t : xa.ticks) x_label_w = std::max(x_label_w, ink_width(format_step_tick(t), s));
    right = width - 1 - std::max(pad, x_label_w / 2 + s);
    const double spacing =
        xa.ticks.size() < 2 ? 1e9 : (xa.ticks[1] - xa.ticks[0]) / (xa.hi - xa.lo) * (right - left);
    if (spacing >= x_label_w + font::kAdvance * s) break;
  }
  auto px = [&](double x) {
    return left + static_cast<int>(std::lround((x - xa.lo) / (xa.hi - xa.lo) * (right - left)));
  };
  auto py = [&](double y) {
    return bottom - static_cast<int>(std::lround((y - ya.lo) / (ya.hi - ya.lo) * (bottom - top)));
  };

  std::vector<std::uint8_t> img(static_cast<std::size_t>(height) * width * 3, 255);
  auto text = [&](int x, int y, const std::string& t, Rgb rgb, font::Direction d = font::Direction::kRight) {
    font::draw_text(img.data(), height, width, 3, x, y, t, s, rgb, d);
  };
  for (double t : xa.ticks) draw_line(img, height, width, px(t), top, px(t), bottom, kMinorGrid);
  for (double t : ya.ticks) draw_line(img, height, width, left, py(t), right, py(t), kMajorGrid);
  for (std::size_t i = 1; i < xs.size(); ++i)
    for (int dy = 0; dy < 2; ++dy)
      draw_line(img, height, width, px(xs[i - 1]), py(ys[i - 1]) + dy, px(xs[i]), py(ys[i]) + dy, kCurve);
  if (xs.size() == 1)
    for (int dy = -2; dy <= 2; ++dy)
      draw_line(img, height, width, px(xs[0]) - 2, py(ys[0]) + dy, px(xs[0]) + 2, py(ys[0]) + dy, kCurve);
  draw_line(img, height, width, left, top, left, bottom, kAxis);
  draw_line(img, height, width, left, bottom, right, bottom, kAxis);
  for (double t : xa.ticks) {
    draw_line(img, height, width, px(t), bottom, px(t), bottom + tick, kAxis);
    const std::string label = format_step_tick(t);
    text(px(t) - ink_width(label, s) / 2, bottom + tick + gap, label, kInk);
  }
  for (double t : ya.ticks) {
    draw_line(img, height, width, left - tick, py(t), left, py(t), kAxis);
    const std::string label = format_step_tick(t);
    text(left - tick - gap - ink_width(label, s), py(t) - cap_height(s) / 2, label, kInk);
  }
  text((left + right) / 2 - ink_width(spec.x_title, s) / 2, height - pad - text_h, spec.x_title, kInk);
  text(pad, (top + bottom) / 2 + ink_width(spec.y_title, s) / 2, spec.y_title, kInk, font::Direction::kUp);
  text(left, pad, spec.title, kInk);
  return img;
}

}  // namespace ddpm::run
