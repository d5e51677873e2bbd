// models/run/sample_run.cpp: ddpm-sample's work (see the header for the output folder).
#include "models/run/sample_run.h"

#include "models/run/edm_options.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <ostream>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "engine/rng.h"
#include "models/diffusion/guidance.h"
#include "models/diffusion/inpaint.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/plms.h"
#include "models/diffusion/respace.h"
#include "models/nn/module.h"
#include "models/run/autoguide_run.h"
#include "models/run/classifier_run.h"
#include "models/run/control_run.h"
#include "models/run/image_sets.h"
#include "models/run/latent_run.h"
#include "models/run/super_res_run.h"
#include "models/diffusion/super_res.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

constexpr int kStepSnapshots = 10;  // columns of steps.png
constexpr int kStepSamples = 4;     // samples shown in steps.png

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

// The snapshots for steps.png: step k = K-1-index (0 = first, noisiest) is kept when it is
// one of round(j (K-1) / (S-1)), j = 0..S-1, S = min(10, K).
std::vector<std::int64_t> snapshot_steps(std::int64_t K) {
  const std::int64_t S = std::min<std::int64_t>(kStepSnapshots, K);
  std::vector<std::int64_t> steps;
  for (std::int64_t j = 0; j < S; ++j)
    steps.push_back(S == 1 ? K - 1 : static_cast<std::int64_t>(std::llround(double(j) * double(K - 1) / double(S - 1))));
  return steps;
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

// Heun's (sigma_min, sigma_max) for this model, or a ValueError naming the flag at fault.
// karras.h resolve_sigma_range is the rule (0 = the schedule's end; a level outside the
// training range [sigma_0, sigma_{T-1}] is refused, with a relative slack of 1e-9 for
// printed values); when it refuses, the flags are compared with the range to say which one
// left it (an offender is then strictly outside), else the two ends are out of order.
void check_heun_levels(const SampleOptions& o, const ModelSource& model, const diffusion::SamplerConfig& sc) {
  const diffusion::DiffusionSchedule schedule(
      diffusion_betas(model.diffusion));
  try {
    diffusion::resolve_sigma_range(schedule, sc);
  } catch (const ValueError&) {
    const std::vector<double> train = diffusion::vp_sigmas(schedule);
    const double lo = train.front(), hi = train.back();
    std::ostringstream range;
    range << "the model's training range [" << lo << ", " << hi << "] (sigma_t = sqrt((1 - alpha_bar_t) / "
          << "alpha_bar_t) of its " << model.diffusion.diffusion_steps << "-step "
          << diffusion::noise_schedule_name(model.diffusion.noise_schedule)
          << " schedule): the network never saw that noise level";
    DDPM_CHECK(o.sigma_max == 0 || (o.sigma_max >= lo && o.sigma_max <= hi),
               "--sigma-max " << o.sigma_max << " lies outside " << range.str());
    DDPM_CHECK(o.sigma_min == 0 || (o.sigma_min >= lo && o.sigma_min <= hi),
               "--sigma-min " << o.sigma_min << " lies outside " << range.str());
    const double smin = o.sigma_min > 0 ? o.sigma_min : lo, smax = o.sigma_max > 0 ? o.sigma_max : hi;
    DDPM_THROW(ValueError, "--sigma-min " << smin << (o.sigma_min > 0 ? "" : " (the schedule's smallest sigma)")
                                          << " must be below --sigma-max " << smax
                                          << (o.sigma_max > 0 ? "" : " (the schedule's largest sigma)"));
  }
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

// The classifier must see what the model makes, at the timesteps the model uses.
void check_classifier_fits(const NoisyClassifierFolder& c, const SampleOptions& o, const ModelSource& model) {
  const unet::EncoderConfig& cc = c.model->config();
  const unet::UNetConfig& mc = model.net->config();
  DDPM_CHECK(cc.image_size == mc.image_size, "--classifier " << o.classifier << " takes " << cc.image_size << "x"
                                                             << cc.image_size << " images; the model makes "
                                                             << mc.image_size << "x" << mc.image_size);
  DDPM_CHECK(cc.in_channels == mc.in_channels, "--classifier " << o.classifier << " takes " << cc.in_channels
                                                               << " channel(s); the model makes " << mc.in_channels);
  DDPM_CHECK(mc.num_classes == 0 || cc.num_classes == mc.num_classes,
             "--classifier " << o.classifier << " predicts " << cc.num_classes << " classes; the model has "
                             << mc.num_classes);
  const DiffusionSettings& cd = c.diffusion;
  DDPM_CHECK(cd.diffusion_steps == model.diffusion.diffusion_steps,
             "--classifier " << o.classifier << " was trained with T = " << cd.diffusion_steps
                             << " diffusion steps; the model has T = " << model.diffusion.diffusion_steps);
  DDPM_CHECK(cd.noise_schedule == model.diffusion.noise_schedule,
             "--classifier " << o.classifier << " was trained on the "
                             << diffusion::noise_schedule_name(cd.noise_schedule)
                             << " noise schedule; the model uses the "
                             << diffusion::noise_schedule_name(model.diffusion.noise_schedule) << " schedule");
  DDPM_CHECK(cd.zero_terminal_snr == model.diffusion.zero_terminal_snr,
             "--classifier " << o.classifier << " was trained on a schedule "
                             << (cd.zero_terminal_snr ? "rescaled to" : "without") << " zero terminal SNR; the model's "
                             << (model.diffusion.zero_terminal_snr ? "is rescaled" : "is not")
                             << (model.diffusion.zero_terminal_snr
                                     ? " (train the classifier with ddpm-classifier train --zero-terminal-snr)"
                                     : ""));
  DDPM_CHECK(o.class_label < cc.num_classes, "--class " << o.class_label << " is out of range: the classifier has "
                                                        << cc.num_classes << " classes");
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
                 "steps, N calls, deterministic)")
      ->check(CLI::IsMember(
          {"ddpm", "ddim", "heun", "euler", "dpm++2m", "euler-ancestral", "unipc", "dpm++2m-sde", "plms"}))
      ->capture_default_str();
  app.add_option("--sampling-steps", o.sampling_steps,
                 "steps of the reverse process; 0 = all training steps (DDPM: any count up to T; DDIM and plms: must divide "
                 "T; heun: N noise levels, 0 = 18)")
      ->capture_default_str();
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
  app.add_option("--variance", o.variance,
                 "DDPM variance: auto (learned if the model learned sigma, else fixed_small), fixed_small, "
                 "fixed_large (not with fewer steps), learned_range")
      ->check(CLI::IsMember({"auto", "fixed_small", "fixed_large", "learned_range"}))
      ->capture_default_str();
  app.add_option("--class", o.class_label,
                 "class of every sample (class-conditional models; default: classes 0, 1, ... in turn)");
  app.add_option("--guidance-scale", o.guidance_scale,
                 "classifier-free guidance scale s (class-conditional models): 1 = none, 0 = unconditional")
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
                 "--guidance-scale; works for unconditional models");
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
  app.add_option("--control", o.control, "a ddpm-control run: steer the model with its ControlNet (its base must be "
                                         "this model); needs --control-image or --control-from");
  app.add_option("--control-image", o.control_image, "--control: one PNG of the model's size; its hint conditions every sample");
  app.add_option("--control-from", o.control_from,
                 "--control: images whose hints condition the samples in turn: a samples.npz (arr_0 uint8, arr_1 labels "
                 "optional) or a data spec (--data's forms); a class-conditional model gets their labels unless --class; "
                 "N defaults to their count");
  app.add_option("--control-scale", o.control_scale, "--control: multiplier of the ControlNet's residuals (0 = the base alone)")
      ->capture_default_str();
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
  DDPM_CHECK(o.num_samples > 0, "--num-samples must be positive, got " << o.num_samples);
  DDPM_CHECK(o.batch_size > 0, "--batch-size must be positive, got " << o.batch_size);
  DDPM_CHECK(o.sampling_steps >= 0, "--sampling-steps must be positive (or 0 for all steps), got " << o.sampling_steps);
  DDPM_CHECK(o.solver_order == SampleOptions{}.solver_order || o.sampler == "unipc",
             "--solver-order applies to --sampler unipc only (the order of its multistep predictor and "
             "corrector); got --sampler "
                 << o.sampler);
  DDPM_CHECK(o.solver_order >= 1 && o.solver_order <= 3, "--solver-order must be 1, 2 or 3, got " << o.solver_order);
  if (!is_karras_sampler(o.sampler) && o.sampler != "plms") diffusion::parse_sampler_kind(o.sampler);
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
  DDPM_CHECK(o.variance == "auto" || o.sampler == "ddpm", "--variance applies to --sampler ddpm only");
  DDPM_CHECK(o.corrector_steps >= 0, "--corrector-steps must be >= 0, got " << o.corrector_steps);
  DDPM_CHECK(o.corrector_steps == 0 || o.sampler == "ddpm" || o.sampler == "ddim",
             "--corrector-steps applies to --sampler ddpm or ddim (the Langevin corrector needs the discrete "
             "levels); for heun use --s-churn");
  DDPM_CHECK(std::isfinite(o.snr) && o.snr > 0, "--snr must be a positive number, got " << o.snr);
  DDPM_CHECK(o.snr == SampleOptions{}.snr || o.corrector_steps > 0, "--snr applies with --corrector-steps only");
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
  DDPM_CHECK(!inpainting || o.corrector_steps == 0,
             "--corrector-steps does not apply to --inpaint: RePaint's resampling is its own correction");
  check_classifier_flags(o, inpainting);
  check_control_flags(o);  // control_run.h
  check_out_dir(o);
}

diffusion::SamplerConfig make_sampler_config(const SampleOptions& o, const ModelSource& model, bool latent) {
  const unet::UNetConfig& cfg = model.net->config();
  diffusion::SamplerConfig sc;
  // euler, dpm++2m, euler-ancestral, unipc and dpm++2m-sde run in Heun's loop (karras.h karras_solve) on the same levels.
  // plms runs on DDIM's deterministic process (plms.h).
  sc.kind = diffusion::parse_sampler_kind(is_karras_sampler(o.sampler) ? "heun"
                                          : o.sampler == "plms"        ? "ddim"
                                                                       : o.sampler);
  const std::int64_t T = model.diffusion.diffusion_steps;
  if (sc.kind == diffusion::SamplerConfig::Kind::heun) {
    if (o.sampling_steps > 0) sc.heun_steps = o.sampling_steps;  // else the default, 18 (EDM's CIFAR-10 N)
    sc.sigma_min = o.sigma_min;
    sc.sigma_max = o.sigma_max;
    sc.rho = o.rho;
    sc.s_churn = o.s_churn;
    sc.s_tmin = o.s_tmin;
    sc.s_tmax = o.s_tmax;
    sc.s_noise = o.s_noise;
    sc.solver_order = o.solver_order;
    if (model.diffusion.edm)
      diffusion::resolve_edm_sigma_range(sc);  // continuous sigma: any positive ordered range
    else
      check_heun_levels(o, model, sc);
  } else if (o.sampling_steps > 0 && o.sampling_steps != T)
    sc.respacing = (sc.kind == diffusion::SamplerConfig::Kind::ddim ? "ddim" : "") + std::to_string(o.sampling_steps);
  else if (o.sampling_steps > 0 && sc.kind == diffusion::SamplerConfig::Kind::ddim)
    sc.respacing = "";  // N = T: every step
  if (!sc.respacing.empty()) {
    try {
      diffusion::space_timesteps(T, sc.respacing);
    } catch (const ValueError& e) {
      DDPM_THROW(ValueError, "--sampling-steps " << o.sampling_steps << " does not fit the model's " << T
                                                 << " training steps: " << strip_source_locations(e.what()));
    }
  }
  sc.eta = o.eta;
  sc.corrector_steps = o.corrector_steps;
  sc.snr = o.snr;
  if (o.clip_x0 != "auto") sc.clip_x0 = o.clip_x0 == "true";
  if (latent && !o.clip_x0_given) sc.clip_x0 = false;  // latents are not confined to [-1, 1]
  sc.mean_type = model.diffusion.predict;
  sc.learned_sigma = cfg.learn_sigma;
  sc.num_classes = cfg.num_classes;
  if (o.variance != "auto") sc.variance = diffusion::parse_variance_type(o.variance);
  diffusion::resolve_variance(sc, !sc.respacing.empty());  // refuses fixed_large with respacing

  const bool conditional = cfg.num_classes > 0;
  DDPM_CHECK(conditional || o.class_label < 0 || !o.classifier.empty(),  // a classifier may pick the class
             "guidance without class conditioning: --class " << o.class_label << " needs a class-conditional model, and "
                                                             << o.checkpoint << " is unconditional");
  DDPM_CHECK(conditional || o.guidance_scale == 1.0 || !o.autoguide.empty(),  // autoguidance needs no classes
             "guidance without class conditioning: --guidance-scale " << o.guidance_scale
                                                                      << " needs a class-conditional model, and "
                                                                      << o.checkpoint << " is unconditional");
  DDPM_CHECK(!conditional || o.class_label < cfg.num_classes,
             "--class " << o.class_label << " is out of range: the model has " << cfg.num_classes << " classes");
  sc.guidance_scale = o.guidance_scale;
  sc.guidance_rescale = o.guidance_rescale;
  if (!o.guidance_interval.empty())
    std::tie(sc.guidance_sigma_lo, sc.guidance_sigma_hi) =
        diffusion::parse_guidance_interval(o.guidance_interval, "--guidance-interval");
  DDPM_CHECK(latent || cfg.in_channels == 1 || cfg.in_channels == 3,
             "ddpm-sample writes PNG images, which need 1 or 3 channels; the model has " << cfg.in_channels);
  return sc;
}

InpaintInputs load_inpaint_inputs(const std::string& image_path, const std::string& mask_path, int H, int W, int C) {
  const Image image = read_png(image_path);  // IoError when missing or damaged
  const Image mask = read_png(mask_path);
  DDPM_CHECK(image.height == H && image.width == W && image.channels == C,
             "--inpaint " << image_path << " is " << image.height << "x" << image.width << " with " << image.channels
                          << " channel(s); the model makes " << H << "x" << W << " images with " << C
                          << " channel(s)");
  DDPM_CHECK(mask.height == H && mask.width == W,
             "--mask " << mask_path << " is " << mask.height << "x" << mask.width << "; the image " << image_path
                       << " is " << H << "x" << W);
  InpaintInputs in;
  in.pixels = static_cast<std::int64_t>(H) * W;
  const std::size_t P = static_cast<std::size_t>(in.pixels);
  std::vector<double> px(P * static_cast<std::size_t>(C)), known(P);
  for (std::size_t p = 0; p < P; ++p) {
    bool white = true;
    for (int c = 0; c < mask.channels; ++c) white = white && mask.pixels[p * mask.channels + c] >= 128;
    known[p] = white ? 1.0 : 0.0;
    in.known_pixels += white ? 1 : 0;
    for (int c = 0; c < C; ++c) px[p * C + c] = image.pixels[p * C + c] / 127.5 - 1.0;  // as the training data
  }
  DDPM_CHECK(in.known_pixels < in.pixels, "--mask " << mask_path << " keeps every pixel (all white): nothing to "
                                                    << "generate; black (< 128) marks the pixels to generate");
  DDPM_CHECK(in.known_pixels > 0, "--mask " << mask_path << " keeps no pixel (all black): nothing to condition on; "
                                            << "white (>= 128) marks the known pixels");
  in.image = Tensor::from_vector(px, {1, H, W, C});
  in.mask = Tensor::from_vector(known, {1, H, W, 1});

  // inpaint_input.png: image | mask | masked image (generated pixels mid-grey).
  std::vector<std::uint8_t> tiles = image.pixels;
  for (std::size_t p = 0; p < P; ++p)
    for (int c = 0; c < C; ++c) tiles.push_back(known[p] > 0 ? 255 : 0);
  for (std::size_t p = 0; p < P; ++p)
    for (int c = 0; c < C; ++c) tiles.push_back(known[p] > 0 ? image.pixels[p * C + c] : 128);
  const Image strip = make_grid(tiles.data(), 3, H, W, C, 3);
  in.strip = strip.pixels;
  in.strip_height = strip.height;
  in.strip_width = strip.width;
  return in;
}

SampleResult run_sample(const SampleOptions& o, std::ostream* log) {
  check_sample_options(o);
  ModelSource model = open_model(o.checkpoint, o.device, o.use_ema);
  if (log)
    *log << "loaded " << model.kind << " " << o.checkpoint << " (weights " << model.weights_path
         << (model.ema ? ", EMA" : "") << ", " << model.net->num_parameters() << " parameters)\n";
  std::unique_ptr<LatentCodec> latent;
  const std::string ae_dir = find_run_autoencoder(o.checkpoint);
  if (!ae_dir.empty()) {
    latent = std::make_unique<LatentCodec>(ae_dir, o.device);
    if (log) *log << "latent diffusion: decoding with " << ae_dir << " (f = " << latent->factor() << ", s = " << latent->scale() << ")\n";
  }
  try {
    return run_sample(o, model, log, latent.get());
  } catch (const OutOfMemoryError& e) {
    std::ostringstream os;
    os << e.what() << ". Try a smaller --batch-size (now " << o.batch_size << ")";
    throw OutOfMemoryError(os.str());
  }
}

SampleResult run_sample(const SampleOptions& asked, const ModelSource& model, std::ostream* log,
                        const LatentCodec* latent, const ModelSource* guide) {
  const SampleOptions o = resolve_sampler_for_model(asked, model);  // heun for an EDM model (edm_options.h)
  check_sample_options(o);
  if (latent) {
    DDPM_CHECK(o.inpaint_image.empty(), "--inpaint does not apply to " << o.checkpoint
                                                                       << ": it is a latent diffusion model, and "
                                                                          "RePaint's mask is in pixels, not latents");
    DDPM_CHECK(o.classifier.empty(), "--classifier does not apply to "
                                         << o.checkpoint
                                         << ": it is a latent diffusion model, and a ddpm-classifier folder is "
                                            "trained on noisy pixels, not latents; use --guidance-scale "
                                            "(classifier-free guidance) with a --class-cond run");
    DDPM_CHECK(latent->config().z_channels == model.net->config().in_channels,
               "the autoencoder has " << latent->config().z_channels << " latent channels; the model takes "
                                      << model.net->config().in_channels);
  }
  DDPM_CHECK(!latent || o.autoguide.empty(),
             "--autoguide does not apply to " << o.checkpoint << ": it is a latent diffusion model, and ddpm-sample "
                                                 "does not wire a second latent model to the autoencoder");
  diffusion::SamplerConfig sc = make_sampler_config(o, model, latent != nullptr);
  ModelSource opened_guide;  // --autoguide, when not given already opened
  if (!o.autoguide.empty()) {
    if (!guide) {
      opened_guide = open_model(o.autoguide, o.device, o.use_ema);
      guide = &opened_guide;
    }
    check_autoguide_fits(model, *guide, o.autoguide);
    sc.autoguide = autoguide_denoiser(*guide);
    if (log)
      *log << "autoguidance: " << o.autoguide << " (" << guide->kind << ", " << guide->net->num_parameters()
           << " parameters), scale " << o.guidance_scale << "\n";
  }
  const unet::UNetConfig& cfg = model.net->config();
  const diffusion::DiffusionSchedule base(diffusion_betas(model.diffusion));
  // The sampler's shape (latents for a latent model) and the written images' (pixels).
  const int h = cfg.image_size, zc = cfg.in_channels;
  const int f = latent ? latent->factor() : 1;
  const int H = h * f, W = h * f, C = latent ? latent->config().in_channels : cfg.in_channels;
  auto to_pixels = [latent](const Tensor& x) { return to_uint8_pixels(latent ? latent->decode(x) : x); };
  LowResInputs low;  // super-resolution: the low-res images to upsample (super_res_run.h)
  const bool super_res = load_low_res_for(o, cfg, low, base.num_timesteps(), log);
  ControlInputs control;  // --control (control_run.h)
  const bool controlled = load_control_for(o, model, control, log, latent);
  const std::int64_t N = super_res ? low_res_num_samples(o, low) : controlled ? control_num_samples(o, control) : o.num_samples;
  const bool inpainting = !o.inpaint_image.empty();
  InpaintInputs inp;
  if (inpainting) inp = load_inpaint_inputs(o.inpaint_image, o.inpaint_mask, H, W, C);
  const diffusion::RepaintConfig repaint{o.jump_length, o.jump_n_sample};
  std::int64_t network_calls = 0;  // per batch
  if (inpainting) {
    const std::int64_t K = diffusion::sampling_process(base, sc.respacing).schedule.num_timesteps();
    network_calls = diffusion::repaint_network_calls(diffusion::repaint_schedule(K, o.jump_length, o.jump_n_sample));
    if (log)
      *log << "inpainting " << o.inpaint_image << ": " << inp.known_pixels << " of " << inp.pixels
           << " pixels known; RePaint jump length " << o.jump_length << ", jump_n_sample " << o.jump_n_sample << ", "
           << network_calls << " network calls per batch (" << K << " steps)\n";
  }

  SampleResult result;
  result.shape = {N, H, W, C};
  result.out_dir = o.out;
  if (cfg.num_classes > 0)
    for (std::int64_t i = 0; i < N; ++i) result.labels.push_back(o.class_label >= 0 ? o.class_label : i % cfg.num_classes);
  const bool low_res_labels = super_res && take_low_res_labels(o, cfg, low, N, result.labels);
  if (controlled) take_control_labels(o, cfg, control, N, result.labels);  // each hint image's label (control_run.h)

  // Classifier guidance: the classifier's target labels (for an unconditional model, drawn
  // like a conditional one's, over the classifier's classes).
  NoisyClassifierFolder classifier;
  diffusion::ClassifierGuidance guidance;
  if (!o.classifier.empty()) {
    classifier = load_noisy_classifier(o.classifier, o.device);
    check_classifier_fits(classifier, o, model);
    // Frozen: guidance needs d log p / d x_t only, not the classifier's weight gradients.
    for (auto& [name, value] : classifier.model->named_parameters()) value.set_requires_grad(false);
    const int K = classifier.model->config().num_classes;
    if (cfg.num_classes == 0)
      for (std::int64_t i = 0; i < N; ++i) result.labels.push_back(o.class_label >= 0 ? o.class_label : i % K);
    const unet::NoisyClassifier& cls = *classifier.model;
    guidance.classifier = [&cls](const Tensor& x, const std::vector<double>& t) {
      return cls.forward(x, t, nn::Context{});
    };
    guidance.scale = o.classifier_scale;
    if (log)
      *log << "classifier guidance: " << o.classifier << " (" << cls.num_parameters() << " parameters, " << K
           << " classes), scale " << o.classifier_scale << "\n";
  }

  const unet::UNet& net = *model.net;
  diffusion::DenoiseFn fn = [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };

  // steps.png: snapshots of the first batch's first samples, [S][rows] images of H x W x C.
  std::vector<std::vector<std::uint8_t>> snap_xt, snap_x0;
  const std::int64_t shown = std::min<std::int64_t>(kStepSamples, std::min(N, std::int64_t(o.batch_size)));
  std::vector<std::int64_t> keep;
  diffusion::StepCallback callback;
  auto take = [&](const Tensor& t) {
    std::vector<std::uint8_t> px = to_pixels(diffusion::batch_rows(t, 0, shown));
    return px;
  };

  Generator gen(o.seed);
  result.pixels.reserve(static_cast<std::size_t>(N) * H * W * C);
  for (std::int64_t begin = 0; begin < N; begin += o.batch_size) {
    const std::int64_t n = std::min<std::int64_t>(o.batch_size, N - begin);
    std::vector<std::int64_t> labels;
    if (!result.labels.empty()) labels.assign(result.labels.begin() + begin, result.labels.begin() + begin + n);
    if (guidance.classifier) {
      guidance.labels = labels;                  // the classifier's targets
      if (cfg.num_classes == 0) labels.clear();  // an unconditional network takes none
    }
    // A super-resolution model's closure concatenates this batch's upsampled low-res rows.
    // Conditioning augmentation: noised at the fixed level, the noise drawn after x_T.
    const Tensor low_rows = super_res ? diffusion::batch_rows(low.cond, begin, n).to(o.device) : Tensor();
    const diffusion::DenoiseFn bfn =
        controlled            ? control_denoiser(net, control, begin, n)
        : !super_res          ? fn
        : cfg.cond_augmented() ? diffusion::concat_augmented_condition(fn, low_rows, low.aug_level,
                                                                       base.alphas_cumprod, gen)
                               : diffusion::concat_condition(fn, low_rows);
    callback = nullptr;
    if (o.show_steps && begin == 0) {
      callback = [&](const diffusion::StepInfo& s) {
        if (keep.empty()) keep = snapshot_steps(s.num_steps);
        const std::int64_t k = s.num_steps - 1 - s.index;
        if (std::find(keep.begin(), keep.end(), k) == keep.end()) return;
        snap_xt.push_back(take(s.x));
        snap_x0.push_back(take(s.pred_x0));
      };
    }
    Tensor x = inpainting
                   ? diffusion::inpaint(base, bfn, inp.image, inp.mask, n, labels, sc, repaint, gen, o.device, callback)
               : is_karras_sampler(o.sampler)
                   ? sample_karras(model, base, bfn, {n, h, h, zc}, labels, sc, o.sampler, gen, o.device, callback)
               : o.sampler == "plms"
                   ? diffusion::plms_sample(base, bfn, {n, h, h, zc}, labels, sc, gen, o.device, callback)
                   : diffusion::sample(base, bfn, {n, h, h, zc}, labels, sc, gen, o.device, callback, guidance);
    const std::vector<std::uint8_t> px = to_pixels(x);
    result.pixels.insert(result.pixels.end(), px.begin(), px.end());
    if (log) *log << "sampled " << begin + n << " / " << N << "\n";
  }

  // Everything is written into a temporary folder and published in one rename.
  const std::size_t image_bytes = static_cast<std::size_t>(H) * W * C;
  std::vector<std::string> files;
  auto fill = [&](const std::string& tmp) {
    const fs::path dir(tmp);
    const int nrow = static_cast<int>(std::ceil(std::sqrt(double(N))));
    write_image_set(tmp, result.pixels, N, H, W, C, nrow, result.labels, files);  // image_sets.h
    if (o.show_steps && !snap_xt.empty()) {
      // Two rows per sample (x_t, then x_0^), one column per snapshot.
      const std::size_t S = snap_xt.size();
      std::vector<std::uint8_t> tiles;
      for (std::int64_t r = 0; r < shown; ++r)
        for (const auto* rows : {&snap_xt, &snap_x0})
          for (std::size_t j = 0; j < S; ++j) {
            const std::uint8_t* p = (*rows)[j].data() + static_cast<std::size_t>(r) * image_bytes;
            tiles.insert(tiles.end(), p, p + image_bytes);
          }
      write_png((dir / "steps.png").string(),
                make_grid(tiles.data(), static_cast<int>(2 * shown * S), H, W, C, static_cast<int>(S)));
      files.push_back("steps.png");
    }
    const bool heun = sc.kind == diffusion::SamplerConfig::Kind::heun;
    nlohmann::json info = {{"checkpoint", o.checkpoint},
                           {"source", model.kind},
                           {"weights", model.weights_path},
                           {"ema", model.ema},
                           {"num_samples", N},
                           {"batch_size", o.batch_size},
                           {"sampler", o.sampler},
                           {"sampling_steps", heun ? sc.heun_steps
                                                   : sc.respacing.empty() ? model.diffusion.diffusion_steps
                                                                          : o.sampling_steps},
                           {"respacing", sc.respacing},
                           {"variance", heun ? (sc.s_churn > 0 ? "none (ODE with churn noise)"
                                                               : "none (deterministic ODE)")
                                             : diffusion::variance_type_name(
                                                   diffusion::resolve_variance(sc, !sc.respacing.empty()))},
                           {"clip_x0", diffusion::resolve_clip_x0(sc)},
                           {"eta", o.eta},
                           {"corrector", o.corrector_steps == 0
                                             ? nlohmann::json(nullptr)
                                             : nlohmann::json({{"method", "langevin"},
                                                               {"steps_per_level", o.corrector_steps},
                                                               {"snr", o.snr}})},
                           {"guidance_scale", o.guidance_scale},
                           {"guidance_rescale", o.guidance_rescale},
                           {"guidance_interval", o.guidance_interval.empty()
                                                     ? nlohmann::json(nullptr)
                                                     : nlohmann::json(o.guidance_interval)},
                           {"autoguide", o.autoguide.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.autoguide)},
                           {"class", o.class_label},
                           {"seed", o.seed},
                           {"diffusion", diffusion_to_json(model.diffusion)},
                           {"image_shape", {H, W, C}},
                           {"autoencoder", latent ? nlohmann::json(latent->source()) : nlohmann::json(nullptr)},
                           {"latent_shape", latent ? nlohmann::json({h, h, zc}) : nlohmann::json(nullptr)},
                           {"classifier", o.classifier.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.classifier)},
                           {"classifier_scale", o.classifier.empty() ? nlohmann::json(nullptr)
                                                                     : nlohmann::json(o.classifier_scale)}};
    if (inpainting) {
      write_png((dir / "inpaint_input.png").string(), inp.strip.data(), inp.strip_height, inp.strip_width, C);
      files.push_back("inpaint_input.png");
      info["inpaint"] = {{"image", o.inpaint_image},
                         {"mask", o.inpaint_mask},
                         {"known_pixels", inp.known_pixels},
                         {"pixels", inp.pixels},
                         {"method", "repaint"},
                         {"jump_length", o.jump_length},
                         {"jump_n_sample", o.jump_n_sample},
                         {"network_calls_per_batch", network_calls}};
    }
    info["low_res"] = super_res ? low_res_info(low, N, low_res_labels) : nlohmann::json(nullptr);
    if (super_res) files.push_back(write_low_res_png(tmp, low, N, H));
    info["control"] = controlled ? write_control_outputs(tmp, control, N, files) : nlohmann::json(nullptr);
    if (heun) info["heun"] = karras_sample_info(o, model, base, sc);  // every Karras-level sampler (edm_options.h)
    write_file_atomic((dir / "sample_info.json").string(), info.dump(2) + "\n");
    files.push_back("sample_info.json");
  };

  publish_directory(o.out, fill, o.overwrite ? IfExists::replace : IfExists::fail);
  result.files = files;
  if (log) *log << "wrote " << files.size() << " files to " << o.out << "\n";
  return result;
}

}  // namespace ddpm::run
