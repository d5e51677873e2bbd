// models/diffusion/schedule.cpp: noise schedules, their float64 coefficient tables, and
// the tensor formulas of the forward process and its posterior (see schedule.h).
#include "models/diffusion/schedule.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/x0_threshold.h"

namespace ddpm::diffusion {

namespace {

constexpr double kPi = 3.14159265358979323846;

void check_num_timesteps(const char* fn, std::int64_t T) {
  DDPM_CHECK(T >= 1, fn << ": the number of timesteps must be at least 1, got " << T);
}

}  // namespace

NoiseSchedule parse_noise_schedule(const std::string& name) {
  if (name == "linear") return NoiseSchedule::linear;
  if (name == "cosine") return NoiseSchedule::cosine;
  DDPM_THROW(ValueError, "unknown noise schedule '" << name << "': expected 'linear' or 'cosine'");
}

const char* noise_schedule_name(NoiseSchedule s) { return s == NoiseSchedule::linear ? "linear" : "cosine"; }

std::vector<double> linear_betas(std::int64_t T) {
  check_num_timesteps("linear_betas", T);
  // The DDPM range (1e-4 .. 0.02 at T = 1000) rescaled so that sum(beta), and with it
  // alpha_bar at the last step, stays about the same for any T.
  double scale = 1000.0 / static_cast<double>(T);
  double start = scale * 1e-4, end = scale * 0.02;
  // For T <= 20 the scaled end would reach beta >= 1 (alpha_bar = 0, infinite 1/sqrt(alpha_bar)).
  DDPM_CHECK(end < 1.0, "linear_betas: with T = " << T << " the scaled linear schedule ends at beta = " << end
                                                  << " >= 1; use T > 20 or the cosine schedule");
  std::vector<double> betas(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i)
    betas[static_cast<std::size_t>(i)] =
        T == 1 ? start : start + (end - start) * static_cast<double>(i) / static_cast<double>(T - 1);
  return betas;
}

std::vector<double> cosine_betas(std::int64_t T) {
  check_num_timesteps("cosine_betas", T);
  const double s = 0.008;
  auto f = [&](double t) {
    double c = std::cos((t / static_cast<double>(T) + s) / (1.0 + s) * kPi / 2.0);
    return c * c;
  };
  // beta_t = 1 - alpha_bar(t+1)/alpha_bar(t); the f(0) normalization cancels in the ratio.
  std::vector<double> betas(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i)
    betas[static_cast<std::size_t>(i)] = std::min(1.0 - f(static_cast<double>(i + 1)) / f(static_cast<double>(i)), 0.999);
  return betas;
}

std::vector<double> betas_for(NoiseSchedule schedule, std::int64_t T) {
  return schedule == NoiseSchedule::linear ? linear_betas(T) : cosine_betas(T);
}

std::vector<double> rescale_zero_terminal_snr(const std::vector<double>& betas) {
  const std::size_t T = betas.size();
  DDPM_CHECK(T >= 2, "rescale_zero_terminal_snr: needs at least 2 timesteps, got " << T);
  std::vector<double> sqrt_abar(T);
  double abar = 1.0;
  for (std::size_t i = 0; i < T; ++i) {
    DDPM_CHECK(betas[i] > 0.0 && betas[i] < 1.0, "rescale_zero_terminal_snr: beta[" << i << "] = " << betas[i]
                                                     << " is outside (0, 1); the schedule must not already end at 0");
    abar *= 1.0 - betas[i];
    sqrt_abar[i] = std::sqrt(abar);
  }
  // Lin et al. 2024, Algorithm 1: shift so the last value is 0, scale so the first is kept.
  const double first = sqrt_abar.front(), last = sqrt_abar.back();
  for (double& v : sqrt_abar) v = (v - last) * first / (first - last);
  sqrt_abar.back() = 0.0;  // (last - last) is 0 already; stated for the reader
  // Back to betas: alpha_t = abar_t / abar_{t-1}, with abar_{-1} = 1.
  std::vector<double> out(T);
  double prev = 1.0;
  for (std::size_t i = 0; i < T; ++i) {
    const double a = sqrt_abar[i] * sqrt_abar[i];
    out[i] = 1.0 - a / prev;  // the last: 1 - 0 / abar_{T-2} = 1 exactly
    prev = a;
  }
  return out;
}

DiffusionSchedule::DiffusionSchedule(std::vector<double> b) : betas(std::move(b)) {
  DDPM_CHECK(!betas.empty(), "DiffusionSchedule: the beta schedule is empty");
  const std::size_t T = betas.size();
  for (std::size_t i = 0; i < T; ++i)
    DDPM_CHECK(betas[i] > 0.0 && betas[i] <= 1.0,
               "DiffusionSchedule: beta[" << i << "] = " << betas[i] << " is outside (0, 1]");
  auto table = [T] { return std::vector<double>(T); };
  alphas_cumprod = table();
  alphas_cumprod_prev = table();
  alphas_cumprod_next = table();
  sqrt_alphas_cumprod = table();
  sqrt_one_minus_alphas_cumprod = table();
  log_one_minus_alphas_cumprod = table();
  sqrt_recip_alphas_cumprod = table();
  sqrt_recipm1_alphas_cumprod = table();
  posterior_variance = table();
  posterior_log_variance_clipped = table();
  posterior_mean_coef1 = table();
  posterior_mean_coef2 = table();

  double abar = 1.0;
  for (std::size_t i = 0; i < T; ++i) {
    alphas_cumprod_prev[i] = abar;
    abar *= 1.0 - betas[i];
    alphas_cumprod[i] = abar;
  }
  for (std::size_t i = 0; i < T; ++i) {
    const double a = alphas_cumprod[i], a_prev = alphas_cumprod_prev[i];
    alphas_cumprod_next[i] = i + 1 < T ? alphas_cumprod[i + 1] : 0.0;
    sqrt_alphas_cumprod[i] = std::sqrt(a);
    sqrt_one_minus_alphas_cumprod[i] = std::sqrt(1.0 - a);
    log_one_minus_alphas_cumprod[i] = std::log(1.0 - a);
    sqrt_recip_alphas_cumprod[i] = std::sqrt(1.0 / a);
    sqrt_recipm1_alphas_cumprod[i] = std::sqrt(1.0 / a - 1.0);
    // DDPM eq. 7.
    posterior_variance[i] = betas[i] * (1.0 - a_prev) / (1.0 - a);
    posterior_mean_coef1[i] = betas[i] * std::sqrt(a_prev) / (1.0 - a);
    posterior_mean_coef2[i] = (1.0 - a_prev) * std::sqrt(1.0 - betas[i]) / (1.0 - a);
  }
  // beta~_0 = 0 (x_0 is known given x_1 and x_0); a one-step schedule has nothing to borrow.
  for (std::size_t i = 0; i < T; ++i) {
    double v = i == 0 ? (T > 1 ? posterior_variance[1] : betas[0]) : posterior_variance[i];
    posterior_log_variance_clipped[i] = std::log(v);
  }
}

Tensor extract(const std::vector<double>& coef, const Timesteps& t, const Tensor& like) {
  DDPM_CHECK(like.defined() && like.ndim() >= 1, "extract: the reference tensor must have a batch axis");
  DDPM_CHECK(static_cast<std::int64_t>(t.size()) == like.dim(0),
             "extract: " << t.size() << " timesteps for a batch of shape " << shape_str(like.shape()));
  std::vector<double> values(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    DDPM_CHECK(t[i] >= 0 && t[i] < static_cast<std::int64_t>(coef.size()),
               "extract: timestep " << t[i] << " of sample " << i << " is outside [0, " << coef.size() << ")");
    values[i] = coef[static_cast<std::size_t>(t[i])];
  }
  Shape shape(static_cast<std::size_t>(like.ndim()), 1);
  shape[0] = like.dim(0);
  return Tensor::from_vector(values, shape, like.dtype(), like.device());
}

Tensor q_sample(const DiffusionSchedule& s, const Tensor& x0, const Timesteps& t, const Tensor& noise) {
  DDPM_CHECK(x0.shape() == noise.shape(), "q_sample: x0 " << shape_str(x0.shape()) << " and noise "
                                                          << shape_str(noise.shape()) << " differ in shape");
  return add(mul(extract(s.sqrt_alphas_cumprod, t, x0), x0),
             mul(extract(s.sqrt_one_minus_alphas_cumprod, t, x0), noise));
}

Gaussian q_mean_variance(const DiffusionSchedule& s, const Tensor& x0, const Timesteps& t) {
  std::vector<double> var(s.alphas_cumprod.size());
  for (std::size_t i = 0; i < var.size(); ++i) var[i] = 1.0 - s.alphas_cumprod[i];
  return {mul(extract(s.sqrt_alphas_cumprod, t, x0), x0), extract(var, t, x0),
          extract(s.log_one_minus_alphas_cumprod, t, x0)};
}

Gaussian q_posterior_mean_variance(const DiffusionSchedule& s, const Tensor& x0, const Tensor& xt,
                                   const Timesteps& t) {
  DDPM_CHECK(x0.shape() == xt.shape(), "q_posterior_mean_variance: x0 " << shape_str(x0.shape()) << " and x_t "
                                                                        << shape_str(xt.shape()) << " differ in shape");
  Tensor mean = add(mul(extract(s.posterior_mean_coef1, t, xt), x0), mul(extract(s.posterior_mean_coef2, t, xt), xt));
  return {mean, extract(s.posterior_variance, t, xt), extract(s.posterior_log_variance_clipped, t, xt)};
}

Tensor predict_x0_from_eps(const DiffusionSchedule& s, const Tensor& xt, const Timesteps& t, const Tensor& eps) {
  for (std::size_t i = 0; i < t.size(); ++i)
    DDPM_CHECK(t[i] < 0 || t[i] >= s.num_timesteps() || s.alphas_cumprod[static_cast<std::size_t>(t[i])] > 0.0,
               "predict_x0_from_eps: alpha_bar is 0 at timestep " << t[i] << " (a zero-terminal-SNR schedule), so x_t "
                   "is pure noise and x_0 cannot be recovered from an eps-prediction; such models must predict v or "
                   "x0");
  return sub(mul(extract(s.sqrt_recip_alphas_cumprod, t, xt), xt), mul(extract(s.sqrt_recipm1_alphas_cumprod, t, xt), eps));
}

Tensor predict_eps_from_x0(const DiffusionSchedule& s, const Tensor& xt, const Timesteps& t, const Tensor& x0) {
  return div(sub(xt, mul(extract(s.sqrt_alphas_cumprod, t, xt), x0)), extract(s.sqrt_one_minus_alphas_cumprod, t, xt));
}

Tensor v_target(const DiffusionSchedule& s, const Tensor& x0, const Tensor& noise, const Timesteps& t) {
  return sub(mul(extract(s.sqrt_alphas_cumprod, t, x0), noise), mul(extract(s.sqrt_one_minus_alphas_cumprod, t, x0), x0));
}

Tensor predict_x0_from_v(const DiffusionSchedule& s, const Tensor& xt, const Timesteps& t, const Tensor& v) {
  return sub(mul(extract(s.sqrt_alphas_cumprod, t, xt), xt), mul(extract(s.sqrt_one_minus_alphas_cumprod, t, xt), v));
}

Tensor predict_eps_from_v(const DiffusionSchedule& s, const Tensor& xt, const Timesteps& t, const Tensor& v) {
  return add(mul(extract(s.sqrt_one_minus_alphas_cumprod, t, xt), xt), mul(extract(s.sqrt_alphas_cumprod, t, xt), v));
}

VarianceType parse_variance_type(const std::string& name) {
  if (name == "fixed_small") return VarianceType::fixed_small;
  if (name == "fixed_large") return VarianceType::fixed_large;
  if (name == "learned_range") return VarianceType::learned_range;
  if (name == "analytic") return VarianceType::analytic;
  DDPM_THROW(ValueError, "unknown variance type '"
                             << name << "': expected 'fixed_small', 'fixed_large', 'learned_range' or 'analytic'");
}

const char* variance_type_name(VarianceType v) {
  switch (v) {
    case VarianceType::fixed_small: return "fixed_small";
    case VarianceType::fixed_large: return "fixed_large";
    case VarianceType::learned_range: return "learned_range";
    case VarianceType::analytic: return "analytic";
  }
  return "?";
}

Gaussian fixed_small_variance(const DiffusionSchedule& s, const Timesteps& t, const Tensor& like) {
  return {Tensor(), extract(s.posterior_variance, t, like), extract(s.posterior_log_variance_clipped, t, like)};
}

std::vector<double> fixed_large_variance_table(const DiffusionSchedule& s) {
  std::vector<double> v = s.betas;
  if (v.size() > 1) v[0] = s.posterior_variance[1];
  return v;
}

Gaussian fixed_large_variance(const DiffusionSchedule& s, const Timesteps& t, const Tensor& like) {
  std::vector<double> var = fixed_large_variance_table(s), log_var(var.size());
  for (std::size_t i = 0; i < var.size(); ++i) log_var[i] = std::log(var[i]);
  return {Tensor(), extract(var, t, like), extract(log_var, t, like)};
}

Gaussian learned_range_variance(const DiffusionSchedule& s, const Timesteps& t, const Tensor& var_values) {
  std::vector<double> log_betas(s.betas.size());
  for (std::size_t i = 0; i < log_betas.size(); ++i) log_betas[i] = std::log(s.betas[i]);
  Tensor min_log = extract(s.posterior_log_variance_clipped, t, var_values);  // [N, 1, ..., 1]
  Tensor max_log = extract(log_betas, t, var_values);
  Tensor frac = scale(add_scalar(var_values, 1.0), 0.5);  // (v + 1) / 2
  // frac max + (1 - frac) min = min + frac (max - min)
  Tensor log_var = add(min_log, mul(frac, sub(max_log, min_log)));
  return {Tensor(), exp(log_var), log_var};
}

Gaussian p_mean_variance(const DiffusionSchedule& s, VarianceType type, const Tensor& eps, const Tensor& var_values,
                         const Tensor& xt, const Timesteps& t, bool clip_x0) {
  DDPM_CHECK(eps.shape() == xt.shape(), "p_mean_variance: eps " << shape_str(eps.shape()) << " and x_t "
                                                                << shape_str(xt.shape()) << " differ in shape");
  return p_mean_variance_from_x0(s, type, predict_x0_from_eps(s, xt, t, eps), var_values, xt, t, clip_x0);
}

Gaussian p_mean_variance_from_x0(const DiffusionSchedule& s, VarianceType type, const Tensor& x0_pred,
                                 const Tensor& var_values, const Tensor& xt, const Timesteps& t, bool clip_x0) {
  DDPM_CHECK(x0_pred.shape() == xt.shape(), "p_mean_variance: x_0 " << shape_str(x0_pred.shape()) << " and x_t "
                                                                    << shape_str(xt.shape()) << " differ in shape");
  Gaussian var;
  switch (type) {
    case VarianceType::fixed_small: var = fixed_small_variance(s, t, xt); break;
    case VarianceType::fixed_large: var = fixed_large_variance(s, t, xt); break;
    case VarianceType::learned_range:
      DDPM_CHECK(var_values.defined() && var_values.shape() == xt.shape(),
                 "p_mean_variance: learned_range needs var_values of shape " << shape_str(xt.shape()) << ", got "
                     << (var_values.defined() ? shape_str(var_values.shape()) : std::string("none")));
      var = learned_range_variance(s, t, var_values);
      break;
    case VarianceType::analytic:
      DDPM_THROW(ValueError, "p_mean_variance: the analytic variance is a per-step table built from a Gamma "
                             "estimate (analytic_variance.h); take the mean with fixed_small and the variance from "
                             "that table");
  }
  Tensor x0 = x0_pred;
  if (clip_x0) x0 = apply_x0_threshold(x0, X0Threshold::static_clip());  // DDPM's static clip
  var.mean = q_posterior_mean_variance(s, x0, xt, t).mean;
  return var;
}

}  // namespace ddpm::diffusion
