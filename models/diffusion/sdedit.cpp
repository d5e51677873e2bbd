// models/diffusion/sdedit.cpp: see sdedit.h for the equations and the start-step rule.
#include "models/diffusion/sdedit.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {

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
