// models/diffusion/training_recipes.cpp: see training_recipes.h for the equations.
#include "models/diffusion/training_recipes.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {

std::vector<double> min_snr_weights(const DiffusionSchedule& s, ModelMeanType type, const Timesteps& t,
                                    double gamma) {
  DDPM_CHECK(std::isfinite(gamma) && gamma > 0.0, "Min-SNR weighting: gamma must be a positive number, got " << gamma);
  std::vector<double> w;
  w.reserve(t.size());
  for (std::int64_t ti : t) {
    const double abar = s.alphas_cumprod[static_cast<std::size_t>(ti)];
    const double snr = abar / (1.0 - abar);
    const double clamped = std::min(snr, gamma);
    switch (type) {
      case ModelMeanType::eps: w.push_back(clamped / snr); break;
      case ModelMeanType::v: w.push_back(clamped / (snr + 1.0)); break;
      case ModelMeanType::x0: w.push_back(clamped); break;
    }
  }
  return w;
}

Tensor offset_noise(const Tensor& noise, double offset, Generator& gen) {
  if (offset == 0.0) return noise;
  Shape per_channel(noise.shape().size(), 1);
  per_channel.front() = noise.dim(0);
  per_channel.back() = noise.dim(-1);
  const Tensor c = randn(per_channel, gen, noise.device(), noise.dtype());
  return add(noise, scale(c, offset));  // broadcast over the spatial axes
}

}  // namespace ddpm::diffusion
