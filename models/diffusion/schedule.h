// models/diffusion/schedule.h: the Gaussian diffusion process, apart from the network.
//
// Owns the noise schedule and every coefficient derived from it, computed on the host in
// float64 (DiffusionSchedule), and the tensor-level formulas that use them: the forward
// process q(x_t | x_0), the true posterior q(x_{t-1} | x_t, x_0), the conversions between
// eps-, x0- and v-predictions, and the model variances (fixed small, fixed large, learned
// range). The network is only a callable net(x_t, t, y); nothing here knows about it.
//
// Conventions. t is an integer timestep in [0, T): index 0 is the paper's t = 1, the
// first noising step. Per-sample timesteps are a host vector of N integers; a coefficient
// is gathered per sample into an [N, 1, ..., 1] tensor (as many axes as x) and broadcast
// over the sample (NHWC images: [N, 1, 1, 1]). The tensor functions use engine ops, so
// they record on the tape and run on any device (f32), or in f64 on the CPU for tests.
//
// Notation (Ho et al. 2020, "DDPM"; Nichol & Dhariwal 2021, "improved DDPM"):
//   alpha_t = 1 - beta_t,   alpha_bar_t = prod_{s<=t} alpha_s
//   q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                (DDPM eq. 4)
//   q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)                                   (DDPM eq. 6, 7)
//     mu~_t = coef1 x_0 + coef2 x_t,  coef1 = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t),
//     coef2 = (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t),
//     beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ddpm::diffusion {

using Timesteps = std::vector<std::int64_t>;

enum class NoiseSchedule { linear, cosine };
// "linear" or "cosine"; anything else is a ValueError listing the choices.
NoiseSchedule parse_noise_schedule(const std::string& name);
const char* noise_schedule_name(NoiseSchedule s);

// Linear (DDPM): beta from 1e-4 to 0.02 scaled by 1000/T, linearly spaced over T steps,
// so alpha_bar at the last step is near 0 for any T. Needs T > 20 (beta_end = 20/T < 1).
std::vector<double> linear_betas(std::int64_t T);
// Cosine (improved DDPM eq. 17): alpha_bar(t) = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2),
// s = 0.008; beta_t = min(1 - alpha_bar(t+1)/alpha_bar(t), 0.999) on the grid t = 0..T.
std::vector<double> cosine_betas(std::int64_t T);
std::vector<double> betas_for(NoiseSchedule schedule, std::int64_t T);

// Zero terminal SNR (Lin, Liu, Li & Yang 2024, "Common Diffusion Noise Schedules and Sample
// Steps are Flawed", sec. 3.1 and Algorithm 1). Linear and cosine schedules end with
// alpha_bar_{T-1} > 0 (linear, T = 1000: 4e-5, sqrt = 0.0064), so training never shows the
// network pure noise while sampling starts from it. The rescale shifts and scales
// sqrt(alpha_bar) so that it ends exactly at 0 and keeps its first value:
//   sqrt_abar'_t = (sqrt_abar_t - sqrt_abar_{T-1}) sqrt_abar_0 / (sqrt_abar_0 - sqrt_abar_{T-1}),
// then alpha_t' = abar'_t / abar'_{t-1} (abar'_{-1} = 1) and beta'_t = 1 - alpha_t'. The
// last beta' is exactly 1 and the last alpha_bar' exactly 0 (the ratio 0 / abar'_{T-2}).
// Needs T >= 2 and a strictly decreasing alpha_bar (every beta in (0, 1)); ValueError otherwise.
// A model trained on it cannot predict eps (x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) is
// 0/0 at the last step): the paper trains v (or x_0); see docs/DESIGN.md.
std::vector<double> rescale_zero_terminal_snr(const std::vector<double>& betas);

// Every coefficient of the process, in float64, indexed by timestep (length T).
struct DiffusionSchedule {
  explicit DiffusionSchedule(std::vector<double> betas);  // each beta in (0, 1]
  std::int64_t num_timesteps() const { return static_cast<std::int64_t>(betas.size()); }

  std::vector<double> betas;
  std::vector<double> alphas_cumprod;       // alpha_bar_t
  std::vector<double> alphas_cumprod_prev;  // alpha_bar_{t-1}, with 1 at t = 0
  std::vector<double> alphas_cumprod_next;  // alpha_bar_{t+1}, with 0 at t = T-1
  std::vector<double> sqrt_alphas_cumprod;
  std::vector<double> sqrt_one_minus_alphas_cumprod;
  std::vector<double> log_one_minus_alphas_cumprod;
  std::vector<double> sqrt_recip_alphas_cumprod;    // 1 / sqrt(alpha_bar_t); +inf where alpha_bar_t = 0
  std::vector<double> sqrt_recipm1_alphas_cumprod;  // sqrt(1 / alpha_bar_t - 1); +inf where alpha_bar_t = 0
  std::vector<double> posterior_variance;           // beta~_t; exactly 0 at t = 0
  // log beta~_t with the t = 0 entry replaced by the t = 1 value (log 0 is -inf).
  std::vector<double> posterior_log_variance_clipped;
  std::vector<double> posterior_mean_coef1;  // multiplies x_0
  std::vector<double> posterior_mean_coef2;  // multiplies x_t
  // alpha_bar_{T-1} == 0 exactly (a zero-terminal-SNR schedule): x_0 cannot be recovered
  // from an eps-prediction at the last step. Every other coefficient stays finite there:
  // coef1 = sqrt(abar_{T-2}), coef2 = 0, beta~ = 1 - abar_{T-2}, log(1 - abar) = 0.
  bool zero_terminal_snr() const { return alphas_cumprod.back() == 0.0; }
};

// coef[t[i]] for every sample i, as a tensor of shape [N, 1, ..., 1] with like's rank,
// dtype and device (N = like.dim(0) = t.size()). A constant: not on the tape.
Tensor extract(const std::vector<double>& coef, const Timesteps& t, const Tensor& like);

// x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise                     (DDPM eq. 4)
Tensor q_sample(const DiffusionSchedule& s, const Tensor& x0, const Timesteps& t, const Tensor& noise);

struct Gaussian {
  Tensor mean;
  Tensor variance;      // [N, 1, ..., 1] for the fixed variances, like mean when learned
  Tensor log_variance;  // same shape as variance
};

// q(x_t | x_0): mean sqrt(alpha_bar_t) x_0, variance 1 - alpha_bar_t (the prior term's input).
Gaussian q_mean_variance(const DiffusionSchedule& s, const Tensor& x0, const Timesteps& t);
// q(x_{t-1} | x_t, x_0): mean coef1 x_0 + coef2 x_t, variance beta~_t, log variance clipped.
Gaussian q_posterior_mean_variance(const DiffusionSchedule& s, const Tensor& x0, const Tensor& xt,
                                   const Timesteps& t);

// x_0 = x_t / sqrt(alpha_bar_t) - sqrt(1/alpha_bar_t - 1) eps        (q_sample solved for x_0)
// Undefined where alpha_bar_t = 0 (x_t is then pure noise and says nothing of x_0): a
// ValueError naming the timestep rather than a NaN.
Tensor predict_x0_from_eps(const DiffusionSchedule& s, const Tensor& xt, const Timesteps& t, const Tensor& eps);
// eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t), finite for every alpha_bar_t < 1
// (at alpha_bar_t = 0 it is x_t itself). Written this way, not as (x_t / sqrt(abar) - x_0) /
// sqrt(1/abar - 1), which is inf/inf at a zero-terminal-SNR schedule's last step.
Tensor predict_eps_from_x0(const DiffusionSchedule& s, const Tensor& xt, const Timesteps& t, const Tensor& x0);
// v-parameterization (Salimans & Ho 2022): v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0.
Tensor v_target(const DiffusionSchedule& s, const Tensor& x0, const Tensor& noise, const Timesteps& t);
// x_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v;  eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v.
Tensor predict_x0_from_v(const DiffusionSchedule& s, const Tensor& xt, const Timesteps& t, const Tensor& v);
Tensor predict_eps_from_v(const DiffusionSchedule& s, const Tensor& xt, const Timesteps& t, const Tensor& v);

// The model's variance Sigma_t. `like` supplies N, rank, dtype and device.
// analytic: Analytic-DPM's per-step table (analytic_variance.h), which needs a Gamma estimate
// beside the schedule; the functions here that take a VarianceType refuse it (ValueError), the
// sampler and the bits/dim evaluation build it from their Gamma file.
enum class VarianceType { fixed_small, fixed_large, learned_range, analytic };
// "fixed_small", "fixed_large", "learned_range" or "analytic".
VarianceType parse_variance_type(const std::string& name);
const char* variance_type_name(VarianceType v);

// Fixed small: beta~_t (log clipped at t = 0).                          [N, 1, ..., 1]
Gaussian fixed_small_variance(const DiffusionSchedule& s, const Timesteps& t, const Tensor& like);
// Fixed large: beta_t, except beta~_1 at t = 0 (so the decoder's variance is not beta_0).
std::vector<double> fixed_large_variance_table(const DiffusionSchedule& s);
Gaussian fixed_large_variance(const DiffusionSchedule& s, const Timesteps& t, const Tensor& like);
// Learned range (improved DDPM eq. 15): the network's extra output v in [-1, 1] interpolates
// log Sigma = frac log beta_t + (1 - frac) log beta~_t (clipped), frac = (v + 1)/2, with the
// full (unclipped) betas. Differentiable in var_values.                 shape of var_values
Gaussian learned_range_variance(const DiffusionSchedule& s, const Timesteps& t, const Tensor& var_values);

// The model's p(x_{t-1} | x_t) from an eps-prediction: x_0 = predict_x0_from_eps (clipped
// to [-1, 1] when clip_x0, as sampling with the cosine schedule needs), mean = the
// posterior mean at (x_0, x_t) (equivalent to DDPM eq. 11 without clipping), variance by
// type. var_values is the network's second output, required for learned_range and
// ignored otherwise. The variance tensors are [N, 1, ..., 1] for the fixed types.
// Refuses (ValueError, through predict_x0_from_eps) a timestep with alpha_bar = 0.
Gaussian p_mean_variance(const DiffusionSchedule& s, VarianceType type, const Tensor& eps, const Tensor& var_values,
                         const Tensor& xt, const Timesteps& t, bool clip_x0);
// The same from an x_0 estimate (unclipped; clamped here when clip_x0): what an x_0- or
// v-network gives directly, and the only form defined at alpha_bar = 0.
Gaussian p_mean_variance_from_x0(const DiffusionSchedule& s, VarianceType type, const Tensor& x0,
                                 const Tensor& var_values, const Tensor& xt, const Timesteps& t, bool clip_x0);

}  // namespace ddpm::diffusion
