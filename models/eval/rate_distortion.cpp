// models/eval/rate_distortion.cpp: the rate-distortion curve of DDPM's progressive code
// (see rate_distortion.h for the index conventions, written out against the paper's).
#include "models/eval/rate_distortion.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/eval/classifier.h"
#include "models/run/loss_plot.h"

namespace ddpm::eval {

using namespace diffusion;

namespace {
constexpr double kHalfRange = 127.5;  // [-1, 1] -> [0, 255]
}  // namespace

void RateDistortionSums::add(const RateDistortionSums& o) {
  if (n == 0 && term_bpd.empty()) {
    *this = o;
    return;
  }
  DDPM_CHECK(o.term_bpd.size() == term_bpd.size(), "RateDistortionSums::add: curves of "
                                                       << term_bpd.size() - 1 << " and " << o.term_bpd.size() - 1
                                                       << " timesteps cannot be added");
  n += o.n;
  for (std::size_t r = 0; r < term_bpd.size(); ++r) {
    term_bpd[r] += o.term_bpd[r];
    squared_error[r] += o.squared_error[r];
  }
  total_bpd.insert(total_bpd.end(), o.total_bpd.begin(), o.total_bpd.end());
}

RateDistortionSums rate_distortion_batch(const DiffusionSchedule& s, const ModelStepFn& model, const Tensor& x0,
                                         Generator& gen) {
  NoGradGuard no_grad;
  const std::int64_t T = s.num_timesteps();
  RateDistortionSums r;
  r.n = x0.dim(0);
  r.term_bpd.assign(static_cast<std::size_t>(T + 1), 0.0);
  r.squared_error.assign(static_cast<std::size_t>(T + 1), 0.0);
  // Row index of the paper's t: x_T first.
  auto row = [T](std::int64_t t) { return static_cast<std::size_t>(T - t); };
  const BpdStepFn on_step = [&](std::int64_t k, const ModelStep& out, const std::vector<double>& term) {
    DDPM_CHECK(out.pred_x0.defined(), "rate-distortion: the model returned no x_0 estimate at timestep " << k);
    // Network step k (0-based) answers for the paper's x_{k+1}: its estimate is the
    // distortion once x_{k+1} has arrived. Its term is the paper's L_k, the cost of
    // receiving x_k (k >= 1), or L_0, the cost of x_0 itself (k = 0): row k either way.
    const std::vector<double> mse = mean_flat(square(sub(out.pred_x0, x0))).to_double_vector();  // [N]
    for (std::size_t i = 0; i < mse.size(); ++i) {
      r.squared_error[row(k + 1)] += mse[i];
      r.term_bpd[row(k)] += term[i];
    }
  };
  const BpdResult b = calc_bpd_loop(s, model, x0, gen, on_step);
  for (double v : b.prior_bpd) r.term_bpd[row(T)] += v;  // L_T: receiving x_T with p(x_T)
  r.total_bpd = b.total_bpd;
  // Row T (x_0 received): the squared error stays 0, the image is known exactly.
  return r;
}

RateDistortionCurve finish_rate_distortion(const RateDistortionSums& sums) {
  DDPM_CHECK(sums.n > 0 && sums.term_bpd.size() >= 2, "rate-distortion: no images were evaluated");
  const std::int64_t T = static_cast<std::int64_t>(sums.term_bpd.size()) - 1;
  const double n = static_cast<double>(sums.n);
  RateDistortionCurve c;
  c.n = sums.n;
  c.timesteps = T;
  double rate = 0;
  for (std::int64_t r = 0; r <= T; ++r) {
    RateDistortionPoint p;
    p.t = T - r;
    p.term_bpd = sums.term_bpd[static_cast<std::size_t>(r)] / n;
    rate += p.term_bpd;
    p.rate_bpd = rate;
    p.distortion_rmse = kHalfRange * std::sqrt(sums.squared_error[static_cast<std::size_t>(r)] / n);
    c.points.push_back(p);
  }
  const MeanWithError total = mean_with_standard_error(sums.total_bpd);
  c.bpd = total.mean;
  c.bpd_stderr = total.standard_error;
  return c;
}

std::vector<RateDistortionPoint> strided_points(const RateDistortionCurve& c, std::int64_t stride) {
  DDPM_CHECK(stride >= 1, "rate-distortion: the stride must be at least 1, got " << stride);
  std::vector<RateDistortionPoint> out;
  for (const RateDistortionPoint& p : c.points)
    if (p.t == c.timesteps || p.t % stride == 0) out.push_back(p);
  return out;
}

double rate_at_distortion(const RateDistortionCurve& c, double rmse) {
  for (const RateDistortionPoint& p : c.points)
    if (p.distortion_rmse < rmse) return p.rate_bpd;
  return c.points.empty() ? 0.0 : c.points.back().rate_bpd;
}

RateDistortionCurve evaluate_rate_distortion(const DiffusionSchedule& s, const DenoiseFn& net, const Dataset& ds,
                                             const BpdEvalOptions& o,
                                             const std::function<void(const std::string&)>& log) {
  const std::int64_t n = bpd_image_count(ds, o, "rate-distortion");
  const auto t0 = std::chrono::steady_clock::now();
  Generator gen(o.seed);  // the same draws as evaluate_bpd with the same seed and batches
  RateDistortionSums sums;
  for (std::int64_t b = 0; b < n; b += o.batch_size) {
    const std::int64_t count = std::min(o.batch_size, n - b);
    const Tensor x0 = image_batch(ds, b, count, o.device);  // [B, H, W, C] in [-1, 1]
    std::vector<std::int64_t> labels;
    if (o.num_classes > 0) labels.assign(ds.labels.begin() + b, ds.labels.begin() + b + count);
    sums.add(rate_distortion_batch(s, model_step(s, net, o, labels), x0, gen));
    if (log) {
      double mean = 0;
      for (double v : sums.total_bpd) mean += v;
      std::ostringstream line;
      line << "images " << sums.n << "/" << n << "  running bpd " << mean / static_cast<double>(sums.n);
      log(line.str());
    }
  }
  RateDistortionCurve c = finish_rate_distortion(sums);
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return c;
}

std::string rate_distortion_csv(const std::vector<RateDistortionPoint>& points) {
  std::string out = "t,term_bpd,rate_bpd,distortion_rmse\n";
  char buf[128];
  for (const RateDistortionPoint& p : points) {
    std::snprintf(buf, sizeof buf, "%lld,%.9g,%.9g,%.9g\n", static_cast<long long>(p.t), p.term_bpd, p.rate_bpd,
                  p.distortion_rmse);
    out += buf;
  }
  return out;
}

std::vector<std::uint8_t> draw_rate_distortion(const std::vector<RateDistortionPoint>& points, std::int64_t T,
                                               int height, int panel_width) {
  run::LineChartSpec d_vs_t, r_vs_t, d_vs_r;
  for (const RateDistortionPoint& p : points) {
    const double steps = static_cast<double>(T - p.t);  // reverse-process steps received
    d_vs_t.xs.push_back(steps);
    d_vs_t.ys.push_back(p.distortion_rmse);
    r_vs_t.xs.push_back(steps);
    r_vs_t.ys.push_back(p.rate_bpd);
    d_vs_r.xs.push_back(p.rate_bpd);
    d_vs_r.ys.push_back(p.distortion_rmse);
  }
  d_vs_t.title = "distortion vs time";
  r_vs_t.title = "rate vs time";
  d_vs_r.title = "distortion vs rate";
  // The bitmap font has lower case, digits and a few capitals: T is written as its value.
  d_vs_t.x_title = r_vs_t.x_title = "reverse steps (" + std::to_string(T) + " - t)";
  d_vs_t.y_title = d_vs_r.y_title = "rmse (0 to 255)";
  r_vs_t.y_title = "rate (bits/dim)";
  d_vs_r.x_title = "rate (bits/dim)";
  const std::vector<run::LineChartSpec> panels{d_vs_t, r_vs_t, d_vs_r};
  const std::size_t w = static_cast<std::size_t>(panel_width), full = 3 * w;
  std::vector<std::uint8_t> img(static_cast<std::size_t>(height) * full * 3, 255);
  for (std::size_t k = 0; k < panels.size(); ++k) {
    const std::vector<std::uint8_t> panel = run::draw_line_chart(panels[k], height, panel_width);
    for (std::size_t y = 0; y < static_cast<std::size_t>(height); ++y)
      std::copy_n(panel.begin() + static_cast<std::ptrdiff_t>(y * w * 3), w * 3,
                  img.begin() + static_cast<std::ptrdiff_t>((y * full + k * w) * 3));
  }
  return img;
}

}  // namespace ddpm::eval
