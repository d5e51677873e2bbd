// models/diffusion/sdedit.cpp: see sdedit.h for the equations and the start-step rule.
#include "models/diffusion/sdedit.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {

Tensor ddim_step(const DiffusionSchedule& s, double eta, const Tensor& x, const Denoised& d, std::int64_t i,
                 Generator& gen) {
  const Timesteps ti(static_cast<std::size_t>(x.dim(0)), i);
  // eps recomputed from the (clipped) x_0 estimate, so both terms describe the same point.
  const Tensor eps = predict_eps_from_x0(s, x, ti, d.pred_x0);
  const double abar = s.alphas_cumprod[static_cast<std::size_t>(i)];
  const double abar_prev = s.alphas_cumprod_prev[static_cast<std::size_t>(i)];  // 1 at i = 0
  const double sigma = eta * std::sqrt((1.0 - abar_prev) / (1.0 - abar)) * std::sqrt(1.0 - abar / abar_prev);
  const double dir = std::sqrt(std::max(0.0, 1.0 - abar_prev - sigma * sigma));
  Tensor next = add(scale(d.pred_x0, std::sqrt(abar_prev)), scale(eps, dir));
  if (sigma > 0.0) next = add(next, scale(randn(x.shape(), gen, x.device(), x.dtype()), sigma));
  return next;
}

Tensor reverse_process_from(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& x_start,
                            std::int64_t i_start, const std::vector<std::int64_t>& labels,
                            const SamplerConfig& config, Generator& gen, const StepCallback& callback) {
  NoGradGuard no_grad;
  DDPM_CHECK(config.kind != SamplerConfig::Kind::heun,
             "reverse_process_from: the Heun sampler integrates in sigma, not on the DDPM/DDIM steps; use ddpm or "
             "ddim");
  DDPM_CHECK(x_start.defined(), "reverse_process_from: no starting point x was given");
  check_sample_request(net, x_start.shape(), labels, config);
  DDPM_CHECK(config.eta >= 0.0, "reverse_process_from: eta must be >= 0, got " << config.eta);
  const RespacedSchedule rs = sampling_process(base, config.respacing);
  const DiffusionSchedule& s = rs.schedule;
  const std::int64_t K = s.num_timesteps();
  DDPM_CHECK(i_start >= 0 && i_start < K,
             "reverse_process_from: start index " << i_start << " is outside the process's " << K << " steps");
  const VarianceType variance = resolve_variance(config, K < base.num_timesteps());

  Tensor x = x_start;
  for (std::int64_t i = i_start; i >= 0; --i) {
    const Denoised d = denoise(rs, net, config, x, i, labels);
    x = config.kind == SamplerConfig::Kind::ddpm ? ddpm_ancestral_step(s, variance, x, d, i, gen)
                                                 : ddim_step(s, config.eta, x, d, i, gen);
    if (callback) callback(StepInfo{i, K, rs.timestep_map[static_cast<std::size_t>(i)], x, d.pred_x0});
  }
  return x;
}

std::int64_t sdedit_start_index(const Timesteps& kept, std::int64_t T, double strength) {
  DDPM_CHECK(std::isfinite(strength) && strength > 0.0 && strength <= 1.0,
             "SDEdit: the strength must lie in (0, 1] (t0 = strength * T), got " << strength);
  DDPM_CHECK(!kept.empty(), "SDEdit: the process keeps no timestep");
  // Paper time of original index t is t + 1; keep those <= s T (a 1e-9 slack so that
  // printed strengths such as 0.3 * 1000 = 300 are not lost to rounding).
  const double t0 = strength * static_cast<double>(T) + 1e-9;
  std::int64_t i0 = -1;
  for (std::size_t i = 0; i < kept.size(); ++i)
    if (static_cast<double>(kept[i] + 1) <= t0) i0 = static_cast<std::int64_t>(i);
  DDPM_CHECK(i0 >= 0, "SDEdit: strength " << strength << " puts t0 = " << strength * static_cast<double>(T)
                                          << " below the first kept step (timestep " << kept.front() + 1 << " of "
                                          << T << "); the smallest usable strength is "
                                          << static_cast<double>(kept.front() + 1) / static_cast<double>(T));
  return i0;
}

Tensor sdedit(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& guide, double strength,
              const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen, Device device,
              const StepCallback& callback) {
  NoGradGuard no_grad;
  DDPM_CHECK(guide.defined() && guide.shape().size() >= 2,
             "SDEdit: the guide images need a batch axis and a channel axis");
  const RespacedSchedule rs = sampling_process(base, config.respacing);
  const std::int64_t i0 = sdedit_start_index(rs.timestep_map, base.num_timesteps(), strength);
  const Tensor x_guide = Tensor::from_vector(guide.to_double_vector(), guide.shape(), config.dtype, device);
  const Tensor z = randn(guide.shape(), gen, device, config.dtype);
  // x_{t0} = sqrt(abar_i0) x^g + sqrt(1 - abar_i0) z at the respaced index i0 (abar of the
  // respaced process at i0 is the original abar(t_{i0})).
  const Timesteps ti(static_cast<std::size_t>(guide.dim(0)), i0);
  const Tensor x_t0 = q_sample(rs.schedule, x_guide, ti, z);
  return reverse_process_from(base, net, x_t0, i0, labels, config, gen, callback);
}

}  // namespace ddpm::diffusion
