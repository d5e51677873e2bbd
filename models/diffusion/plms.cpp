// models/diffusion/plms.cpp: see plms.h for the method.
#include "models/diffusion/plms.h"

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {

Tensor adams_bashforth_eps(const std::vector<Tensor>& h) {
  switch (h.size()) {
    case 1: return h[0];
    case 2: return scale(sub(scale(h[0], 3.0), h[1]), 1.0 / 2.0);
    case 3: return scale(add(sub(scale(h[0], 23.0), scale(h[1], 16.0)), scale(h[2], 5.0)), 1.0 / 12.0);
    case 4:
      return scale(sub(add(sub(scale(h[0], 55.0), scale(h[1], 59.0)), scale(h[2], 37.0)), scale(h[3], 9.0)),
                   1.0 / 24.0);
    default: break;
  }
  DDPM_THROW(ValueError, "PLMS: the Adams-Bashforth combination takes 1 to 4 noise estimates, got " << h.size());
}

Tensor plms_sample(const DiffusionSchedule& base, const DenoiseFn& net, const Shape& shape,
                   const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen,
                   Device device, const StepCallback& callback) {
  NoGradGuard no_grad;
  DDPM_CHECK(config.kind == SamplerConfig::Kind::ddim && config.eta == 0.0,
             "PLMS runs on the deterministic DDIM process: the config must be ddim with eta 0 (got "
                 << sampler_kind_name(config.kind) << ", eta " << config.eta << ")");
  DDPM_CHECK(config.corrector_steps == 0, "PLMS: the Langevin corrector applies to --sampler ddpm or ddim");
  check_sample_request(net, shape, labels, config);
  const RespacedSchedule rs = sampling_process(base, config.respacing);
  const DiffusionSchedule& s = rs.schedule;
  const std::int64_t K = s.num_timesteps();

  Tensor x = randn(shape, gen, device, config.dtype);  // x_T ~ N(0, I)
  std::vector<Tensor> history;                         // newest first, at most 4
  Generator unused;                                    // ddim_step draws nothing at eta 0
  for (std::int64_t i = K - 1; i >= 0; --i) {
    const Timesteps ti(static_cast<std::size_t>(shape[0]), i);
    // e_0 = the (guided) network's noise at this step, taken from its clipped x_0 estimate as
    // DDIM does, so that clipping means the same in both samplers.
    const Denoised d = denoise(rs, net, config, x, i, labels);
    history.insert(history.begin(), predict_eps_from_x0(s, x, ti, d.pred_x0));
    if (history.size() > 4) history.pop_back();
    // The step: phi(x, e') with e' the multistep combination; x_0(e') clipped like DDIM's.
    Denoised step;
    step.pred_x0 = predict_x0_from_eps(s, x, ti, adams_bashforth_eps(history));
    step.pred_x0 = apply_x0_threshold(step.pred_x0, resolve_x0_threshold(config));
    x = ddim_step(s, 0.0, x, step, i, unused);
    if (callback) callback(StepInfo{i, K, rs.timestep_map[static_cast<std::size_t>(i)], x, step.pred_x0});
  }
  return x;
}

}  // namespace ddpm::diffusion
