// models/diffusion/langevin.cpp: see langevin.h for the equations.
#include "models/diffusion/langevin.h"

#include <cmath>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/guidance.h"

namespace ddpm::diffusion {

namespace {

// ||v|| per sample, as an {N, 1, ..., 1} tensor that broadcasts against v.
Tensor per_sample_norm(const Tensor& v) {
  std::vector<int> axes;
  for (int a = 1; a < static_cast<int>(v.shape().size()); ++a) axes.push_back(a);
  return sqrt(sum(square(v), axes, /*keepdim=*/true));
}

}  // namespace

void check_corrector(const SamplerConfig& config) {
  DDPM_CHECK(config.corrector_steps >= 0,
             "sample: --corrector-steps must be >= 0 (0 = no corrector), got " << config.corrector_steps);
  DDPM_CHECK(std::isfinite(config.snr) && config.snr > 0.0,
             "sample: --snr (the Langevin corrector's signal-to-noise ratio) must be a positive number, got "
                 << config.snr);
}

Tensor score_estimate(const RespacedSchedule& process, const DenoiseFn& net, const SamplerConfig& config,
                      const Tensor& x, std::int64_t i, const std::vector<std::int64_t>& labels) {
  const Timesteps ti(static_cast<std::size_t>(x.dim(0)), i);
  const double t_orig = static_cast<double>(process.timestep_map[static_cast<std::size_t>(i)]);
  const double sigma = sigma_of_alpha_bar(process.schedule.alphas_cumprod[static_cast<std::size_t>(i)]);
  const NetOutput out = network_output(net, config, x, t_orig, labels, sigma);
  const Tensor eps = eps_from_prediction(process.schedule, config.mean_type, out.pred, x, ti);
  const double abar = process.schedule.alphas_cumprod[static_cast<std::size_t>(i)];
  return scale(eps, -1.0 / std::sqrt(1.0 - abar));  // s = -eps / sqrt(1 - abar)
}

Tensor langevin_step_size(const Tensor& score, const Tensor& z, double snr, double alpha) {
  const Tensor ratio = div(per_sample_norm(z), per_sample_norm(score));  // ||z|| / ||s||
  return scale(square(ratio), 2.0 * alpha * snr * snr);                 // 2 alpha (r ||z|| / ||s||)^2
}

Tensor langevin_correct(const RespacedSchedule& process, const DenoiseFn& net, const SamplerConfig& config,
                        const Tensor& x, std::int64_t i, const std::vector<std::int64_t>& labels, Generator& gen,
                        const ScoreTerm& extra_score) {
  check_corrector(config);
  const double alpha = 1.0 - process.schedule.betas[static_cast<std::size_t>(i)];
  Tensor y = x;
  for (std::int64_t m = 0; m < config.corrector_steps; ++m) {
    Tensor s = score_estimate(process, net, config, y, i, labels);
    if (extra_score) s = add(s, extra_score(y));
    const Tensor z = randn(y.shape(), gen, y.device(), y.dtype());
    const Tensor step = langevin_step_size(s, z, config.snr, alpha);
    // x <- x + eps s + sqrt(2 eps) z
    y = add(add(y, mul(step, s)), mul(sqrt(scale(step, 2.0)), z));
  }
  return y;
}

}  // namespace ddpm::diffusion
