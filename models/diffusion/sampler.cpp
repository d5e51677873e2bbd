// models/diffusion/sampler.cpp: see sampler.h for the equations.
#include "models/diffusion/sampler.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/analytic_variance.h"
#include "models/diffusion/guidance.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/langevin.h"
#include "models/diffusion/respace.h"

namespace ddpm::diffusion {

SamplerConfig::Kind parse_sampler_kind(const std::string& name) {
  if (name == "ddpm") return SamplerConfig::Kind::ddpm;
  if (name == "ddim") return SamplerConfig::Kind::ddim;
  if (name == "heun") return SamplerConfig::Kind::heun;
  DDPM_CHECK(false, "sampler '" << name << "' is unknown; choose ddpm, ddim or heun");
  return SamplerConfig::Kind::ddpm;
}

const char* sampler_kind_name(SamplerConfig::Kind kind) {
  switch (kind) {
    case SamplerConfig::Kind::ddpm: return "ddpm";
    case SamplerConfig::Kind::ddim: return "ddim";
    case SamplerConfig::Kind::heun: return "heun";
  }
  return "?";
}

bool resolve_clip_x0(const SamplerConfig& config) {
  return config.clip_x0.value_or(config.kind != SamplerConfig::Kind::heun);
}

X0Threshold resolve_x0_threshold(const SamplerConfig& config) {
  if (config.clip_x0 == false) return X0Threshold::none();  // asked for no clip at all
  if (config.dynamic_threshold != 0.0) {
    const X0Threshold dynamic = X0Threshold::dynamic(config.dynamic_threshold, config.threshold_max);
    check_x0_threshold(dynamic, "sample: dynamic thresholding of x_0");
    return dynamic;
  }
  DDPM_CHECK(config.threshold_max == std::numeric_limits<double>::infinity(),
             "sample: threshold_max " << config.threshold_max
                                      << " caps dynamic thresholding's s; it needs dynamic_threshold > 0");
  return resolve_clip_x0(config) ? X0Threshold::static_clip() : X0Threshold::none();
}

VarianceType resolve_variance(const SamplerConfig& config, bool respaced) {
  if (!config.variance) return config.learned_sigma ? VarianceType::learned_range : VarianceType::fixed_small;
  const VarianceType v = *config.variance;
  DDPM_CHECK((v == VarianceType::learned_range) == config.learned_sigma,
             "sample: variance " << variance_type_name(v) << " does not fit a network "
                                 << (config.learned_sigma ? "with" : "without")
                                 << " learned sigma; learned_range goes with learned_sigma and only with it");
  DDPM_CHECK(!(respaced && v == VarianceType::fixed_large),
             "sample: fixed_large variance degrades badly with respaced sampling (respacing '"
                 << config.respacing << "'); use fixed_small or a learned variance");
  DDPM_CHECK(v != VarianceType::analytic || config.analytic_gamma,
             "sample: the analytic variance needs a Gamma estimate (ddpm-eval analytic-gamma; --analytic-gamma FILE)");
  DDPM_CHECK(v == VarianceType::analytic || !config.analytic_gamma,
             "sample: a Gamma estimate (--analytic-gamma " << config.analytic_gamma_file
                                                           << ") is only used with the analytic variance, not "
                                                           << variance_type_name(v));
  return v;
}

std::vector<double> analytic_step_variances(const DiffusionSchedule& base, const RespacedSchedule& process,
                                            const SamplerConfig& config) {
  if (resolve_variance(config, process.schedule.num_timesteps() < base.num_timesteps()) != VarianceType::analytic)
    return {};
  DDPM_CHECK(config.kind != SamplerConfig::Kind::heun, "sample: the analytic variance applies to the ddpm and ddim "
                                                       "samplers; heun integrates an ODE and adds no variance");
  check_gamma_fits(*config.analytic_gamma, base, config.analytic_gamma_file);
  // lambda^2 = eta^2 beta~: DDPM's posterior family is eta = 1, DDIM's is its own eta.
  const double eta = config.kind == SamplerConfig::Kind::ddpm ? 1.0 : config.eta;
  return analytic_sampling_variances(process, *config.analytic_gamma, eta, config.analytic_clip_bins,
                                     config.analytic_gamma_file);
}

void check_sample_request(const DenoiseFn& net, const Shape& shape, const std::vector<std::int64_t>& labels,
                          const SamplerConfig& config) {
  DDPM_CHECK(net, "sample: no network was given");
  DDPM_CHECK(shape.size() >= 2 && shape_numel(shape) > 0,
             "sample: the sample shape " << shape_str(shape) << " needs a batch axis and a channel axis");
  const std::int64_t n = shape[0];
  check_guidance_settings(config);
  resolve_x0_threshold(config);  // p and S in range (ValueError)
  const bool guided = config.guidance_scale != 1.0 && !config.autoguide;  // autoguidance needs no classes
  DDPM_CHECK(!guided || config.num_classes > 0,
             "sample: classifier-free guidance (scale " << config.guidance_scale
                                                        << ") needs a class-conditional network: num_classes is "
                                                        << config.num_classes);
  if (config.num_classes > 0) {
    DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
               "sample: a class-conditional network needs one label per sample: " << labels.size()
                                                                                  << " labels for " << n
                                                                                  << " samples");
    for (std::int64_t y : labels)
      DDPM_CHECK(y >= 0 && y < config.num_classes,
                 "sample: label " << y << " is outside [0, " << config.num_classes << ")");
  } else {
    DDPM_CHECK(labels.empty(), "sample: " << labels.size() << " labels were given to a network without classes "
                                          << "(num_classes = 0)");
  }
}

namespace {

// The per-sample standard deviation over the non-batch axes, as [N, 1, ..., 1].
Tensor per_sample_std(const Tensor& v) {
  std::vector<int> axes;
  for (int a = 1; a < static_cast<int>(v.shape().size()); ++a) axes.push_back(a);
  const double inv_d = static_cast<double>(v.dim(0)) / static_cast<double>(v.numel());
  const Tensor centred = sub(v, scale(sum(v, axes, /*keepdim=*/true), inv_d));
  return sqrt(scale(sum(square(centred), axes, /*keepdim=*/true), inv_d));
}

}  // namespace

Tensor rescale_guided_prediction(const Tensor& pred_cfg, const Tensor& pred_c, double phi) {
  DDPM_CHECK(pred_cfg.defined() && pred_c.defined() && pred_cfg.shape() == pred_c.shape() && pred_c.ndim() >= 2,
             "guidance rescale: the guided and conditional predictions must share one [N, ...] shape");
  // Lin et al. 2024 eq. 15-17, folded into one factor per sample:
  // phi (std_c / std_cfg) + (1 - phi), multiplying pred_cfg.
  const Tensor factor = add_scalar(scale(div(per_sample_std(pred_c), per_sample_std(pred_cfg)), phi), 1.0 - phi);
  return mul(pred_cfg, factor);
}

RespacedSchedule sampling_process(const DiffusionSchedule& base, const std::string& respacing) {
  if (!respacing.empty()) return respace(base.betas, respacing);
  RespacedSchedule rs{base, {}};
  rs.timestep_map.resize(static_cast<std::size_t>(base.num_timesteps()));
  for (std::int64_t t = 0; t < base.num_timesteps(); ++t) rs.timestep_map[static_cast<std::size_t>(t)] = t;
  return rs;
}

Denoised denoise(const RespacedSchedule& process, const DenoiseFn& net, const SamplerConfig& config, const Tensor& x,
                 std::int64_t i, const std::vector<std::int64_t>& labels) {
  const Timesteps ti(static_cast<std::size_t>(x.dim(0)), i);
  const std::int64_t t_orig = process.timestep_map[static_cast<std::size_t>(i)];
  const double sigma = sigma_of_alpha_bar(process.schedule.alphas_cumprod[static_cast<std::size_t>(i)]);
  NetOutput out = network_output(net, config, x, static_cast<double>(t_orig), labels, sigma);
  Denoised d;
  d.pred_x0 = x0_from_prediction(process.schedule, config.mean_type, out.pred, x, ti);
  d.pred_x0 = apply_x0_threshold(d.pred_x0, resolve_x0_threshold(config));
  d.var_values = out.var_values;
  return d;
}

Tensor ddpm_ancestral_step(const DiffusionSchedule& s, VarianceType variance, const Tensor& x, const Denoised& d,
                           std::int64_t i, Generator& gen) {
  return ddpm_ancestral_step(s, variance, x, d, i, gen, Tensor());
}

Tensor ddpm_ancestral_step(const DiffusionSchedule& s, VarianceType variance, const Tensor& x, const Denoised& d,
                           std::int64_t i, Generator& gen, const Tensor& guidance_grad) {
  const Timesteps ti(static_cast<std::size_t>(x.dim(0)), i);
  Gaussian g;
  switch (variance) {
    case VarianceType::fixed_small: g = fixed_small_variance(s, ti, x); break;
    case VarianceType::fixed_large: g = fixed_large_variance(s, ti, x); break;
    case VarianceType::learned_range: g = learned_range_variance(s, ti, d.var_values); break;
    case VarianceType::analytic:
      DDPM_THROW(ValueError, "sample: this sampler does not implement the analytic variance (it needs the "
                             "per-step table of analytic_step_variances); use plain ddpm or ddim sampling");
  }
  Tensor mean = q_posterior_mean_variance(s, d.pred_x0, x, ti).mean;
  if (guidance_grad.defined()) mean = add(mean, mul(g.variance, guidance_grad));  // mu + Sigma (s g), ADM Alg. 1
  if (i == 0) return mean;  // no noise on the last step: x_0 = mu~_0 = x_0^
  Tensor z = randn(x.shape(), gen, x.device(), x.dtype());
  return add(mean, mul(exp(scale(g.log_variance, 0.5)), z));
}

Tensor ddpm_step_with_variance(const DiffusionSchedule& s, double variance, const Tensor& x, const Denoised& d,
                               std::int64_t i, Generator& gen, const Tensor& guidance_grad) {
  const Timesteps ti(static_cast<std::size_t>(x.dim(0)), i);
  Tensor mean = q_posterior_mean_variance(s, d.pred_x0, x, ti).mean;
  if (guidance_grad.defined()) mean = add(mean, scale(guidance_grad, variance));  // mu + Sigma (s g)
  if (i == 0) return mean;
  return add(mean, scale(randn(x.shape(), gen, x.device(), x.dtype()), std::sqrt(variance)));
}

namespace {

// s g at x for original timestep t (classifier_guidance.h; it turns the tape on for itself).
Tensor scaled_guidance_gradient(const ClassifierGuidance& guidance, const Tensor& x, std::int64_t t,
                                const std::vector<std::int64_t>& targets) {
  return scale(classifier_log_prob_gradient(guidance.classifier, x, static_cast<double>(t), targets), guidance.scale);
}

}  // namespace

Tensor ddim_step(const DiffusionSchedule& s, double eta, const Tensor& x, const Denoised& d, std::int64_t i,
                 Generator& gen) {
  return ddim_step(s, eta, x, d, i, gen, -1.0);
}

Tensor ddim_step(const DiffusionSchedule& s, double eta, const Tensor& x, const Denoised& d, std::int64_t i,
                 Generator& gen, double noise_variance) {
  const Timesteps ti(static_cast<std::size_t>(x.dim(0)), i);
  // eps recomputed from the (clipped) x_0 estimate, so both terms describe the same point.
  const Tensor eps = predict_eps_from_x0(s, x, ti, d.pred_x0);
  const double abar = s.alphas_cumprod[static_cast<std::size_t>(i)];
  const double abar_prev = s.alphas_cumprod_prev[static_cast<std::size_t>(i)];  // 1 at i = 0
  const double sigma = eta * std::sqrt((1.0 - abar_prev) / (1.0 - abar)) * std::sqrt(1.0 - abar / abar_prev);
  const double dir = std::sqrt(std::max(0.0, 1.0 - abar_prev - sigma * sigma));
  Tensor next = add(scale(d.pred_x0, std::sqrt(abar_prev)), scale(eps, dir));
  // noise_variance < 0: DDIM's own sigma_i; else Analytic-DDIM's sigma*_i^2 (analytic_variance.h).
  const double noise = noise_variance < 0.0 ? sigma : std::sqrt(noise_variance);
  if (noise > 0.0) next = add(next, scale(randn(x.shape(), gen, x.device(), x.dtype()), noise));
  return next;
}

Tensor reverse_process_from(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& x_start,
                            std::int64_t i_start, const std::vector<std::int64_t>& labels,
                            const SamplerConfig& config, Generator& gen, const StepCallback& callback,
                            const ClassifierGuidance& guidance) {
  const bool classifier_guided = guidance.active();
  DDPM_CHECK(config.kind != SamplerConfig::Kind::heun,
             "reverse_process_from: the Heun sampler integrates in sigma, not on the DDPM/DDIM steps; use ddpm or "
             "ddim");
  NoGradGuard no_grad;  // no tape while sampling (classifier guidance enables it for its gradient only)
  DDPM_CHECK(x_start.defined(), "reverse_process_from: no starting point x was given");
  check_sample_request(net, x_start.shape(), labels, config);
  std::vector<std::int64_t> targets;  // classifier guidance's y per sample
  if (classifier_guided) targets = guidance_labels(guidance, labels, x_start.dim(0));
  DDPM_CHECK(config.eta >= 0.0, "sample: eta must be >= 0, got " << config.eta);
  check_corrector(config);

  // The process we step through: the base schedule, or the respaced one with its map.
  const RespacedSchedule rs = sampling_process(base, config.respacing);
  const DiffusionSchedule& s = rs.schedule;
  const std::int64_t K = s.num_timesteps();
  DDPM_CHECK(i_start >= 0 && i_start < K,
             "reverse_process_from: start index " << i_start << " is outside the process's " << K << " steps");
  const VarianceType variance = resolve_variance(config, K < base.num_timesteps());
  check_mean_type_for_schedule(s, config.mean_type, "sample");
  // Analytic-DPM: the noise variance of every index, from Gamma (empty for other variances).
  const std::vector<double> analytic = analytic_step_variances(base, rs, config);

  Tensor x = x_start;
  for (std::int64_t i = i_start; i >= 0; --i) {
    const std::int64_t t_orig = rs.timestep_map[static_cast<std::size_t>(i)];
    // Classifier guidance at this level: on, and its sigma_t inside the guidance interval
    // (guidance.h; the level denoise() judges classifier-free guidance by).
    const bool classifier_here =
        classifier_guidance_applies(config, guidance, sigma_of_alpha_bar(s.alphas_cumprod[static_cast<std::size_t>(i)]));
    // Predictor-corrector (langevin.h): Langevin steps at this level, then the predictor.
    if (config.corrector_steps > 0) {
      ScoreTerm classifier_score;
      if (classifier_here)
        classifier_score = [&](const Tensor& y) { return scaled_guidance_gradient(guidance, y, t_orig, targets); };
      x = langevin_correct(rs, net, config, x, i, labels, gen, classifier_score);
    }
    Denoised d = denoise(rs, net, config, x, i, labels);
    // s g, g = grad_x log p(y | x_t, t) at the ORIGINAL timestep (undefined when unguided
    // at this level).
    const Tensor guidance_grad = classifier_here ? scaled_guidance_gradient(guidance, x, t_orig, targets) : Tensor();

    if (config.kind == SamplerConfig::Kind::ddpm) {
      x = variance == VarianceType::analytic
              ? ddpm_step_with_variance(s, analytic[static_cast<std::size_t>(i)], x, d, i, gen, guidance_grad)
              : ddpm_ancestral_step(s, variance, x, d, i, gen, guidance_grad);
    } else {
      // Not at alpha_bar = 0 (zero terminal SNR): x_0^ from the shifted eps would divide by 0 (sampler.h).
      if (guidance_grad.defined() && s.alphas_cumprod[static_cast<std::size_t>(i)] > 0.0) {
        // Classifier guidance (ADM eq. 14): eps' = eps - sqrt(1 - abar) s g, and x_0^ from
        // eps', thresholded like denoise()'s; ddim_step takes eps^ again from that x_0^.
        const Timesteps ti(static_cast<std::size_t>(x.dim(0)), i);
        const double abar = s.alphas_cumprod[static_cast<std::size_t>(i)];
        const Tensor eps = sub(predict_eps_from_x0(s, x, ti, d.pred_x0), scale(guidance_grad, std::sqrt(1.0 - abar)));
        d.pred_x0 = predict_x0_from_eps(s, x, ti, eps);
        d.pred_x0 = apply_x0_threshold(d.pred_x0, resolve_x0_threshold(config));
      }
      x = analytic.empty() ? ddim_step(s, config.eta, x, d, i, gen)
                           : ddim_step(s, config.eta, x, d, i, gen, analytic[static_cast<std::size_t>(i)]);
    }
    if (callback) callback(StepInfo{i, K, t_orig, x, d.pred_x0});
  }
  return x;
}

Tensor sample(const DiffusionSchedule& base, const DenoiseFn& net, const Shape& shape,
              const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen, Device device,
              const StepCallback& callback, const ClassifierGuidance& guidance) {
  DDPM_CHECK(!(guidance.active() && config.kind == SamplerConfig::Kind::heun),
             "sample: classifier guidance (--classifier-scale " << guidance.scale
                 << ") is not implemented for the Heun sampler (--sampler heun): the EDM sampler integrates the "
                    "probability-flow ODE in sigma and would need the gradient rescaled into its D(x; sigma) "
                    "parameterization; use --sampler ddpm or ddim");
  DDPM_CHECK(!(config.corrector_steps > 0 && config.kind == SamplerConfig::Kind::heun),
             "sample: the Langevin corrector (--corrector-steps " << config.corrector_steps
                 << ") works with --sampler ddpm or ddim; the Heun family integrates in sigma and has its own "
                    "stochastic variant (--s-churn)");
  if (config.kind == SamplerConfig::Kind::heun)
    return karras_sample(base, net, shape, labels, config, gen, device, callback);  // karras.h
  check_sample_request(net, shape, labels, config);
  const std::int64_t K = sampling_process(base, config.respacing).schedule.num_timesteps();
  const Tensor x_T = randn(shape, gen, device, config.dtype);  // x_T ~ N(0, I)
  return reverse_process_from(base, net, x_T, K - 1, labels, config, gen, callback, guidance);
}

}  // namespace ddpm::diffusion
