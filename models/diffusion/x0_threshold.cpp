// models/diffusion/x0_threshold.cpp: see x0_threshold.h for the equations.
#include "models/diffusion/x0_threshold.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {

const char* x0_threshold_kind_name(X0Threshold::Kind kind) {
  switch (kind) {
    case X0Threshold::Kind::none: return "none";
    case X0Threshold::Kind::static_clip: return "static";
    case X0Threshold::Kind::dynamic: return "dynamic";
  }
  return "?";
}

void check_x0_threshold(const X0Threshold& policy, const char* who) {
  if (policy.kind != X0Threshold::Kind::dynamic) return;
  DDPM_CHECK(policy.percentile > 0.0 && policy.percentile <= 1.0,
             who << ": the percentile p must lie in (0, 1] (Imagen uses 0.995: s is the value 99.5% of a "
                    "sample's |x_0| values stay below), got "
                 << policy.percentile);
  DDPM_CHECK(policy.max_scale >= 1.0,
             who << ": the largest threshold S must be >= 1 (s is never below 1; S = 1 is the static clamp, inf "
                    "no cap), got "
                 << policy.max_scale);
}

double quantile_linear(std::vector<double>& values, double p) {
  DDPM_CHECK(!values.empty(), "quantile_linear: no values to take the " << p << " quantile of");
  DDPM_CHECK(p >= 0.0 && p <= 1.0, "quantile_linear: the quantile level must lie in [0, 1], got " << p);
  // torch.quantile propagates NaN; nth_element would not even be well defined with it.
  if (std::any_of(values.begin(), values.end(), [](double v) { return std::isnan(v); }))
    return std::numeric_limits<double>::quiet_NaN();
  const std::size_t n = values.size();
  const double rank = p * static_cast<double>(n - 1);  // r = p (D - 1)
  const auto k = std::min(static_cast<std::size_t>(std::floor(rank)), n - 1);
  const double w = rank - static_cast<double>(k);  // in [0, 1)
  // v_(k) by selection; v_(k+1) is then the smallest of the elements after it.
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  const double below = values[k];
  const double above = k + 1 < n ? *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(k) + 1, values.end())
                                 : below;
  // torch.lerp: start + w (end - start) for w < 0.5, end - (end - start)(1 - w) otherwise.
  return w < 0.5 ? below + w * (above - below) : above - (above - below) * (1.0 - w);
}

std::vector<double> dynamic_threshold_scales(const Tensor& x0, double p, double max_scale) {
  check_x0_threshold(X0Threshold::dynamic(p, max_scale), "dynamic_threshold_scales");
  DDPM_CHECK(x0.defined() && x0.ndim() >= 1 && x0.numel() > 0,
             "dynamic thresholding: x_0 must be a non-empty [N, ...] batch, got "
                 << (x0.defined() ? x0.describe() : std::string("an undefined tensor")));
  DDPM_CHECK(x0.dtype() == DType::f32 || x0.dtype() == DType::f64,
             "dynamic thresholding: x_0 is " << x0.describe()
                                             << "; its percentile is taken on the host, which reads f32 and f64 only");
  const std::int64_t N = x0.dim(0);
  const auto D = static_cast<std::size_t>(x0.numel() / N);
  const std::vector<double> host = x0.to_double_vector();  // [N * D]: the one copy per step
  std::vector<double> scales(static_cast<std::size_t>(N));
  std::vector<double> row(D);
  for (std::size_t n = 0; n < scales.size(); ++n) {
    for (std::size_t j = 0; j < D; ++j) row[j] = std::fabs(host[n * D + j]);
    const double q = quantile_linear(row, p);
    // s = clamp(q, 1, S) (diffusers: torch.clamp(s, min=1, max=sample_max_value)); NaN stays NaN.
    scales[n] = std::isnan(q) ? q : std::min(std::max(q, 1.0), max_scale);
  }
  return scales;
}

Tensor apply_x0_threshold(const Tensor& x0, const X0Threshold& policy) {
  switch (policy.kind) {
    case X0Threshold::Kind::none: return x0;
    case X0Threshold::Kind::static_clip: return clamp(x0, -1.0, 1.0);
    case X0Threshold::Kind::dynamic: break;
  }
  const std::vector<double> s = dynamic_threshold_scales(x0, policy.percentile, policy.max_scale);
  // s_n = 1 for every sample: clip(x, -1, 1) / 1 is the static clamp, without the division.
  if (std::all_of(s.begin(), s.end(), [](double v) { return v == 1.0; })) return clamp(x0, -1.0, 1.0);
  Shape per_sample(static_cast<std::size_t>(x0.ndim()), 1);  // [N, 1, ..., 1]
  per_sample[0] = x0.dim(0);
  const Tensor scale_t = Tensor::from_vector(s, per_sample, x0.dtype(), x0.device());
  // clip(x, -s, s) / s = clamp(x / s, -1, 1) exactly (x0_threshold.h).
  return clamp(div(x0, scale_t), -1.0, 1.0);
}

}  // namespace ddpm::diffusion
