// models/diffusion/interpolation.cpp: see interpolation.h for slerp and why not lerp.
#include "models/diffusion/interpolation.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {

double slerp_angle(const Tensor& a, const Tensor& b) {
  DDPM_CHECK(a.defined() && b.defined() && a.shape() == b.shape(),
             "slerp: the two latents are " << (a.defined() ? shape_str(a.shape()) : "undefined") << " and "
                                           << (b.defined() ? shape_str(b.shape()) : "undefined")
                                           << "; they must have one shape");
  // The dot product and norms on the host, in double: one pair of latents, read once.
  const std::vector<double> va = a.to_double_vector(), vb = b.to_double_vector();
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (std::size_t k = 0; k < va.size(); ++k) {
    ab += va[k] * vb[k];
    aa += va[k] * va[k];
    bb += vb[k] * vb[k];
  }
  DDPM_CHECK(aa > 0.0 && bb > 0.0, "slerp: a latent is the zero vector, which has no direction");
  return std::acos(std::clamp(ab / std::sqrt(aa * bb), -1.0, 1.0));
}

Tensor slerp(const Tensor& a, const Tensor& b, double f) {
  DDPM_CHECK(std::isfinite(f) && f >= 0.0 && f <= 1.0, "slerp: the fraction must lie in [0, 1], got " << f);
  const double theta = slerp_angle(a, b);
  const double s = std::sin(theta);
  if (s < 1e-6) return add(scale(a, 1.0 - f), scale(b, f));  // (nearly) parallel: the formula's limit
  return add(scale(a, std::sin((1.0 - f) * theta) / s), scale(b, std::sin(f * theta) / s));
}

std::vector<double> interpolation_fractions(int frames) {
  DDPM_CHECK(frames >= 2, "interpolation: at least 2 frames are needed (both ends), got " << frames);
  std::vector<double> f(static_cast<std::size_t>(frames));
  for (int j = 0; j < frames; ++j) f[static_cast<std::size_t>(j)] = static_cast<double>(j) / (frames - 1);
  return f;
}

}  // namespace ddpm::diffusion
