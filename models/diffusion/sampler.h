// models/diffusion/sampler.h: drawing samples from a trained denoiser (DDPM ancestral, DDIM,
// and the deterministic Heun sampler of Karras et al. 2022, whose math is in karras.h).
//
// Owns the reverse process loop: x_T ~ N(0, I) from the Philox generator, then one network
// call per (respaced) step, from the last kept timestep down to the first. Everything runs
// inside a NoGradGuard. The network is any DenoiseFn (gaussian_diffusion.h); it is always
// called with ORIGINAL timesteps, also when respaced (improved DDPM sec. 4).
//
// One step at respaced index i (original timestep t_i, alpha_bar = abar_i of the respaced
// schedule, which equals the original alpha_bar(t_i); abar_prev = abar_{i-1}, 1 at i = 0):
//   x_0^ = the network's x_0 estimate (from eps, x_0 or v), clamped to [-1, 1] when clip_x0,
//          or dynamically thresholded (x0_threshold.h) when dynamic_threshold > 0
//   DDPM: x_{i-1} = mu~_i(x_0^, x_i) + sigma_i z   (DDPM eq. 6-7 with x_0 = x_0^), z ~ N(0, I),
//         sigma_i^2 = beta~_i (fixed small), beta_i (fixed large) or learned (improved DDPM
//         eq. 15); no noise at i = 0.
//   DDIM (Song et al. 2021, eq. 12 and 16), eps^ recomputed from the clipped x_0^:
//         sigma_i = eta sqrt((1 - abar_prev)/(1 - abar)) sqrt(1 - abar/abar_prev)
//         x_{i-1} = sqrt(abar_prev) x_0^ + sqrt(1 - abar_prev - sigma_i^2) eps^ + sigma_i z
//         At i = 0, abar_prev = 1 and sigma = 0: the last step returns x_0^ exactly.
//         eta = 1 gives sigma_i^2 = beta~_i: the DDPM step with fixed-small variance.
//   Analytic-DPM (variance analytic, analytic_variance.h; needs config.analytic_gamma): the
//         same means (DDPM's posterior mean; DDIM's with lambda_i = its sigma_i above), and the
//         noise added is the likelihood-optimal sigma*_i of Bao et al. 2022, Theorem 1, clipped
//         to Theorem 2's bounds and, at i = 1, to a couple of 8-bit bins (the official rule);
//         no noise at i = 0. With DDIM this adds noise also at eta = 0 (lambda = 0, the paper's
//         Analytic-DDIM): x_{i-1} = sqrt(abar_prev) x_0^ + sqrt(1 - abar_prev - lambda_i^2) eps^
//         + sigma*_i z. The table is computed once per run from Gamma at the kept timesteps.
//
// Classifier-free guidance (Ho & Salimans 2022; formed in guidance.h, with its guidance
// interval and autoguidance variant): with guidance_scale s != 1, the network
// sees ONE doubled batch [x; x] with labels [y; null] (null = num_classes) and the mean part
// is guided: pred = pred_u + s (pred_c - pred_u). For eps this is the paper's
// eps = eps_u + s (eps_c - eps_u); x_0 and v are affine in eps at fixed x_t, so guiding them
// is the same guidance. The learned variance, if any, comes from the conditional half.
// s = 1 is plain conditional sampling (one batch); s = 0 is unconditional.
//
// Guidance rescale (Lin et al. 2024, sec. 3.4, eq. 15-17; diffusers' rescale_noise_cfg):
// strong guidance inflates the prediction's spread (over-exposed images). With phi =
// guidance_rescale > 0 the guided pred_cfg is pulled back to the conditional branch's
// per-sample standard deviation (over all non-batch axes):
//   pred_rescaled = pred_cfg std(pred_c) / std(pred_cfg),
//   pred = phi pred_rescaled + (1 - phi) pred_cfg.
// It acts on the network's own output space (eps, x_0 or v, whatever config.mean_type is),
// like the diffusers pipelines, which apply it to the raw model output (v for the paper's
// v-prediction SD 2.1 model, whose Algorithm 2 also works on the model's v output). The
// rescale is not affine in pred, so unlike the guidance itself the space matters; choosing
// the output space keeps parity with diffusers for the same model. phi = 0 (the default) is
// the plain guided prediction bit for bit; phi != 0 needs guidance_scale != 1.
//
// Zero terminal SNR (schedule.h rescale_zero_terminal_snr): at the first step, alpha_bar = 0,
// an x_0- or v-network gives x_0^ directly (v: x_0^ = -v) and every DDPM/DDIM coefficient is
// finite (posterior coef2 = 0, DDIM eps^ = x). An eps-network is refused (ValueError).
// Classifier guidance with DDIM shifts eps and re-derives x_0^ from it, which divides by
// sqrt(alpha_bar): at the alpha_bar = 0 step the shift is skipped (pure noise carries no
// class evidence a classifier could use), from the next step on it applies as usual.
//
// Classifier guidance (Dhariwal & Nichol 2021, classifier_guidance.h): an optional
// ClassifierGuidance argument of sample() shifts the DDPM mean by s Sigma g and the DDIM eps
// by -sqrt(1 - abar) s g, g = grad_x log p(y | x_t, t) at the original timestep; it composes
// with classifier-free guidance. Off (no classifier, or s = 0), sample() is unchanged bit for
// bit; Heun refuses it. The guidance interval (guidance.h) limits it too: the shift is made
// only at steps whose sigma_t lies in [guidance_sigma_lo, guidance_sigma_hi].
//
// Heun (Kind::heun, karras.h): sample() hands the whole loop to karras_sample; the network
// is then called at FRACTIONAL original timesteps t(sigma), and the respacing, eta and
// variance fields are not used (heun_steps, sigma_min, sigma_max, rho and the churn fields
// s_churn, s_tmin, s_tmax, s_noise are).
//
// Random numbers: x_T is drawn first, then each step that adds noise draws one tensor of
// the sample's shape (DDPM: every step but the last; DDIM: steps with sigma > 0; Heun: each
// churned level, i.e. one with sigma^_i > sigma_i in karras.h, none with s_churn = 0), in
// step order (analytic variance: every step but the last, DDPM or DDIM). The same (seed,
// offset) gives the same samples on the CPU and on CUDA.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/classifier_guidance.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/schedule.h"
#include "models/diffusion/x0_threshold.h"

namespace ddpm::diffusion {

struct AnalyticGamma;  // analytic_variance.h

struct SamplerConfig {
  enum class Kind { ddpm, ddim, heun };
  Kind kind = Kind::ddpm;
  // Kept timesteps as in respace.h: "" = all T, "250", "10,15,20", "ddim50".
  std::string respacing;
  double eta = 0.0;  // DDIM only: 0 deterministic, 1 = DDPM with fixed-small variance
  // Clamp the x_0 estimate to [-1, 1]. Unset: on for DDPM and DDIM (the cosine schedule
  // needs it), off for Heun (EDM does not clip: the ODE stays smooth). See resolve_clip_x0.
  std::optional<bool> clip_x0;
  // Imagen's dynamic thresholding of x_0 (x0_threshold.h, Saharia et al. 2022 sec. 2.3):
  // p = dynamic_threshold in (0, 1] turns it on (0 = off), S = threshold_max >= 1 caps the
  // per-sample s (inf = Imagen's rule; 1 = the static clamp). It REPLACES the static clamp
  // and applies wherever that clamp would (every sampler, Heun included: asking for it is
  // asking for a clip); clip_x0 = false turns every clip off, dynamic included (ODE paths
  // such as DDIM inversion set it on a copied config). See resolve_x0_threshold.
  double dynamic_threshold = 0.0;
  double threshold_max = std::numeric_limits<double>::infinity();
  double guidance_scale = 1.0;  // classifier-free guidance s; 1 = no guidance
  double guidance_rescale = 0.0;  // phi in [0, 1] of the guidance rescale above; 0 = off
  // Guidance interval (guidance.h, Kynkaanniemi et al. 2024): guide only while the step's
  // noise level sigma lies in [lo, hi]; elsewhere one conditional call. [0, inf] = every step.
  double guidance_sigma_lo = 0.0;
  double guidance_sigma_hi = std::numeric_limits<double>::infinity();
  // Autoguidance (guidance.h, Karras et al. 2024): a weaker network of the same task, taking
  // the place of the unconditional branch: pred = pred_guide + s (pred_main - pred_guide).
  // Empty = classifier-free guidance (or none). Works for unconditional networks too.
  DenoiseFn autoguide;
  // DDPM variance. Unset: learned_range with learned_sigma, else fixed_small. fixed_large is
  // refused with respacing (it degrades badly with fewer steps, improved DDPM sec. 4).
  // analytic (DDPM or DDIM) needs analytic_gamma, checked against the schedule; its file name
  // goes into the messages.
  std::optional<VarianceType> variance;
  std::shared_ptr<const AnalyticGamma> analytic_gamma;
  std::string analytic_gamma_file;
  // analytic: the cap of the i = 1 step's noise in 8-bit bins, E|sigma z| <= clip_bins 2/255;
  // 0 = the official default for the Gamma file's schedule (2 linear, 1 cosine).
  double analytic_clip_bins = 0.0;
  ModelMeanType mean_type = ModelMeanType::eps;
  bool learned_sigma = false;  // the network outputs 2C channels
  int num_classes = 0;         // > 0 for a class-conditional network; null label = num_classes
  DType dtype = DType::f32;    // f64 allowed on the CPU (reference runs)
  // Heun only (karras.h): N noise levels, 2N - 1 network calls. 18 is EDM's CIFAR-10 setting
  // (35 evaluations). sigma_min / sigma_max = 0: the schedule's smallest / largest discrete
  // sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t); rho spaces the levels (EDM eq. 5).
  std::int64_t heun_steps = 18;
  double sigma_min = 0.0;
  double sigma_max = 0.0;
  double rho = 7.0;
  // Heun only, EDM algorithm 2 (karras.h): each level sigma_i in [s_tmin, s_tmax] is first
  // raised to sigma_i (1 + gamma), gamma = min(s_churn / N, sqrt(2) - 1), by fresh noise
  // scaled by s_noise. s_churn = 0 (the default) is the deterministic algorithm 1, bit for
  // bit and without extra draws. EDM's ImageNet-64 ADM setting (EDM table 5): s_churn 80,
  // s_tmin 0.05, s_tmax 50, s_noise 1.003.
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
  // DDPM and DDIM only: the Langevin corrector of predictor-corrector sampling (langevin.h,
  // Song et al. 2021 algorithm 5): corrector_steps Langevin steps at each level before its
  // predictor step, with target signal-to-noise ratio snr. 0 steps (the default) is the
  // plain sampler, bit for bit and without extra draws.
  std::int64_t corrector_steps = 0;
  double snr = 0.16;
  // UniPC only (unipc.h): the order of its multistep predictor and corrector, 1, 2 or 3.
  // 2 is diffusers' default for unconditional sampling; 3 suits few steps on smooth models.
  int solver_order = 2;
};

SamplerConfig::Kind parse_sampler_kind(const std::string& name);  // "ddpm", "ddim" or "heun"
const char* sampler_kind_name(SamplerConfig::Kind kind);

// Whether this config clamps the x_0 estimate (the default depends on the kind, see above).
bool resolve_clip_x0(const SamplerConfig& config);

// The x_0 clip policy of this config (x0_threshold.h): none when clip_x0 is false (set
// explicitly); dynamic (p, S) when dynamic_threshold > 0; otherwise static when
// resolve_clip_x0, none when not (Heun's and EDM's default stays unclipped). ValueError for
// p outside (0, 1] or S < 1.
X0Threshold resolve_x0_threshold(const SamplerConfig& config);

// Reported after every step, so apps can draw the denoising chain.
struct StepInfo {
  std::int64_t index;      // respaced index i, counting down to 0
  std::int64_t num_steps;  // K, the number of steps of the (respaced) process
  std::int64_t timestep;   // the original timestep t_i the network saw
  const Tensor& x;         // x after this step (x_{i-1}; the sample after index 0)
  const Tensor& pred_x0;   // the (clipped) x_0 estimate of this step
  // Heun: the noise level sigma_i of this step (timestep is then t(sigma_i) rounded, or
  // t(sigma^_i) for a churned level, and x is given in the network's scaling
  // x / sqrt(1 + sigma_{i+1}^2), like x_t of DDPM).
  // 0 for DDPM and DDIM.
  double sigma = 0.0;
};
using StepCallback = std::function<void(const StepInfo&)>;

// The variance the DDPM sampler will use for this config (after the defaults above);
// ValueError for inconsistent choices (analytic without a Gamma estimate among them).
VarianceType resolve_variance(const SamplerConfig& config, bool respaced);

// With variance analytic: the variance of the noise added at each index of `process`
// (analytic_variance.h analytic_sampling_variances, lambda from config.kind and eta), after
// checking the Gamma estimate against `base`; empty for any other variance.
std::vector<double> analytic_step_variances(const DiffusionSchedule& base, const RespacedSchedule& process,
                                            const SamplerConfig& config);

// The checks every sampler makes before its loop: a network is given, the shape has a batch
// and a channel axis, and the labels fit: one per sample in [0, num_classes) for a
// class-conditional network, none otherwise; classifier-free guidance needs classes
// (autoguidance does not), and the guidance settings are checked (guidance.h). ValueError naming
// the problem.
void check_sample_request(const DenoiseFn& net, const Shape& shape, const std::vector<std::int64_t>& labels,
                          const SamplerConfig& config);

// One network evaluation of a sampler: the mean part (eps, x_0 or v, per config.mean_type)
// and, with learned sigma, the variance part of net(x, t) for the whole batch at ONE
// original timestep t (fractional for Heun). With guidance_scale != 1 the network sees the
// doubled batch [x; x] with labels [y; null] and pred = pred_u + s (pred_c - pred_u),
// rescaled when guidance_rescale > 0 (see the top of the file); the variance part is the
// conditional half's. With config.autoguide the second prediction is the guide's instead
// (two calls on [x]), and outside the guidance interval there is one plain call (guidance.h).
// Checks the output's shape and the guidance settings (ValueError).
// The guidance rescale on its own: phi pred_cfg std(pred_c) / std(pred_cfg) + (1 - phi) pred_cfg,
// std per sample over the non-batch axes. pred_cfg and pred_c: [N, ...].
Tensor rescale_guided_prediction(const Tensor& pred_cfg, const Tensor& pred_c, double phi);

struct NetOutput {
  Tensor pred;        // [shape of x]: eps, x_0 or v
  Tensor var_values;  // [shape of x] with learned sigma, else undefined
};
// sigma: the call's noise level (guidance.h), needed only when a guidance interval is set;
// NaN = not known (a ValueError then). Implemented in guidance.cpp.
NetOutput network_output(const DenoiseFn& net, const SamplerConfig& config, const Tensor& x, double t,
                         const std::vector<std::int64_t>& labels,
                         double sigma = std::numeric_limits<double>::quiet_NaN());

// Draws shape[0] samples. labels: shape[0] class indices in [0, num_classes) for a
// class-conditional network (may be empty only when num_classes == 0); guidance needs them.
// Returns the samples, [shape], on `device` in config.dtype.
// guidance: classifier guidance (classifier_guidance.h); when active() the sampler must be
// called with gradients enabled (no NoGradGuard around it), and Heun is a ValueError.
Tensor sample(const DiffusionSchedule& base, const DenoiseFn& net, const Shape& shape,
              const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen,
              Device device = Device::cpu(), const StepCallback& callback = {},
              const ClassifierGuidance& guidance = {});

// --- The pieces of one DDPM/DDIM step, shared with the other samplers (inpaint.h) --------

// The process a config steps through: the respaced schedule for config.respacing, or the
// base schedule with the identity timestep map when respacing is "".
RespacedSchedule sampling_process(const DiffusionSchedule& base, const std::string& respacing);

// One network evaluation at respaced index i of `process` (called with the original
// timestep timestep_map[i], guided when config.guidance_scale != 1): the x_0 estimate,
// thresholded by resolve_x0_threshold(config), and the variance part with learned sigma.
struct Denoised {
  Tensor pred_x0;     // [shape]
  Tensor var_values;  // [shape] with learned sigma, else undefined
};
Denoised denoise(const RespacedSchedule& process, const DenoiseFn& net, const SamplerConfig& config, const Tensor& x,
                 std::int64_t i, const std::vector<std::int64_t>& labels);

// The DDPM ancestral step from x = x_i given the network's output d at index i:
// x_{i-1} = mu~_i(x_0^, x_i) + sigma_i z, z drawn from gen (one tensor of x's shape), no
// noise (and no draw) at i = 0.
Tensor ddpm_ancestral_step(const DiffusionSchedule& s, VarianceType variance, const Tensor& x, const Denoised& d,
                           std::int64_t i, Generator& gen);
// The same step with classifier guidance (ADM Algorithm 1): the mean becomes
// mu~_i + Sigma_i guidance_grad, guidance_grad = s g [shape of x]; Sigma_i is the step's
// variance (fixed small: beta~_i, 0 at i = 0; fixed large; or learned). An undefined
// guidance_grad is the plain step.
Tensor ddpm_ancestral_step(const DiffusionSchedule& s, VarianceType variance, const Tensor& x, const Denoised& d,
                           std::int64_t i, Generator& gen, const Tensor& guidance_grad);

// The DDPM step with a given variance (Analytic-DPM's table entry): mean as above, noise
// sqrt(variance) z when i > 0 (one draw), mean + variance guidance_grad with classifier guidance.
Tensor ddpm_step_with_variance(const DiffusionSchedule& s, double variance, const Tensor& x, const Denoised& d,
                               std::int64_t i, Generator& gen, const Tensor& guidance_grad);

// The DDIM step (DDIM eq. 12) from x = x_i given the network's output d at index i: eps^
// recomputed from d.pred_x0, then
//   x_{i-1} = sqrt(abar_prev) x_0^ + sqrt(1 - abar_prev - sigma_i^2) eps^ + sigma_i z,
// z drawn from gen only when sigma_i = eta sqrt((1-abar_prev)/(1-abar)) sqrt(1-abar/abar_prev) > 0.
Tensor ddim_step(const DiffusionSchedule& s, double eta, const Tensor& x, const Denoised& d, std::int64_t i,
                 Generator& gen);
// The same step with its noise replaced by sqrt(noise_variance) z (Analytic-DDIM: the mean's
// lambda_i is still eta's sigma_i); a draw only when noise_variance > 0.
Tensor ddim_step(const DiffusionSchedule& s, double eta, const Tensor& x, const Denoised& d, std::int64_t i,
                 Generator& gen, double noise_variance);

// The reverse process of `config` (kind ddpm or ddim; respacing, variance, eta, clipping,
// classifier-free and classifier guidance, the Langevin corrector, all as in sample()) run
// from x = x_{i_start} of the process sampling_process(base, config.respacing) down to index
// 0: i_start + 1 predictor calls. x keeps its dtype and device. sample() is this loop from
// i_start = K - 1 after its one draw of x_T; SDEdit (sdedit.h) and DDIM decoding
// (ddim_inversion.h) start it from their own x.
Tensor reverse_process_from(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& x,
                            std::int64_t i_start, const std::vector<std::int64_t>& labels,
                            const SamplerConfig& config, Generator& gen, const StepCallback& callback = {},
                            const ClassifierGuidance& guidance = {});

}  // namespace ddpm::diffusion
