// models/run/sample_run.cpp: ddpm-sample's work (see the header for the output folder); its
// flags and their checks are in sample_flags.cpp.
#include "models/run/sample_run.h"

#include "models/run/edm_options.h"
#include "models/run/ict_options.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <ostream>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "engine/ops/concat.h"
#include "engine/rng.h"
#include "models/diffusion/analytic_variance.h"
#include "models/diffusion/guidance.h"
#include "models/run/guided_distill.h"
#include "models/diffusion/inpaint.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/plms.h"
#include "models/diffusion/reconstruction_guidance.h"
#include "models/diffusion/respace.h"
#include "models/nn/module.h"
#include "models/run/autoguide_run.h"
#include "models/run/cascade_run.h"
#include "models/run/consistency_run.h"
#include "models/run/classifier_run.h"
#include "models/run/control_run.h"
#include "models/run/distill_record.h"
#include "models/run/image_sets.h"
#include "models/run/latent_run.h"
#include "models/run/super_res_run.h"
#include "models/run/video_run.h"
#include "models/diffusion/super_res.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

// How the consistency sampler reads the network: the config's mean type and variance half,
// x^ unclamped (the clip, if any, applies to f: consistency.h).
diffusion::DenoiserReading consistency_reading(const diffusion::SamplerConfig& sc) {
  diffusion::DenoiserReading r;
  r.type = sc.mean_type;
  r.learned_sigma = sc.learned_sigma;
  return r;
}

constexpr int kStepSnapshots = 10;  // columns of steps.png
constexpr int kStepSamples = 4;     // samples shown in steps.png

// sample_info.json's "x0_threshold": the clip policy's kind, and p and S when dynamic (S null
// when uncapped).
nlohmann::json x0_threshold_info(const diffusion::X0Threshold& t) {
  nlohmann::json j = {{"kind", diffusion::x0_threshold_kind_name(t.kind)}};
  if (t.kind == diffusion::X0Threshold::Kind::dynamic) {
    j["percentile"] = t.percentile;
    j["max"] = std::isfinite(t.max_scale) ? nlohmann::json(t.max_scale) : nlohmann::json(nullptr);
  }
  return j;
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

// --prompt and --negative-prompt go with a text-conditioned model, and it with them; what a
// text model does not support yet is refused here by name.
void check_prompts_fit(const SampleOptions& o, const ModelSource& model) {
  if (!model.text) {
    DDPM_CHECK(o.prompts.empty() && o.negative_prompt.empty(),
               "--prompt and --negative-prompt need a text-conditioned model (ddpm-train --text-cond); "
                   << o.checkpoint << " is not one");
    return;
  }
  DDPM_CHECK(!o.prompts.empty(), o.checkpoint << " is text-conditioned: give what to draw with --prompt TEXT "
                                                 "(repeat it for several prompts)");
  DDPM_CHECK(o.class_label < 0, "--class does not apply to " << o.checkpoint
                                                             << ", a text-conditioned model: name the class in --prompt");
  DDPM_CHECK(o.classifier.empty() && o.autoguide.empty() && o.control.empty(),
             "--classifier, --autoguide and --control are not supported with a text-conditioned model yet ("
                 << o.checkpoint << "); use --guidance-scale (classifier-free guidance)");
  DDPM_CHECK(o.negative_prompt.empty() || o.guidance_scale != 1.0,
             "--negative-prompt takes effect through classifier-free guidance: give --guidance-scale != 1");
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

diffusion::SamplerConfig make_sampler_config(const SampleOptions& o, const ModelSource& model, bool latent) {
  const unet::UNetConfig& cfg = model.net->config();
  diffusion::SamplerConfig sc;
  // euler, dpm++2m, euler-ancestral, unipc and dpm++2m-sde run in Heun's loop (karras.h karras_solve) on the same levels.
  // plms runs on DDIM's deterministic process (plms.h).
  // consistency runs its own loop (consistency.h) and uses only the clip and label fields.
  const bool consistency = o.sampler == "consistency";
  sc.kind = diffusion::parse_sampler_kind(is_karras_sampler(o.sampler)           ? "heun"
                                          : o.sampler == "plms" || consistency ? "ddim"
                                                                               : o.sampler);
  const std::int64_t T = model.diffusion.diffusion_steps;
  // A consistency model (consistency_run.h) and the consistency sampler go together only:
  // its network is trained inside f = c_skip z + c_out x^, not as a denoiser of the process.
  const std::optional<diffusion::ConsistencyGrid> cgrid = read_consistency_grid(o.checkpoint, T);
  // An ict run (ict_options.h) is a consistency model too, of the VE process, with no grid.
  const bool ict = model.diffusion.ict.has_value();
  DDPM_CHECK(consistency || !ict, o.checkpoint << " was trained with --objective ict: its network is F inside a "
                                               << "consistency function f(x, sigma); use --sampler consistency");
  DDPM_CHECK(ict || o.consistency_sigmas.empty(),
             "--consistency-sigmas applies to a model trained with ddpm-train --objective ict only; "
                 << o.checkpoint << " is not one");
  DDPM_CHECK(!consistency || cgrid || ict,
             "--sampler consistency needs a consistency model (a ddpm-distill --method consistency folder); "
                 << o.checkpoint << " is not one (its config.json has no \"distillation\" record with sampler "
                 << "consistency)");
  DDPM_CHECK(consistency || !cgrid,
             o.checkpoint << " is a consistency model (ddpm-distill --method consistency): its network was trained "
                          << "only inside the consistency function f = c_skip z + c_out x^, so --sampler " << o.sampler
                          << " would draw garbage without an error; use --sampler consistency --sampling-steps K "
                          << "(K in [1, " << (cgrid ? cgrid->num_levels() : 0) << "])");
  if (ict) {
    (void)ict_sample_sigmas(o, *model.diffusion.ict);  // the levels fit (ValueError naming the flag)
    DDPM_CHECK(o.guidance_scale == 1, "--sampler consistency does not combine with --guidance-scale "
                                          << o.guidance_scale << " for " << o.checkpoint
                                          << ": an ict run trains no guided consistency function");
    DDPM_CHECK(o.inpaint_image.empty() && !reconstruction_guided(o) && !o.show_steps,
               "--inpaint, --reconstruction-guidance and --show-steps do not apply to "
                   << o.checkpoint << " (an ict run): its multistep sampler has no per-step denoiser to guide or show");
  } else if (consistency) {
    (void)diffusion::consistency_sampling_levels(*cgrid, o.sampling_steps > 0 ? o.sampling_steps : 1);  // K fits
    // Only a guided consistency student (consistency_run.h --guided) takes a guidance scale:
    // as w = s - 1 into its network (below), never as a combination of two calls.
    DDPM_CHECK(o.guidance_scale == 1 || cfg.guidance_embedding,
               "--sampler consistency does not combine with --guidance-scale " << o.guidance_scale << " for "
                   << o.checkpoint << ": its consistency function f(z, t) is not a denoiser of the teacher's process "
                   "that classifier-free guidance could shift, and it was distilled without guidance (ddpm-distill "
                   "--method consistency --guided S_MIN,S_MAX distils it)");
  } else if (sc.kind == diffusion::SamplerConfig::Kind::heun) {
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
  // Latents are not confined to [-1, 1], nor are a distilled student's x_0 estimates (its
  // targets leave [-1, 1] at high noise; distill_record.h): no clip unless --clip-x0 or
  // --dynamic-threshold asks, and for a student whatever its round folder records.
  const std::optional<DistillationRecord> distilled = read_distillation_record(o.checkpoint);
  if ((latent || (distilled && !distilled->clip_x0)) && !o.clip_x0_given && o.dynamic_threshold == 0)
    sc.clip_x0 = false;
  sc.dynamic_threshold = o.dynamic_threshold;
  sc.threshold_max = o.threshold_max;
  sc.mean_type = model.diffusion.predict;
  sc.learned_sigma = cfg.learn_sigma;
  // A text-conditioned model's "classes" are this call's prompts (text_conditioned.h).
  check_prompts_fit(o, model);
  sc.num_classes = model.text ? static_cast<int>(o.prompts.size()) : cfg.num_classes;
  if (o.variance != "auto") sc.variance = diffusion::parse_variance_type(o.variance);
  if (!o.analytic_gamma.empty()) {
    // Analytic-DPM: the file must fit the schedule and hold Gamma at every step sampled.
    sc.analytic_gamma =
        std::make_shared<const diffusion::AnalyticGamma>(diffusion::read_analytic_gamma(o.analytic_gamma));
    sc.analytic_gamma_file = o.analytic_gamma;
    DDPM_CHECK(!cfg.learn_sigma, "--variance analytic: " << o.checkpoint << " learned its variance; Analytic-DPM "
                                                         << "gives one to models trained without it");
    const diffusion::DiffusionSchedule base(diffusion_betas(model.diffusion));
    (void)diffusion::analytic_step_variances(base, diffusion::sampling_process(base, sc.respacing), sc);
  }
  diffusion::resolve_variance(sc, !sc.respacing.empty());  // refuses fixed_large with respacing

  const bool conditional = sc.num_classes > 0;
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
  if (cfg.guidance_embedding) {
    // A guidance-distilled model (guided_distill.h) takes w = s - 1 itself, in one call per
    // step: the sampler must not double the batch for classifier-free guidance.
    (void)guided_sampling_weight(distilled, o.checkpoint, o.guidance_scale);  // the trained range
    DDPM_CHECK(o.guidance_rescale == 0 && o.guidance_interval.empty() && o.autoguide.empty(),
               "--guidance-rescale, --guidance-interval and --autoguide combine a conditional and an unconditional "
               "prediction; " << o.checkpoint << " is guidance-distilled (one prediction per step, the weight fed to "
                                 "the network), so they do not apply to it");
    sc.guidance_scale = 1.0;
  }
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
  if (!o.low_res_from.empty()) return run_cascade(o, log);  // base model, then this one (cascade_run.h)
  if (!o.first_frame_from.empty()) return run_first_frame_pipeline(o, log);  // image model, then video (video_run.h)
  ModelSource model = open_model(o.checkpoint, o.device, o.use_ema);
  if (log)
    *log << "loaded " << model.kind << " " << o.checkpoint << " (weights " << model.weights_path
         << (model.ema ? ", EMA" : "") << ", " << model.net->num_parameters() << " parameters)\n";
  std::unique_ptr<LatentCodec> latent;
  const std::string ae_dir = find_run_autoencoder(o.checkpoint);
  DDPM_CHECK(o.decoder.empty() || !ae_dir.empty(),
             "--decoder " << o.decoder << " does not apply to " << o.checkpoint
                          << ": it is a pixel-space model; --decoder decodes a latent video run's clips");
  if (!ae_dir.empty()) {
    latent = std::make_unique<LatentCodec>(ae_dir, o.device);
    if (!o.decoder.empty()) latent->use_clip_decoder(o.decoder);  // checked against ae_dir (latent_run.h)
    if (log) *log << "latent diffusion: decoding with " << (o.decoder.empty() ? ae_dir : o.decoder) << " (f = " << latent->factor() << ", s = " << latent->scale() << ")\n";
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
  DDPM_CHECK(o.low_res_from.empty(), "--low-res-from " << o.low_res_from << " needs the base model too: run_cascade (cascade_run.h)");
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
  check_video_sample(o, model.net->config(), latent != nullptr);  // video_run.h
  if (!o.decoder.empty() && latent && latent->has_clip_decoder()) {  // --decoder: the clips decoded must be its length
    DDPM_CHECK(model.net->config().num_frames > 0, "--decoder " << latent->clip_decoder_source() << " does not apply to "
                                                                << o.checkpoint << ": it is an image model, and a "
                                                                << "temporal decoder decodes clips");
    const std::int64_t decoded = video_output_frames(o, model.net->config());
    DDPM_CHECK(decoded == latent->clip_frames(),
               "--decoder " << latent->clip_decoder_source() << " decodes clips of " << latent->clip_frames()
                            << " frames (its temporal_frames), but this run's clips have " << decoded
                            << " frames; fine-tune one with ddpm-autoencoder finetune-temporal --frames " << decoded);
  }
  if (reconstruction_guided(o)) {
    DDPM_CHECK(!model.diffusion.vdm && !model.diffusion.edm,
               "--reconstruction-guidance does not apply to " << o.checkpoint
                                                              << ": it steps a discrete DDPM schedule, not a VDM or EDM model");
    freeze_weights(model);  // its gradient runs backward through the network to x_t only
  }
  DDPM_CHECK(o.first_frame_from.empty(), "--first-frame-from " << o.first_frame_from
                                                               << " needs the image model too: run_first_frame_pipeline (video_run.h)");
  diffusion::SamplerConfig sc = make_sampler_config(o, model, latent != nullptr);
  // --frame-guidance-scale (video_run.h): the label guidance, if any, moves into the frame-
  // guided denoiser, which forms both in one batched call.
  const FrameGuidance frame_guidance = take_frame_guidance(o, sc);
  if (frame_guidance.active() && log)
    *log << "frame guidance: scale " << frame_guidance.scale
         << (frame_guidance.label_scale != 1.0 ? ", label guidance " + std::to_string(frame_guidance.label_scale) +
                                                     " (two-scale form, 3n rows per network call)"
                                               : std::string(" (2n rows per network call)"))
         << "\n";
  const std::optional<diffusion::ConsistencyGrid> cgrid =
      o.sampler == "consistency" ? read_consistency_grid(o.checkpoint, model.diffusion.diffusion_steps) : std::nullopt;
  const std::int64_t consistency_steps = o.sampling_steps > 0 ? o.sampling_steps : 1;  // consistency.h (4)
  const std::vector<double> ict_sigmas =  // consistency_training.h (6): an ict run's levels
      model.diffusion.ict ? ict_sample_sigmas(o, *model.diffusion.ict) : std::vector<double>{};
  if (const std::optional<DistillationRecord> distilled = read_distillation_record(o.checkpoint); distilled && log) {
    const std::string w = distillation_sampling_warning(*distilled, o.checkpoint, o.sampler, o.sampling_steps,
                                                        model.diffusion.diffusion_steps);
    if (!w.empty()) *log << w << "\n";  // the student's trained grid (distill_record.h)
  }
  ModelSource opened_guide;  // --autoguide, when not given already opened
  if (!o.autoguide.empty()) {
    if (!guide) {
      opened_guide = open_model(o.autoguide, o.device, o.use_ema);
      guide = &opened_guide;
    }
    check_autoguide_fits(model, *guide, o.autoguide, o.low_res_noise_level);
    DDPM_CHECK(!model.diffusion.ict && !guide->diffusion.ict,
               "--autoguide " << o.autoguide << ": autoguidance of or by an ict run (a consistency function) is not "
                              << "supported");
    DDPM_CHECK(!model.diffusion.vdm && !guide->diffusion.vdm,
               "--autoguide " << o.autoguide << ": autoguidance of or by a VDM run (--objective vdm) is not "
                              << "supported yet (its network sees continuous t through the grid bridge, vdm.h)");
    // A latent model is guided in latent space by a guide on the same autoencoder (autoguide_run.h).
    check_autoguide_autoencoder(latent ? latent->source() : "", find_run_autoencoder(o.autoguide), o.autoguide);
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
  // A video model samples N clips of F frames (video_run.h); F = 1 stands for an image model
  // in the byte counts below.
  const std::int64_t F = video_clip_frames(o, cfg);  // --frames, or the trained num_frames
  const std::int64_t F_out = video_output_frames(o, cfg);  // F, or longer with --segments
  auto sample_shape = [&](std::int64_t n) { return F > 0 ? Shape{n, F, h, h, zc} : Shape{n, h, h, zc}; };
  FirstFrames first;  // a first-frame-conditioned video model's frames (video_run.h)
  const bool first_frames = load_first_frames_for(o, cfg, first, log, latent);  // encoded when latent
  auto to_pixels = [latent](const Tensor& x) { return to_uint8_pixels(latent ? latent->decode(x) : x); };
  LowResInputs low;  // super-resolution: the low-res images to upsample (super_res_run.h)
  const bool super_res = load_low_res_for(o, cfg, low, base.num_timesteps(), log);
  ControlInputs control;  // --control (control_run.h)
  const bool controlled = load_control_for(o, model, control, log, latent);
  const std::int64_t N = super_res      ? low_res_num_samples(o, low)
                         : controlled   ? control_num_samples(o, control)
                         : first_frames ? first_frame_num_samples(o, first)
                                        : o.num_samples;
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
  result.shape = F > 0 ? Shape{N, F_out, H, W, C} : Shape{N, H, W, C};
  result.out_dir = o.out;
  if (sc.num_classes > 0)  // class labels, or prompt indices for a text model
    for (std::int64_t i = 0; i < N; ++i) result.labels.push_back(o.class_label >= 0 ? o.class_label : i % sc.num_classes);
  const bool low_res_labels = super_res && take_low_res_labels(o, cfg, low, N, result.labels);
  if (controlled) take_control_labels(o, cfg, control, N, result.labels);  // each hint image's label (control_run.h)
  if (first_frames) take_first_frame_labels(o, cfg, first, N, result.labels);  // arr_1 of --first-frame

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
  // A guidance-distilled model: one call per step with w = s - 1 for every sample (the
  // sampler's guidance scale is 1 for it: make_sampler_config).
  const bool guidance_distilled = cfg.guidance_embedding;
  const double guided_w = guidance_distilled ? guided_sampling_weight(read_distillation_record(o.checkpoint),
                                                                     o.checkpoint, o.guidance_scale)
                                             : 0.0;
  if (guidance_distilled && log)
    *log << "guidance-distilled model: --guidance-scale " << o.guidance_scale << " is fed to the network as w = "
         << guided_w << ", one network call per step\n";
  diffusion::DenoiseFn fn = [&net, guidance_distilled, guided_w](const Tensor& x, const std::vector<double>& t,
                                                                 const std::vector<std::int64_t>& y) {
    if (guidance_distilled)
      return net.forward(x, t, y, std::vector<double>(static_cast<std::size_t>(x.dim(0)), guided_w), nn::Context{});
    return net.forward(x, t, y, nn::Context{});
  };
  // A text model: label k is --prompt k, the null label the negative prompt ("" = the empty
  // caption it was trained with for classifier-free guidance).
  if (model.text) {
    fn = model.text->denoiser(o.prompts, o.negative_prompt, {}, /*reuse_context=*/true);
    if (log) {
      *log << "text-conditioned: " << o.prompts.size() << " prompt(s), sample i gets prompt i mod "
           << o.prompts.size();
      if (o.guidance_scale != 1.0)
        *log << "; guidance away from " << (o.negative_prompt.empty() ? "the empty caption" : "\"" + o.negative_prompt + "\"");
      *log << "\n";
      std::vector<std::string> texts = o.prompts;
      texts.push_back(o.negative_prompt);
      const std::vector<std::string> unknown = model.text->tokenizer().unknown_words(texts);
      if (!unknown.empty()) {
        *log << "warning: not in the model's vocabulary (read as <unk>):";
        for (const std::string& w : unknown) *log << " " << w;
        *log << "\n";
      }
    }
  }
  // A VDM model (vdm.h's grid bridge): the samplers run on its grid schedule (diffusion_betas)
  // and the network sees grid index i as continuous t = (i + 1) / N.
  if (model.diffusion.vdm)
    fn = diffusion::vdm_grid_denoiser(fn, model.diffusion.vdm_curve, model.diffusion.diffusion_steps);

  // steps.png: snapshots of the first batch's first samples, [S][rows] images of H x W x C.
  std::vector<std::vector<std::uint8_t>> snap_xt, snap_x0;
  const std::int64_t shown = std::min<std::int64_t>(kStepSamples, std::min(N, std::int64_t(o.batch_size)));
  std::vector<std::int64_t> keep;
  diffusion::StepCallback callback;
  auto take = [&](const Tensor& t) {
    std::vector<std::uint8_t> px = to_pixels(diffusion::batch_rows(t, 0, shown));
    return px;
  };

  const diffusion::DenoiseFn guide_fn = sc.autoguide;  // the bare guide; conditioned per batch for super-resolution
  Generator gen(o.seed);
  std::vector<Tensor> latent_batches;  // SampleResult::latents
  result.pixels.reserve(static_cast<std::size_t>(N) * std::max<std::int64_t>(F_out, 1) * H * W * C);
  for (std::int64_t begin = 0; begin < N; begin += o.batch_size) {
    const std::int64_t n = std::min<std::int64_t>(o.batch_size, N - begin);
    std::vector<std::int64_t> labels;
    if (!result.labels.empty()) labels.assign(result.labels.begin() + begin, result.labels.begin() + begin + n);
    if (guidance.classifier) {
      guidance.labels = labels;                  // the classifier's targets
      if (cfg.num_classes == 0) labels.clear();  // an unconditional network takes none
    }
    // A super-resolution model's closure (and its autoguide's: the same condition) concatenates
    // this batch's upsampled low-res rows; with conditioning augmentation noised at the fixed
    // level, the noise drawn after x_T (super_res_run.h low_res_denoisers).
    diffusion::DenoiseFn bfn = fn;
    if (controlled) {
      bfn = control_denoiser(net, control, begin, n);
    } else if (super_res) {
      const LowResDenoisers d = low_res_denoisers(low, fn, guide_fn, begin, n, o.device, base.alphas_cumprod, gen);
      bfn = d.main;
      sc.autoguide = d.guide;  // empty without --autoguide
    } else if (first_frames) {  // one PNG conditions every clip; an .npz's rows go in turn
      bfn = frame_guided_denoiser(
          fn, (first.images.count == 1 ? first.cond : diffusion::batch_rows(first.cond, begin, n)).to(o.device),
          frame_guidance);
    }
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
    auto draw = [&](const diffusion::DenoiseFn& f) {
      return inpainting
                 ? diffusion::inpaint(base, f, inp.image, inp.mask, n, labels, sc, repaint, gen, o.device, callback)
             : is_karras_sampler(o.sampler)
                 ? sample_karras(model, base, f, sample_shape(n), labels, sc, o.sampler, gen, o.device, callback)
             : o.sampler == "plms"
                 ? diffusion::plms_sample(base, f, sample_shape(n), labels, sc, gen, o.device, callback)
             : model.diffusion.ict
                 ? diffusion::ict_sample(f, *model.diffusion.ict, sample_shape(n), labels, ict_sigmas,
                                         diffusion::resolve_clip_x0(sc), gen, o.device, sc.dtype)
             : o.sampler == "consistency"
                 ? diffusion::consistency_sample(base, f, consistency_reading(sc), *cgrid, sample_shape(n), labels,
                                                 consistency_steps, diffusion::resolve_clip_x0(sc), gen, o.device,
                                                 sc.dtype)
                 : diffusion::sample(base, f, sample_shape(n), labels, sc, gen, o.device, callback, guidance);
    };
    Tensor x = draw(bfn);
    // --segments S (video_run.h): each further segment starts from the last K' frames so far.
    if (first_frames && o.segments > 1)
      x = extend_clips(
          x, o.segments, video_overlap(o, cfg),
          [&](const Tensor& known) {
            return frame_guided_denoiser(fn, unet::frames_condition(known, static_cast<int>(F)), frame_guidance);
          },
          draw);
    // An unconditional model continues through reconstruction guidance instead; its
    // replacement noise has its own stream per batch and segment, derived from --seed.
    if (reconstruction_guided(o)) {
      std::uint64_t segment = 0;
      x = extend_clips(
          x, o.segments, video_overlap(o, cfg),
          [&](const Tensor& known) {
            diffusion::ReconstructionGuidance g;
            g.known = known;
            g.weight = o.reconstruction_guidance;
            g.mean_type = sc.mean_type;
            g.learned_sigma = sc.learned_sigma;
            g.seed = o.seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(begin) * 1000003u + ++segment;
            return diffusion::reconstruction_guided(fn, base, g);
          },
          draw);
    }
    if (latent) latent_batches.push_back(x.to(Device::cpu()).to(DType::f32));  // before decoding
    const std::vector<std::uint8_t> px = to_pixels(x);
    result.pixels.insert(result.pixels.end(), px.begin(), px.end());
    if (log) *log << "sampled " << begin + n << " / " << N << "\n";
  }

  if (!latent_batches.empty()) result.latents = concat(latent_batches, 0);
  // Everything is written into a temporary folder and published in one rename.
  const std::size_t image_bytes = static_cast<std::size_t>(H) * W * C;
  std::vector<std::string> files;
  auto fill = [&](const std::string& tmp) {
    const fs::path dir(tmp);
    const int nrow = static_cast<int>(std::ceil(std::sqrt(double(N))));
    if (F > 0)
      write_video_set(tmp, result.pixels, N, static_cast<int>(F_out), H, W, C, nrow, result.labels, files);
    else
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
                           {"sampling_steps", heun     ? sc.heun_steps
                                              : cgrid ? consistency_steps
                                              : model.diffusion.ict ? static_cast<std::int64_t>(ict_sigmas.size())
                                              : sc.respacing.empty() ? model.diffusion.diffusion_steps
                                                                     : o.sampling_steps},
                           {"respacing", sc.respacing},
                           {"variance", cgrid || model.diffusion.ict ? "none (consistency model)"
                                        : heun ? (sc.s_churn > 0 ? "none (ODE with churn noise)"
                                                               : "none (deterministic ODE)")
                                             : diffusion::variance_type_name(
                                                   diffusion::resolve_variance(sc, !sc.respacing.empty()))},
                           {"analytic_gamma", o.analytic_gamma.empty() ? nlohmann::json(nullptr)
                                                                       : nlohmann::json(o.analytic_gamma)},
                           {"clip_x0", diffusion::resolve_clip_x0(sc)},
                           {"x0_threshold", x0_threshold_info(diffusion::resolve_x0_threshold(sc))},
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
                           {"prompts", model.text ? nlohmann::json(o.prompts) : nlohmann::json(nullptr)},
                           {"negative_prompt", model.text ? nlohmann::json(o.negative_prompt) : nlohmann::json(nullptr)},
                           {"seed", o.seed},
                           {"diffusion", diffusion_to_json(model.diffusion)},
                           {"image_shape", {H, W, C}},
                           {"autoencoder", latent ? nlohmann::json(latent->source()) : nlohmann::json(nullptr)},
                           {"latent_shape", latent ? nlohmann::json({h, h, zc}) : nlohmann::json(nullptr)},
                           {"decoder", !o.decoder.empty() && latent && latent->has_clip_decoder()
                                           ? nlohmann::json({{"folder", latent->clip_decoder_source()},
                                                             {"temporal_frames", latent->clip_frames()}})
                                           : nlohmann::json(nullptr)},
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
    info["video"] = F > 0 ? video_info(o, cfg, first, N) : nlohmann::json(nullptr);
    if (super_res) files.push_back(write_low_res_png(tmp, low, N, H));
    info["control"] = controlled ? write_control_outputs(tmp, control, N, files) : nlohmann::json(nullptr);
    if (heun) info["heun"] = karras_sample_info(o, model, base, sc);  // every Karras-level sampler (edm_options.h)
    if (cgrid)  // consistency.h eq. (4): K network calls
      info["consistency"] = {{"levels", cgrid->num_levels()},
                             {"timesteps", diffusion::consistency_sampling_levels(*cgrid, consistency_steps)},
                             {"network_calls", consistency_steps}};
    if (model.diffusion.ict)  // consistency_training.h eq. (6): one network call per level
      info["consistency"] = {{"sigmas", ict_sigmas},
                             {"sigmas_from", o.consistency_sigmas.empty() ? "default" : "--consistency-sigmas"},
                             {"network_calls", ict_sigmas.size()}};
    if (guidance_distilled)  // Meng et al. 2023: the weight is a network input, no doubled batch
      info["guidance_distilled"] = {{"guidance_weight_w", guided_w}, {"network_calls_per_step", 1}};
    write_file_atomic((dir / "sample_info.json").string(), info.dump(2) + "\n");
    files.push_back("sample_info.json");
  };

  publish_directory(o.out, fill, o.overwrite ? IfExists::replace : IfExists::fail);
  result.files = files;
  if (log) *log << "wrote " << files.size() << " files to " << o.out << "\n";
  return result;
}

}  // namespace ddpm::run
