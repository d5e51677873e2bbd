// models/run/sample_flags.cpp: ddpm-sample's flags (add_sample_flags, note_given_flags) and
// the checks made on them before any model is opened (check_sample_options); declared in
// sample_run.h, whose top comment describes the flags and their refusals. The checks that
// need the model (make_sampler_config, the classifier's fit) stay in sample_run.cpp.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/error.h"
#include "models/diffusion/guidance.h"
#include "models/diffusion/sampler.h"
#include "models/run/autoguide_run.h"
#include "models/run/cascade_run.h"
#include "models/run/video_run.h"
#include "models/run/control_run.h"
#include "models/run/edm_options.h"
#include "models/run/sample_run.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {
bool is_nonempty_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && !fs::is_empty(p, ec);
}

// Refuses to replace an existing output unless asked; an existing empty folder is fine.
void check_out_dir(const SampleOptions& o) {
  DDPM_CHECK(!o.out.empty(), "--out is required: the folder to write the samples to");
  std::error_code ec;
  const fs::path out(o.out);
  DDPM_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), "--out " << o.out << " exists and is not a folder");
  DDPM_CHECK(o.overwrite || !is_nonempty_dir(out),
             "--out " << o.out << " exists and is not empty; pass --overwrite to replace it");
}

// Whether a Heun-only flag was asked for: given to the parser (note_given_flags), or set to
// something other than its default (library callers fill SampleOptions directly).
bool heun_flag_requested(const SampleOptions& o, const char* flag, double value, double unset) {
  return value != unset ||
         std::find(o.heun_flags_given.begin(), o.heun_flags_given.end(), flag) != o.heun_flags_given.end();
}

// --sigma-max, --sigma-min and --rho on their own (the model's range is checked in
// make_sampler_config): Heun only, finite, 0 or positive (rho positive), ordered when both given.
void check_heun_level_flags(const SampleOptions& o) {
  const SampleOptions defaults;
  const struct {
    const char* flag;
    double value, unset;
  } levels[] = {{"--sigma-max", o.sigma_max, defaults.sigma_max},
                {"--sigma-min", o.sigma_min, defaults.sigma_min},
                {"--rho", o.rho, defaults.rho}};
  for (const auto& l : levels)
    DDPM_CHECK(!heun_flag_requested(o, l.flag, l.value, l.unset) || is_karras_sampler(o.sampler),
               l.flag << " applies to --sampler heun, euler, dpm++2m, euler-ancestral, unipc or dpm++2m-sde only (it "
                         "sets the Karras noise levels); got --sampler "
                      << o.sampler);
  for (const auto& l : levels)
    DDPM_CHECK(std::isfinite(l.value), l.flag << " must be a finite number, got " << l.value);
  DDPM_CHECK(o.sigma_max >= 0, "--sigma-max must be positive (or 0 for the schedule's largest sigma), got "
                                   << o.sigma_max);
  DDPM_CHECK(o.sigma_min >= 0, "--sigma-min must be positive (or 0 for the schedule's smallest sigma), got "
                                   << o.sigma_min);
  DDPM_CHECK(o.rho > 0, "--rho must be positive, got " << o.rho);
  DDPM_CHECK(o.sigma_min == 0 || o.sigma_max == 0 || o.sigma_min < o.sigma_max,
             "--sigma-min " << o.sigma_min << " must be below --sigma-max " << o.sigma_max);
}

// --s-churn, --s-tmin, --s-tmax and --s-noise (karras.h check_churn_settings, in flag names):
// Heun only, S_churn >= 0, S_noise > 0, 0 <= S_tmin <= S_tmax (S_tmax may be inf).
void check_churn_flags(const SampleOptions& o) {
  const SampleOptions defaults;
  const struct {
    const char* flag;
    double value, unset;
  } churn[] = {{"--s-churn", o.s_churn, defaults.s_churn},
               {"--s-tmin", o.s_tmin, defaults.s_tmin},
               {"--s-tmax", o.s_tmax, defaults.s_tmax},
               {"--s-noise", o.s_noise, defaults.s_noise}};
  for (const auto& c : churn)
    DDPM_CHECK(!heun_flag_requested(o, c.flag, c.value, c.unset) || o.sampler == "heun" || o.sampler == "euler",
               c.flag << " applies to --sampler heun or euler only (it sets EDM's stochastic churn; dpm++2m and "
                         "unipc are multistep and deterministic, euler-ancestral and dpm++2m-sde draw their own "
                         "noise); got --sampler "
                      << o.sampler);
  DDPM_CHECK(std::isfinite(o.s_churn) && o.s_churn >= 0,
             "--s-churn must be a finite number >= 0 (0 = deterministic), got " << o.s_churn);
  DDPM_CHECK(std::isfinite(o.s_noise) && o.s_noise > 0, "--s-noise must be a finite number > 0, got " << o.s_noise);
  DDPM_CHECK(std::isfinite(o.s_tmin) && o.s_tmin >= 0, "--s-tmin must be a finite number >= 0, got " << o.s_tmin);
  DDPM_CHECK(!std::isnan(o.s_tmax) && o.s_tmin <= o.s_tmax,
             "--s-tmin " << o.s_tmin << " must not exceed --s-tmax " << o.s_tmax
                         << ": no noise level would be churned");
}

// --dynamic-threshold P and --threshold-max S (x0_threshold.h): P in (0, 1] (0 = off), S >= 1
// and only with P; neither with --clip-x0 false, which asks for no clip of x_0 at all.
void check_threshold_flags(const SampleOptions& o) {
  DDPM_CHECK(o.dynamic_threshold == 0 || (o.dynamic_threshold > 0 && o.dynamic_threshold <= 1),
             "--dynamic-threshold must be a percentile P in (0, 1] (Imagen uses 0.995; 0 = off), got "
                 << o.dynamic_threshold);
  DDPM_CHECK(o.threshold_max >= 1, "--threshold-max must be >= 1 (s is never below 1; inf = no cap), got "
                                       << o.threshold_max);
  DDPM_CHECK(o.threshold_max == SampleOptions{}.threshold_max || o.dynamic_threshold > 0,
             "--threshold-max " << o.threshold_max << " caps dynamic thresholding's s; it needs --dynamic-threshold P");
  DDPM_CHECK(o.dynamic_threshold == 0 || o.clip_x0 != "false",
             "--dynamic-threshold " << o.dynamic_threshold
                                    << " replaces the static clamp of x_0, and --clip-x0 false asks for no clip at "
                                       "all; drop one of them");
}

// --classifier / --classifier-scale on their own (the classifier's fit to the model is
// checked in run_sample, once both are loaded).
void check_classifier_flags(const SampleOptions& o, bool inpainting) {
  const double default_scale = SampleOptions{}.classifier_scale;
  const bool guided = !o.classifier.empty() || o.classifier_scale != default_scale;
  DDPM_CHECK(!guided || o.sampler != "plms",
             "--classifier-scale (classifier guidance) is not implemented for --sampler plms: its multistep "
             "combination would mix gradients of different steps; use ddpm or ddim");
  DDPM_CHECK(!guided || !is_karras_sampler(o.sampler),
             "--classifier-scale (classifier guidance) is not implemented for --sampler " << o.sampler
                 << ": it integrates an ODE in sigma, not the DDPM/DDIM steps the guidance equations shift; use ddpm "
                    "or ddim");
  DDPM_CHECK(std::isfinite(o.classifier_scale) && o.classifier_scale > 0,
             "--classifier-scale must be positive, got " << o.classifier_scale);
  DDPM_CHECK(!o.classifier.empty() || o.classifier_scale == default_scale,
             "--classifier-scale " << o.classifier_scale << " needs --classifier DIR (a ddpm-classifier folder)");
  DDPM_CHECK(o.classifier.empty() || !inpainting, "--classifier does not combine with --inpaint (RePaint)");
}

}  // namespace

void add_sample_flags(CLI::App& app, SampleOptions& o) {
  app.add_option("--checkpoint", o.checkpoint,
                 "run folder (latest checkpoint), checkpoint folder, model .safetensors with config.json beside "
                 "it, or a diffusers UNet2DModel folder")
      ->required();
  app.add_flag_callback("--no-ema", [&o] { o.use_ema = false; }, "use the raw weights instead of the EMA weights (run/checkpoint folders)");
  app.add_option("--num-samples", o.num_samples, "number of samples")->capture_default_str();
  app.add_option("--batch-size", o.batch_size, "samples per network batch")->capture_default_str();
  app.add_option("--sampler", o.sampler,
                 "ddpm (ancestral), ddim, heun (Karras et al. 2022: 2nd-order ODE solver, deterministic unless "
                 "--s-churn, 2N - 1 network calls for N steps, no x_0 clipping), euler (1st order, N calls) or "
                 "dpm++2m (DPM-Solver++(2M), Lu et al. 2022: 2nd-order multistep, N calls, deterministic) or "
                 "euler-ancestral (DDPM's posterior step, N calls, stochastic) or unipc (UniPC, Zhao et al. 2023: "
                 "2nd-order multistep predictor plus a free corrector, N calls, deterministic) or dpm++2m-sde "
                 "(DPM-Solver++(2M) SDE: 2nd-order multistep with fresh noise each step, N calls, stochastic), "
                 "those six on the Karras noise levels; or plms (pseudo linear multistep, Liu et al. 2022: 4th-order Adams-Bashforth on DDIM's "
                 "steps, N calls, deterministic); or consistency (a ddpm-distill --method consistency folder or a "
                 "ddpm-train --objective ict run only, the default for both: CM's multistep sampling, K calls)")
      ->check(CLI::IsMember({"ddpm", "ddim", "heun", "euler", "dpm++2m", "euler-ancestral", "unipc", "dpm++2m-sde",
                             "plms", "consistency"}))
      ->capture_default_str();
  app.add_option("--sampling-steps", o.sampling_steps,
                 "steps of the reverse process; 0 = all training steps (DDPM: any count up to T; DDIM and plms: must divide "
                 "T; heun: N noise levels, 0 = 18; consistency: K of the model's levels, 0 = 1)")
      ->capture_default_str();
  app.add_option("--consistency-sigmas", o.consistency_sigmas,
                 "an --objective ict run only: the levels S1,S2,... of its multistep sampler, strictly descending in "
                 "(0.002, 80] (default: 80 for one step, 80,0.821 for two, Karras-spaced for more)");
  app.add_option("--eta", o.eta, "DDIM noise: 0 deterministic, 1 like DDPM")->capture_default_str();
  app.add_option("--corrector-steps", o.corrector_steps,
                 "ddpm/ddim: Langevin corrector steps per level (predictor-corrector sampling, Song et al. 2021); "
                 "each costs one network call")
      ->capture_default_str();
  app.add_option("--snr", o.snr, "the Langevin corrector's target signal-to-noise ratio")->capture_default_str();
  app.add_option("--sigma-max", o.sigma_max,
                 "heun: the largest noise level, where sampling starts; 0 = the schedule's largest training sigma "
                 "(T = 1000: about 157 linear, 2e4 cosine; EDM uses 80); must lie in the model's training range")
      ->capture_default_str();
  app.add_option("--sigma-min", o.sigma_min,
                 "heun: the smallest nonzero noise level, the last before sigma = 0; 0 = the schedule's smallest "
                 "training sigma (T = 1000: about 0.01 linear, 0.0064 cosine); must lie in the model's training range")
      ->capture_default_str();
  app.add_option("--rho", o.rho,
                 "heun: spacing exponent of the noise levels (EDM eq. 5): 1 spaces them evenly in sigma, larger "
                 "values crowd them near sigma-min")
      ->capture_default_str();
  app.add_option("--s-churn", o.s_churn,
                 "heun: EDM's stochastic churn S_churn (algorithm 2): each level in [s-tmin, s-tmax] gets its noise "
                 "raised by the factor 1 + min(S_churn / N, sqrt(2) - 1) before the step; 0 = deterministic "
                 "(EDM ImageNet-64: 80)")
      ->capture_default_str();
  app.add_option("--s-tmin", o.s_tmin, "heun: the smallest noise level that is churned (EDM ImageNet-64: 0.05)")
      ->capture_default_str();
  app.add_option("--s-tmax", o.s_tmax,
                 "heun: the largest noise level that is churned; inf = no bound (EDM ImageNet-64: 50)")
      ->capture_default_str();
  app.add_option("--s-noise", o.s_noise,
                 "heun: scale of the churn noise; slightly above 1 offsets the denoiser's removing a little too "
                 "much (EDM ImageNet-64: 1.003)")
      ->capture_default_str();
  app.add_option("--solver-order", o.solver_order,
                 "unipc: order of the multistep predictor and corrector, 1 | 2 | 3 (the first and last steps "
                 "use lower orders, as diffusers does)")
      ->capture_default_str();
  app.add_option("--clip-x0", o.clip_x0,
                 "clamp each step's x_0 estimate to [-1, 1]: true | false (EDM's Heun does not clamp; a well-trained "
                 "model does not need it, an undertrained one does) | auto (the library's default: false for heun)")
      ->check(CLI::IsMember({"auto", "true", "false"}))
      ->capture_default_str();
  app.add_option("--dynamic-threshold", o.dynamic_threshold,
                 "Imagen's dynamic thresholding (Saharia et al. 2022 sec. 2.3) instead of the [-1, 1] clamp: per "
                 "sample, s = max(1, the P-th percentile of |x_0|), x_0 clipped to [-s, s] and divided by s; P in "
                 "(0, 1], Imagen uses 0.995; keeps strongly guided samples from saturating; 0 = off")
      ->capture_default_str();
  app.add_option("--threshold-max", o.threshold_max,
                 "with --dynamic-threshold: the largest s, S >= 1 (diffusers' sample_max_value; 1 = the static "
                 "clamp); default inf, no cap");
  app.add_option("--variance", o.variance,
                 "DDPM variance: auto (learned if the model learned sigma, else fixed_small), fixed_small, "
                 "fixed_large (not with fewer steps), learned_range, analytic (Analytic-DPM, Bao et al. 2022: "
                 "the likelihood-optimal variance from --analytic-gamma; also with --sampler ddim, any --eta)")
      ->check(CLI::IsMember({"auto", "fixed_small", "fixed_large", "learned_range", "analytic"}))
      ->capture_default_str();
  app.add_option("--analytic-gamma", o.analytic_gamma,
                 "--variance analytic: the Gamma file of ddpm-eval analytic-gamma for this model, covering the "
                 "sampling trajectory's timesteps (all T, or --timesteps with the respacing --sampling-steps makes)")
      ->type_name("FILE");
  app.add_option("--class", o.class_label,
                 "class of every sample (class-conditional models; default: classes 0, 1, ... in turn)");
  app.add_option("--prompt", o.prompts,
                 "text of the samples (text-conditioned models, ddpm-train --text-cond; repeat for several: sample "
                 "i gets prompt i mod P); every word must fit the model's context length");
  app.add_option("--negative-prompt", o.negative_prompt,
                 "text-conditioned models with --guidance-scale != 1: the prompt guidance steers away from "
                 "(default: the empty caption)");
  app.add_option("--guidance-scale", o.guidance_scale,
                 "classifier-free guidance scale s (class-conditional models): 1 = none, 0 = unconditional; a "
                 "guidance-distilled model (ddpm-distill --guided) takes w = s - 1 as an input, s in its trained range")
      ->capture_default_str();
  app.add_option("--guidance-rescale", o.guidance_rescale,
                 "guidance rescale phi in [0, 1] (Lin et al. 2024; diffusers' guidance_rescale): pull the guided "
                 "prediction back to the conditional one's std; needs --guidance-scale != 1; 0 = off")
      ->capture_default_str();
  app.add_option("--guidance-interval", o.guidance_interval,
                 "LO,HI: apply the guidance (classifier-free, --autoguide or --classifier) only at noise levels "
                 "sigma in [LO, HI] (Kynkaanniemi et al. 2024; "
                 "sigma = sqrt((1 - alpha_bar) / alpha_bar), EDM's sigma for EDM runs), one network call per "
                 "evaluation elsewhere; default: every step");
  app.add_option("--autoguide", o.autoguide,
                 "autoguidance (Karras et al. 2024): guide with this weaker model of the same task (run folder or "
                 "checkpoint, e.g. an earlier checkpoint of the run): pred = guide + s (model - guide) with s = "
                 "--guidance-scale; works for unconditional models; a latent model needs a guide on the same autoencoder");
  app.add_option("--out", o.out, "output folder: grid.png, images/, samples.npz, sample_info.json")->required();
  app.add_flag("--overwrite", o.overwrite, "replace an existing non-empty --out folder");
  app.add_flag("--show-steps", o.show_steps, "also write steps.png: the reverse process of the first samples");
  app.add_option("--inpaint", o.inpaint_image,
                 "inpaint this PNG (the model's size and channels) with RePaint; needs --mask; writes "
                 "OUT/inpaint_input.png too");
  app.add_option("--mask", o.inpaint_mask,
                 "PNG of the same size: white (>= 128) = keep the pixel, black = generate it");
  app.add_option("--jump-length", o.jump_length, "RePaint resampling: steps gone back up per jump")
      ->capture_default_str();
  app.add_option("--jump-n-sample", o.jump_n_sample,
                 "RePaint resampling: passes over each jumped stretch (1 = no resampling; cost grows about "
                 "linearly with it)")
      ->capture_default_str();
  app.add_option("--classifier", o.classifier,
                 "classifier guidance (Dhariwal & Nichol 2021) with this ddpm-classifier train folder; its image "
                 "size, channels, T and schedule (and classes, for a class-conditional model) must match the model");
  app.add_option("--classifier-scale", o.classifier_scale,
                 "classifier guidance scale s > 0 (with --classifier): the mean moves by s Sigma grad log p(y|x_t)")
      ->capture_default_str();
  app.add_option("--low-res", o.low_res,
                 "super-resolution models: the low-res images to upsample, a samples.npz (arr_0 uint8 [N, L, L, C], "
                 "arr_1 labels optional: a base model's output) or one L x L PNG; N defaults to all of them");
  app.add_option("--low-res-noise-level", o.low_res_noise_level,
                 "super-resolution models trained with --cond-augment MAX: noise the low-res condition at this "
                 "fraction of the diffusion steps, in [0, MAX] (conditioning augmentation)")
      ->capture_default_str();
  app.add_option("--low-res-blur", o.low_res_blur,
                 "with --low-res: blur each low-res image with a Gaussian of this sigma (low-res pixels) before the "
                 "upsample, as ddpm-train --blur-augment does to its conditions (0 = off)")
      ->capture_default_str();
  app.add_option("--control", o.control, "a ddpm-control run: steer the model with its ControlNet (its base must be "
                                         "this model); needs --control-image or --control-from");
  app.add_option("--control-image", o.control_image, "--control: one PNG of the model's size; its hint conditions every sample");
  app.add_option("--control-from", o.control_from,
                 "--control: images whose hints condition the samples in turn: a samples.npz (arr_0 uint8, arr_1 labels "
                 "optional) or a data spec (--data's forms); a class-conditional model gets their labels unless --class; "
                 "N defaults to their count");
  app.add_option("--control-scale", o.control_scale, "--control: multiplier of the ControlNet's residuals (0 = the base alone)")
      ->capture_default_str();
  add_cascade_flags(app, o);  // --low-res-from, --base-* (cascade_run.h)
  add_video_flags(app, o);    // --first-frame, --first-frame-from (video_run.h)
  app.add_option("--decoder", o.decoder,
                 "latent video runs: decode the clips with this temporal decoder (ddpm-autoencoder finetune-temporal "
                 "--from the run's autoencoder; its --frames must be the clip length)");
}

void note_given_flags(const CLI::App& app, SampleOptions& o) {
  o.heun_flags_given.clear();
  for (const char* flag : {"--sigma-max", "--sigma-min", "--rho", "--s-churn", "--s-tmin", "--s-tmax", "--s-noise"})
    if (app.count(flag) > 0) o.heun_flags_given.push_back(flag);
  o.clip_x0_given = app.count("--clip-x0") > 0;
  o.sampler_defaulted = app.count("--sampler") == 0;
  o.num_samples_given = app.count("--num-samples") > 0;
}

void check_sample_options(const SampleOptions& o) {
  DDPM_CHECK(!o.checkpoint.empty(), "--checkpoint is required");
  DDPM_CHECK(o.decoder.empty() || o.low_res_from.empty(),
             "--decoder does not apply with --low-res-from: it decodes the clips of a latent video run");
  DDPM_CHECK(o.num_samples > 0, "--num-samples must be positive, got " << o.num_samples);
  DDPM_CHECK(o.batch_size > 0, "--batch-size must be positive, got " << o.batch_size);
  DDPM_CHECK(o.sampling_steps >= 0, "--sampling-steps must be positive (or 0 for all steps), got " << o.sampling_steps);
  DDPM_CHECK(o.solver_order == SampleOptions{}.solver_order || o.sampler == "unipc",
             "--solver-order applies to --sampler unipc only (the order of its multistep predictor and "
             "corrector); got --sampler "
                 << o.sampler);
  DDPM_CHECK(o.solver_order >= 1 && o.solver_order <= 3, "--solver-order must be 1, 2 or 3, got " << o.solver_order);
  if (!is_karras_sampler(o.sampler) && o.sampler != "plms" && o.sampler != "consistency")
    diffusion::parse_sampler_kind(o.sampler);
  // --guidance-scale is checked against the model (make_sampler_config): a guided consistency
  // student (ddpm-distill --method consistency --guided) takes it as its w input.
  DDPM_CHECK(o.sampler != "consistency" || (o.classifier.empty() && o.autoguide.empty() && o.control.empty()),
             "--sampler consistency does not combine with --classifier, --autoguide or --control: a consistency "
             "model's f(z, t) is not a denoiser of the teacher's process that guidance could shift");
  DDPM_CHECK(o.eta >= 0, "--eta must be >= 0, got " << o.eta);
  DDPM_CHECK(o.eta == 0 || o.sampler == "ddim", "--eta applies to --sampler ddim only");
  DDPM_CHECK(o.class_label >= -1, "--class must be a class index >= 0, got " << o.class_label);
  DDPM_CHECK(std::isfinite(o.guidance_scale) && o.guidance_scale >= 0,
             "--guidance-scale must be >= 0, got " << o.guidance_scale);
  DDPM_CHECK(std::isfinite(o.guidance_rescale) && o.guidance_rescale >= 0 && o.guidance_rescale <= 1,
             "--guidance-rescale must lie in [0, 1] (0 = off), got " << o.guidance_rescale);
  DDPM_CHECK(o.guidance_rescale == 0 || o.guidance_scale != 1,
             "--guidance-rescale " << o.guidance_rescale << " rescales classifier-free guidance; it needs "
                                   << "--guidance-scale != 1");
  if (!o.guidance_interval.empty()) {
    diffusion::parse_guidance_interval(o.guidance_interval, "--guidance-interval");
    DDPM_CHECK(o.guidance_scale != 1 || !o.classifier.empty(),
               "--guidance-interval " << o.guidance_interval
                                      << " limits guidance to a range of noise levels; it needs --guidance-scale != 1 "
                                         "or --classifier");
  }
  check_autoguide_flags(o);  // autoguide_run.h
  DDPM_CHECK(o.variance == "auto" || o.sampler == "ddpm" || (o.variance == "analytic" && o.sampler == "ddim"),
             "--variance " << o.variance << " applies to --sampler ddpm only (analytic: ddpm or ddim)");
  DDPM_CHECK((o.variance == "analytic") == !o.analytic_gamma.empty(),
             (o.analytic_gamma.empty() ? "--variance analytic needs --analytic-gamma FILE (ddpm-eval analytic-gamma)"
                                       : "--analytic-gamma is used with --variance analytic only"));
  DDPM_CHECK(o.corrector_steps >= 0, "--corrector-steps must be >= 0, got " << o.corrector_steps);
  DDPM_CHECK(o.corrector_steps == 0 || o.sampler == "ddpm" || o.sampler == "ddim",
             "--corrector-steps applies to --sampler ddpm or ddim (the Langevin corrector needs the discrete "
             "levels); for heun use --s-churn");
  DDPM_CHECK(std::isfinite(o.snr) && o.snr > 0, "--snr must be a positive number, got " << o.snr);
  DDPM_CHECK(o.snr == SampleOptions{}.snr || o.corrector_steps > 0, "--snr applies with --corrector-steps only");
  check_threshold_flags(o);
  check_heun_level_flags(o);
  check_churn_flags(o);
  const bool inpainting = !o.inpaint_image.empty() || !o.inpaint_mask.empty();
  DDPM_CHECK(!o.inpaint_mask.empty() || !inpainting,
             "--inpaint " << o.inpaint_image << " needs --mask: a PNG, white = keep");
  DDPM_CHECK(!o.inpaint_image.empty() || !inpainting, "--mask " << o.inpaint_mask << " needs --inpaint IMAGE");
  const SampleOptions defaults;
  DDPM_CHECK(inpainting || (o.jump_length == defaults.jump_length && o.jump_n_sample == defaults.jump_n_sample),
             "--jump-length and --jump-n-sample apply to --inpaint only");
  DDPM_CHECK(o.jump_length >= 1, "--jump-length must be >= 1, got " << o.jump_length);
  DDPM_CHECK(o.jump_n_sample >= 1, "--jump-n-sample must be >= 1 (1 = no resampling), got " << o.jump_n_sample);
  DDPM_CHECK(!inpainting || o.sampler == "ddpm",
             "--inpaint needs --sampler ddpm: RePaint is built on DDPM ancestral steps");
  DDPM_CHECK(!inpainting || o.variance != "analytic",
             "--variance analytic is not implemented for --inpaint (RePaint); use fixed_small");
  DDPM_CHECK(!inpainting || o.corrector_steps == 0,
             "--corrector-steps does not apply to --inpaint: RePaint's resampling is its own correction");
  DDPM_CHECK(std::isfinite(o.low_res_blur) && o.low_res_blur >= 0,
             "--low-res-blur must be a blur sigma >= 0 in low-res pixels (0 = off), got " << o.low_res_blur);
  DDPM_CHECK(o.low_res_blur == 0 || !o.low_res.empty() || !o.low_res_from.empty(),
             "--low-res-blur " << o.low_res_blur << " blurs the low-res images of a super-resolution model; it needs "
                                                    "--low-res SAMPLES.npz|IMAGE.png or --low-res-from BASE");
  check_cascade_flags(o);  // cascade_run.h
  check_video_flags(o);    // video_run.h
  check_classifier_flags(o, inpainting);
  check_control_flags(o);  // control_run.h
  check_out_dir(o);
}

}  // namespace ddpm::run
