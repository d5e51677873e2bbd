// models/run/loss_plot.h: the loss chart of a run folder (loss.png), readable on its own.
//
// What is plotted: one point per metrics line (metrics.h, MetricsLine::loss), i.e. the mean
// training loss over the finite steps since the previous logged line (--log-every steps),
// against the step count at which the line was written. Lines whose loss is not finite or
// not positive are left out (a log axis cannot show them).
//
// The chart:
//   - title line: "loss 0.03124 at step 2000" (the last point; the loss as %.4g);
//   - y axis: log10 of the loss from 10^floor(log10 min) to 10^ceil(log10 max), at least one
//     decade, one decade lower when the minimum is exactly a power of ten (so the curve
//     does not run along the x axis); a grid line and label at each power of ten, and, when the axis spans one or
//     two decades, lighter grid lines and labels at 2 and 5 times each power too. Labels as
//     format_loss_tick; axis title "loss (log scale)", written upwards;
//   - x axis: from min(0, first step) to the last step, ticks at multiples of a 1-2-5 step
//     (nice_ticks, at most 7 ticks, step >= 1; see below), labels as format_step_tick, title "step";
//   - the curve in blue, 2 pixels thick; a single point is a small square.
// Text uses engine/io/bitmap_font at scale 2 for images at least 480x240, else 1; the
// margins are computed from the widths of the labels actually drawn. On a narrow image the
// x axis gets fewer ticks, so that neighbouring labels keep a character's width apart, and
// the title shortens to "loss 0.03124" when the full line does not fit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ddpm::run {

// Evenly spaced "nice" tick values k * step inside [lo, hi] (ends included): step is the
// smallest of 1, 2, 5 x 10^k that is >= min_step and gives at most max_ticks ticks. As the
// next 1-2-5 step is at most 2.5 times the previous one, about 3..max_ticks ticks result.
// E.g. 0..2000 -> 0 500 1000 1500 2000; 0..37 -> 0 10 20 30. Needs lo < hi, max_ticks >= 2.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 7, double min_step = 0);

// Step labels: below 10000 the plain number ("0", "500", "1500", "9000"); below a million
// in thousands with "k" ("10k", "12.5k", "500k"); above in millions with "M" ("1M", "2.5M").
// At most 3 decimals of the scaled value, trailing zeros dropped.
std::string format_step_tick(double v);

// Loss labels: from 0.001 up to 9999 a plain decimal with 3 significant digits and no
// trailing zeros ("0.001", "0.02", "0.5", "1", "20"); outside it mantissa "e" exponent with
// no '+' or leading zeros ("1e-4", "2e-5", "5e4", "2.5e-6").
std::string format_loss_tick(double v);

struct LossTick {
  double value;
  bool major;  // a power of ten (darker grid line); minor ones are 2 and 5 times one
};
// The y ticks of a log axis from 10^exp_lo to 10^exp_hi (exp_lo < exp_hi), ascending: the
// powers of ten, plus 2 and 5 times each power below the top when exp_hi - exp_lo <= 2.
std::vector<LossTick> log_ticks(int exp_lo, int exp_hi);

// Where everything goes; draw_loss_curve renders exactly this plan.
struct LossChart {
  int left = 0, top = 0, right = 0, bottom = 0;  // plot area: y axis at x = left, x axis at y = bottom
  double step_lo = 0, step_hi = 1;               // x range
  int exp_lo = -1, exp_hi = 0;                   // y range: 10^exp_lo .. 10^exp_hi
  std::vector<double> step_ticks;
  std::vector<LossTick> loss_ticks;
  std::string title;
  int scale = 1;  // font scale
};
LossChart plan_loss_chart(const std::vector<std::int64_t>& steps, const std::vector<double>& losses, int height,
                          int width);

// The chart as an RGB image [height, width, 3] (height >= 120, width >= 160). Zero or one
// usable point still gives the axes, their labels and the title.
std::vector<std::uint8_t> draw_loss_curve(const std::vector<std::int64_t>& steps, const std::vector<double>& losses,
                                          int height, int width);

// --- line charts with linear axes ------------------------------------------------------------
// A general x-y chart drawn like the loss chart (same fonts, grid, curve colour and margins
// from the labels drawn), but with LINEAR axes and given axis titles: rate_distortion's
// three panels (models/eval/rate_distortion.h).
//   - x and y ranges: from min(0, smallest value) to the largest, the top rounded up to the
//     next tick (nice_ticks, at most 6 ticks on y, as many as fit up to 7 on x), a range of 1
//     when every value is the same; ticks labelled as format_step_tick;
//   - the points joined in the given order, 2 pixels thick; non-finite points left out;
//   - the title line above the plot, the axis titles below and (upwards) left of it, in the
//     characters engine/io/bitmap_font.h covers (lower case, digits, E M N, punctuation).
struct LineChartSpec {
  std::string title, x_title, y_title;
  std::vector<double> xs, ys;  // the curve, same length
};
// RGB [height, width, 3]; ValueError for an image under 160x120 or xs and ys of different
// lengths.
std::vector<std::uint8_t> draw_line_chart(const LineChartSpec& spec, int height, int width);

}  // namespace ddpm::run
