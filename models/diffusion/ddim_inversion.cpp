// models/diffusion/ddim_inversion.cpp: see ddim_inversion.h for the ODE and the states.
#include "models/diffusion/ddim_inversion.h"

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/guidance.h"
#include "models/diffusion/sdedit.h"

namespace ddpm::diffusion {

namespace {

// The config both directions use: DDIM, eta 0, no clipping.
SamplerConfig ode_config(const SamplerConfig& config, const char* what) {
  DDPM_CHECK(config.kind == SamplerConfig::Kind::ddim,
             what << ": DDIM inversion and decoding follow the DDIM ODE; the config's sampler is "
                  << sampler_kind_name(config.kind));
  SamplerConfig c = config;
  c.eta = 0.0;
  c.clip_x0 = false;
  return c;
}

}  // namespace

Tensor ddim_invert(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& x0,
                   const std::vector<std::int64_t>& labels, const SamplerConfig& config, Device device,
                   const StepCallback& callback) {
  NoGradGuard no_grad;
  const SamplerConfig c = ode_config(config, "ddim_invert");
  DDPM_CHECK(x0.defined() && x0.shape().size() >= 2, "ddim_invert: the images need a batch axis and a channel axis");
  check_sample_request(net, x0.shape(), labels, c);
  const RespacedSchedule rs = sampling_process(base, c.respacing);
  const DiffusionSchedule& s = rs.schedule;
  const std::int64_t K = s.num_timesteps();

  Tensor x = Tensor::from_vector(x0.to_double_vector(), x0.shape(), c.dtype, device);  // the clean state
  for (std::int64_t i = 0; i < K; ++i) {
    // The step from state i - 1 (clean for i = 0) to state i, the network asked at the lower
    // end: index i - 1, or index 0 for the clean image (see the header).
    const std::int64_t at = i == 0 ? 0 : i - 1;
    const Timesteps ta(static_cast<std::size_t>(x.dim(0)), at);
    const NetOutput out =
        network_output(net, c, x, static_cast<double>(rs.timestep_map[static_cast<std::size_t>(at)]), labels,
                       sigma_of_alpha_bar(s.alphas_cumprod[static_cast<std::size_t>(at)]));
    Tensor eps, pred_x0;
    if (i == 0) {
      // abar = 1 at the clean state: x_0^ = x, and eps^ is the network's eps at t_0 (for an
      // x_0- or v-network, converted at t_0's abar with x as the input).
      pred_x0 = x;
      eps = eps_from_prediction(s, c.mean_type, out.pred, x, ta);
    } else {
      eps = eps_from_prediction(s, c.mean_type, out.pred, x, ta);
      pred_x0 = predict_x0_from_eps(s, x, ta, eps);
    }
    // x_{t_i} = sqrt(abar_i) x_0^ + sqrt(1 - abar_i) eps^
    const double abar = s.alphas_cumprod[static_cast<std::size_t>(i)];
    x = add(scale(pred_x0, std::sqrt(abar)), scale(eps, std::sqrt(1.0 - abar)));
    if (callback) callback(StepInfo{i, K, rs.timestep_map[static_cast<std::size_t>(i)], x, pred_x0});
  }
  return x;
}

Tensor ddim_decode(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& xT,
                   const std::vector<std::int64_t>& labels, const SamplerConfig& config, Device device,
                   const StepCallback& callback) {
  const SamplerConfig c = ode_config(config, "ddim_decode");
  DDPM_CHECK(xT.defined() && xT.shape().size() >= 2, "ddim_decode: the latents need a batch axis and a channel axis");
  const std::int64_t K = sampling_process(base, c.respacing).schedule.num_timesteps();
  const Tensor x = Tensor::from_vector(xT.to_double_vector(), xT.shape(), c.dtype, device);
  Generator unused(0);  // eta = 0: the DDIM steps draw nothing
  return reverse_process_from(base, net, x, K - 1, labels, c, unused, callback);
}

ReconstructionError reconstruction_error(const Tensor& x, const Tensor& y) {
  DDPM_CHECK(x.defined() && y.defined() && x.shape() == y.shape(),
             "reconstruction_error: the images are " << (x.defined() ? shape_str(x.shape()) : "undefined") << " and "
                                                     << (y.defined() ? shape_str(y.shape()) : "undefined")
                                                     << "; they must have one shape");
  const std::vector<double> a = x.to_double_vector(), b = y.to_double_vector();
  DDPM_CHECK(!a.empty(), "reconstruction_error: the images are empty");
  double sq = 0.0;
  for (std::size_t k = 0; k < a.size(); ++k) sq += (a[k] - b[k]) * (a[k] - b[k]);
  ReconstructionError e;
  e.mse = sq / static_cast<double>(a.size());
  e.psnr = e.mse > 0.0 ? 10.0 * std::log10(4.0 / e.mse) : std::numeric_limits<double>::infinity();
  return e;
}

}  // namespace ddpm::diffusion
