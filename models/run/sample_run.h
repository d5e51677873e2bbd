// models/run/sample_run.h: the library behind ddpm-sample.
//
// Opens a model (models/run/model_source.h), draws --num-samples images in batches of
// --batch-size with the DDPM, DDIM or Heun sampler (models/diffusion/sampler.h, karras.h) and publishes an
// output folder atomically (engine/io/atomic_file.h publish_directory):
//   OUT/grid.png              all samples tiled, ceil(sqrt(N)) per row
//   OUT/images/000000.png ... one PNG per sample
//   OUT/samples.npz           "arr_0" uint8 [N, H, W, C] (as improved-diffusion writes it) and,
//                             for a class-conditional model or with --classifier, "arr_1"
//                             int64 [N]: the labels asked for
//   OUT/steps.png             with --show-steps: the reverse process of the first (up to 4)
//                             samples, two rows per sample: x_t and the clipped x_0 estimate
//                             at (up to) 10 evenly spaced steps, left = noisiest, right = final
//   OUT/sample_info.json      what produced the samples: checkpoint, EMA, sampler, steps,
//                             variance, eta, guidance, seed (a sample set means nothing
//                             without them), "x0_threshold" (kind none | static | dynamic,
//                             with dynamic its percentile and max, null = no cap); with heun also "heun": the sigma_min and
//                             sigma_max used (flags or the schedule's ends), rho, the
//                             model's training sigma range and the network evaluations;
//                             with --inpaint also "inpaint": the image and
//                             mask paths, known/total pixels, jump length, jump_n_sample and
//                             the network calls per batch
//   OUT/inpaint_input.png     with --inpaint: three tiles, the given image, the mask (white =
//                             kept) and the masked input (generated pixels shown mid-grey)
// Pixels: x clipped to [-1, 1], then round((x + 1) * 127.5) as uint8. grid.png, images/ and
// samples.npz are written by write_image_set (models/run/image_sets.h), shared with ddpm-edit.
//
// EDM-trained models (models/run/edm_options.h): --sampler heun (their default) or euler,
// sigma levels over [0.002, 80] unless --sigma-min / --sigma-max; ddpm and ddim refused.
// Sampling steps: --sampling-steps N respaces the T training steps to "N" (DDPM, evenly
// spread, respace.h) or "ddimN" (DDIM, exact stride T/N: an error unless N divides T);
// 0 keeps all T. Both keep T-1, so sampling starts from the fully noised step (the
// "trailing"/"linspace" spacing Lin et al. 2024 sec. 3.3 require, and what a zero-terminal-SNR
// model needs: its x_{T-1} is pure noise); no "leading" spacing is offered. Respaced DDPM uses the fixed-small variance unless the model learned sigma
// (fixed-large degrades with fewer steps).
// Labels: --class C gives every sample class C; otherwise a class-conditional model gets
// labels 0, 1, ..., num_classes - 1, 0, 1, ... (balanced, deterministic).
// Inpainting (--inpaint IMAGE --mask MASK, models/diffusion/inpaint.h, RePaint): IMAGE is a
// PNG of the model's size and channel count, mapped to [-1, 1] as the training data
// (v / 127.5 - 1); MASK a PNG of the same size (grey or RGB): a pixel is KNOWN (kept) when
// all its channels are >= 128 (white), generated otherwise. The one image is inpainted
// --num-samples times (each sample its own noise). DDPM only; --sampling-steps respaces the
// process RePaint walks (inpaint.h says how the jumps take beta from it); --jump-length and
// --jump-n-sample set the resampling (10 and 10 as in the paper; 1 = no resampling). Cost:
// about jump_n_sample times the network calls of plain sampling. Errors: a missing or broken
// PNG is an IoError; a size or channel mismatch (naming both shapes), a mask that keeps every
// pixel (nothing to generate) or none (nothing to condition on), --inpaint without --mask or
// the reverse, and --sampler ddim are ValueErrors.
// Classifier guidance (--classifier DIR --classifier-scale S, models/diffusion/
// classifier_guidance.h): DIR is a ddpm-classifier train folder; S > 0, default 1. The
// classifier must fit the model: the same image size and channels, T and noise schedule,
// and for a class-conditional model the same number of classes (ValueError naming both
// values). Labels as above (an unconditional model takes them from the classifier's
// classes: --class, or balanced). DDPM and DDIM only (--sampler heun and --inpaint are
// refused); it composes with --guidance-scale, and --guidance-interval LO,HI limits it as it
// limits classifier-free guidance (the gradient term only at steps with sigma_t in [LO, HI];
// --guidance-interval needs --guidance-scale != 1 or --classifier). sample_info.json records
// "classifier" and "classifier_scale" (null without one).
// Latent diffusion (a run trained with ddpm-train --autoencoder, models/run/latent_run.h):
// the sampler runs on latents [N, H/f, W/f, z_channels] and every result (grid, images, npz,
// steps.png) is decoded to pixels by the run's copy of the autoencoder, x = D(z / s), so
// samples.npz holds pixel-space uint8 [N, H, W, C] and ddpm-eval fid works unchanged. x_0
// is not clipped unless --clip-x0 is given explicitly (latents are not confined to [-1, 1]).
// --inpaint and --classifier are refused (a pixel mask, a pixel-space classifier).
// sample_info.json records "autoencoder" (the folder) and "latent_shape".
// --decoder DEC (a latent video run only): its clips are decoded clip-wise by DEC, a temporal
// decoder from ddpm-autoencoder finetune-temporal --from the run's autoencoder (same config
// apart from temporal_frames, same encoder weights; temporal_frames = the decoded clip
// length), latent_run.h; sample_info.json records "decoder" {folder, temporal_frames} (null
// without one).
// ControlNet (--control CTRL --control-image PNG | --control-from IMAGES [--control-scale S],
// models/run/control_run.h): the denoiser is the base plus a ddpm-control run's residuals,
// its hint computed from the given image(s); every sampler works. OUT/control.png shows the
// hints; sample_info.json records "control".
// Super-resolution (a run trained with ddpm-train --super-res L, models/run/super_res_run.h):
// --low-res SAMPLES.npz|IMAGE.png gives the L x L images, each upsampled bilinearly and
// concatenated to x_t by the network closure; OUT/low_res.png shows them and sample_info.json
// records "low_res". Every sampler works; --inpaint and --classifier are refused.
// --low-res-noise-level f (a model trained with --cond-augment MAX; f in [0, MAX], default
// 0): the upsampled low-res images are noised at level a = round(f (T - 1)) of the model's
// schedule and the network is told a (CDM's conditioning augmentation, models/diffusion/
// super_res.h); the noise is drawn per batch at the first network call, right after x_T.
// A model trained without augmentation refuses f != 0.
// --low-res-blur SIGMA (>= 0, default 0 = off; needs --low-res): each low-res image is blurred
// with the Gaussian of models/diffusion/blur_augment.h (sigma in low-res pixels, reflect
// border) BEFORE the bilinear upsample, the training condition of ddpm-train --blur-augment,
// so a model can be tried on inputs as soft as those it was trained with; sample_info.json's
// "low_res" records "blur_sigma" (0 when off), low_res.png shows the inputs as given.
// The cascade in one call (--low-res-from BASE with a super-resolution --checkpoint,
// models/run/cascade_run.h): BASE is sampled first into OUT/base/ (exactly what ddpm-sample
// --checkpoint BASE writes), then its samples.npz is the --low-res of this model; --base-sampler,
// --base-sampling-steps, --base-guidance-scale and --base-seed set the base stage.
// Random numbers: one Philox generator seeded with --seed runs through the batches in
// order, so a seed and batch size give the same samples on every run (and device).
//
// Heun's noise levels (karras.h, EDM eq. 5): --sigma-max, --sigma-min and --rho apply to
// --sampler heun only. 0 (the default) for either end means the schedule's own end: its
// largest / smallest training sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), about 157 and
// 0.01 for the linear schedule at T = 1000, but about 2e4 for the cosine one (EDM samples
// such models from sigma_max = 80). A value outside the model's training range is refused,
// naming the flag and the range (karras.h: the network never saw such a level), not
// clamped: a clamp would silently sample a different range than the one asked for.
// Stochastic Heun (karras.h, EDM algorithm 2): --s-churn S (0 = deterministic, the default)
// raises the noise of each level in [--s-tmin, --s-tmax] (default 0 and inf: all) by the
// factor 1 + min(S / N, sqrt(2) - 1) with fresh noise scaled by --s-noise (default 1) before
// the Heun step; EDM's ImageNet-64 setting is --s-churn 80 --s-tmin 0.05 --s-tmax 50
// --s-noise 1.003. sample_info.json's "heun" records the four values (s_tmax null when
// infinite) and the number of churned levels.
//
// Guidance-distilled models (ddpm-distill --guided, guided_distill.h; the UNet has a
// guidance_embedding): --guidance-scale s is fed to the network as w = s - 1, ONE call per
// step (no classifier-free doubling: the sampler's own scale is 1); s outside the range the
// folder's "distillation" record names is refused, as are --guidance-rescale,
// --guidance-interval and --autoguide (they need two predictions); sample_info.json adds
// "guidance_distilled": {guidance_weight_w, network_calls_per_step: 1}.
//
// An ict run (ddpm-train --objective ict, ict_options.h) samples with --sampler consistency
// too, on sigma levels (--sampling-steps or --consistency-sigmas), not on a timestep grid.
// Consistency models (ddpm-distill --method consistency, consistency_run.h): --sampler
// consistency runs CM's multistep sampling (consistency.h eq. 4) on K = --sampling-steps
// (0 = 1) of the folder's N levels, K network calls; x is clamped only with --clip-x0 true.
// It is the default sampler of a consistency folder (without --sampler: resolve_sampler_for_
// model, edm_options.h); it is refused for every other model, and a consistency folder
// refuses every other sampler named (ValueError naming the folder), as well as guidance, --classifier, --autoguide and
// --control; sample_info.json adds "consistency": {levels, timesteps, network_calls}.
//
// Validation (ValueError, i.e. exit 2 in the app): counts must be positive; --eta only with
// DDIM and >= 0 (eta = 1 is DDPM-like, larger adds more noise than DDPM); --class and --guidance-scale
// != 1 need a class-conditional model ("guidance without class conditioning"); --class in
// [0, num_classes); --guidance-rescale (sampler.h, Lin et al. 2024) in [0, 1] and only with
// --guidance-scale != 1; --sigma-max, --sigma-min and --rho only with heun, finite, >= 0 (0 = the
// schedule's end; rho > 0), --sigma-min below --sigma-max, both inside the training range;
// --s-churn, --s-tmin, --s-tmax, --s-noise only with heun (given at all, even at their
// defaults, as for the three above), --s-churn >= 0, --s-noise > 0, 0 <= --s-tmin <= --s-tmax;
// --dynamic-threshold P in (0, 1], --threshold-max S >= 1 and only with --dynamic-threshold,
// neither with --clip-x0 false (it asks for no clip at all); --out must not be an existing
// non-empty folder unless --overwrite.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/device.h"
#include "engine/tensor.h"
#include "models/diffusion/sampler.h"
#include "models/run/image_sets.h"  // to_uint8_pixels and the grid/images/npz writer
#include "models/run/model_source.h"

namespace ddpm::run {

struct SampleOptions {
  std::string checkpoint;          // run folder, checkpoint folder, model file or diffusers folder
  bool use_ema = true;             // --no-ema clears it
  int num_samples = 16;
  int batch_size = 16;
  std::string sampler = "ddpm";    // "ddpm" | "ddim" | "heun" | "euler" (Heun's loop, first order)
  int sampling_steps = 0;          // 0: all training steps
  std::string consistency_sigmas;  // an ict run's explicit levels S1,S2,... (ict_options.h); "" = default
  double eta = 0.0;                // DDIM noise
  // Predictor-corrector sampling (langevin.h): Langevin steps per level before each DDPM or
  // DDIM step, at target signal-to-noise ratio snr (Song et al. 2021 algorithm 5).
  std::int64_t corrector_steps = 0;
  double snr = 0.16;
  std::string variance = "auto";   // auto | fixed_small | fixed_large | learned_range | analytic
  // --analytic-gamma: the Gamma file of ddpm-eval analytic-gamma that --variance analytic
  // (Analytic-DPM, analytic_variance.h; ddpm and ddim) needs; it must cover the trajectory.
  std::string analytic_gamma;
  // Clamp each step's x_0 estimate to [-1, 1] ("true" | "false"; "auto": the library's
  // default, off for Heun as in EDM). On by default for every sampler here: an undertrained
  // model's unclamped probability-flow ODE drives pixels far outside [-1, 1] (measured on
  // the CPU preset's 1000-step model: Heun unclamped gives salt-and-pepper images, clamped
  // it matches DDIM's).
  std::string clip_x0 = "true";
  bool clip_x0_given = false;      // --clip-x0 was on the command line (note_given_flags)
  // --dynamic-threshold P [--threshold-max S]: Imagen's dynamic thresholding of x_0 in place
  // of the static clamp (SamplerConfig::dynamic_threshold / threshold_max, x0_threshold.h);
  // P in (0, 1], 0 = off; S >= 1, inf = no cap. Refused with --clip-x0 false.
  double dynamic_threshold = 0.0;
  double threshold_max = std::numeric_limits<double>::infinity();
  int class_label = -1;            // -1: balanced labels for a class-conditional model
  // --prompt (repeatable) and --negative-prompt: the texts of a text-conditioned model
  // (ddpm-train --text-cond; models/text/text_conditioned.h). Sample i gets prompt i mod P;
  // classifier-free guidance's unconditional branch sees the negative prompt ("" = the empty
  // caption the model was trained with in place of dropped captions).
  std::vector<std::string> prompts;
  std::string negative_prompt;
  double guidance_scale = 1.0;     // classifier-free guidance s (1 = none)
  double guidance_rescale = 0.0;   // --guidance-rescale phi (Lin et al. 2024 sec. 3.4; sampler.h); 0 = off
  // --guidance-interval LO,HI: guide only at noise levels sigma in [LO, HI] (guidance.h,
  // Kynkaanniemi et al. 2024); "" = every step. Limits classifier guidance as well.
  std::string guidance_interval;
  // --autoguide: a weaker model of the same task guiding this one (autoguide_run.h); "" = none.
  std::string autoguide;
  std::string out;                 // output folder
  bool overwrite = false;
  bool show_steps = false;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
  std::string inpaint_image;       // --inpaint: PNG to complete ("" = plain sampling)
  std::string inpaint_mask;        // --mask: PNG, white (>= 128) = known
  int jump_length = 10;            // RePaint resampling: states gone back up per jump
  int jump_n_sample = 10;          // RePaint resampling: passes per stretch (1 = none)
  // Heun's noise levels (SamplerConfig::sigma_min / sigma_max / rho): 0 = the schedule's end.
  double sigma_min = 0.0;
  double sigma_max = 0.0;
  double rho = 7.0;                // EDM eq. 5 spacing exponent
  // Heun's stochastic churn (SamplerConfig::s_churn, s_tmin, s_tmax, s_noise; EDM
  // algorithm 2): s_churn = 0 is the deterministic sampler.
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
  int solver_order = 2;            // --solver-order: UniPC's order (SamplerConfig::solver_order)
  // The Heun-only flags (--sigma-max, --sigma-min, --rho, --s-churn, --s-tmin, --s-tmax,
  // --s-noise) the parse saw, on the command line or in --config (note_given_flags: CLI11's
  // count()). A flag given with its default value is still a request (0 means "unset" for
  // the sigmas), refused with another sampler like any other value.
  std::vector<std::string> heun_flags_given;
  // --sampler was not given (note_given_flags): the model picks it once open, heun for an
  // EDM-trained model (edm_options.h), ddpm otherwise. The Heun-only flags still need an
  // explicit --sampler heun (or euler). Library callers leave it false: o.sampler as asked.
  bool sampler_defaulted = false;
  // Classifier guidance: a ddpm-classifier folder ("" = none) and its scale s (> 0).
  std::string classifier;
  double classifier_scale = 1.0;
  // Super-resolution (models/run/super_res_run.h): the low-res images (.npz or PNG) that a
  // super-resolution model upsamples; N = their count unless --num-samples was given.
  std::string low_res;
  double low_res_noise_level = 0.0;  // a fraction of T in [0, cond_augment] (augmented models only)
  double low_res_blur = 0.0;         // Gaussian blur sigma (low-res pixels) before the upsample; 0 = off
  bool num_samples_given = false;  // --num-samples on the command line (note_given_flags)
  // The cascade in one call (models/run/cascade_run.h): --low-res-from BASE samples BASE first
  // and upsamples its samples. The base stage's sampler ("" = --sampler), steps (-1 =
  // --sampling-steps), classifier-free guidance scale and seed (unset = --seed).
  std::string low_res_from;
  std::string base_sampler;
  int base_sampling_steps = -1;
  double base_guidance_scale = 1.0;
  std::optional<std::uint64_t> base_seed;
  // ControlNet (models/run/control_run.h): a ddpm-control run, the image(s) its hint is
  // computed from (one PNG, or an npz / data spec), and the residuals' scale.
  std::string control, control_image, control_from;
  double control_scale = 1.0;
  // A first-frame-conditioned video model (models/run/video_run.h): the frames its clips start
  // from (a PNG or an .npz of images), or an image model to sample them with first.
  std::string first_frame, first_frame_from;
  // --decoder: a temporal decoder (ddpm-autoencoder finetune-temporal) of a latent video
  // run's autoencoder; its clips are decoded clip-wise with it (latent_run.h).
  std::string decoder;
  // Not a flag: a latent --first-frame-from pipeline's image-stage latents [M, h, w, z] (CPU),
  // the first frames as sampled, not re-encoded from the written bytes (video_run.h).
  Tensor first_frame_latents;
  // --frames F: a video model samples clips of F frames, longer or shorter than the
  // num_frames it was trained on (video_run.h "Clip length"); -1 = not given: num_frames.
  int frames = -1;
  int segments = 1;  // --segments: clips continued from their last frame (video_run.h)
  int overlap = 0;   // --overlap K': the known frames per segment; 0 = the model's condition_frames
  // --reconstruction-guidance W: --segments with an unconditional video model, each segment
  // guided to continue the last K' frames (diffusion/reconstruction_guidance.h); W = 0 is the
  // replacement method alone. Negative (the default, -1): off.
  double reconstruction_guidance = -1;
  // --frame-guidance-scale S_I: classifier-free guidance on a frame-conditioned video model's
  // known frames (video_run.h "Frame guidance"); 1 = none, one network call per step.
  double frame_guidance_scale = 1.0;
};

// The flags and their model-free checks (add_sample_flags, note_given_flags,
// check_sample_options) are implemented in sample_flags.cpp.
// Adds every ddpm-sample flag except the common ones (--device, --seed, --config of
// apps/common/cli.h), bound to `o`.
void add_sample_flags(CLI::App& app, SampleOptions& o);

// Records in o.heun_flags_given which Heun-only flags `app` (after parse, with
// add_sample_flags) was given: call it before check_sample_options.
void note_given_flags(const CLI::App& app, SampleOptions& o);

// Checks what can be checked without the model (ValueError naming the flag).
void check_sample_options(const SampleOptions& o);

// The sampler configuration for these options and this model: respacing from
// --sampling-steps (checked against the model's T), variance, guidance and labels checks,
// and for Heun the noise levels (checked against the model's training sigma range).
// `latent`: the model diffuses autoencoder latents (its channels need not be 1 or 3, and x_0
// is clipped only when --clip-x0 was given).
diffusion::SamplerConfig make_sampler_config(const SampleOptions& o, const ModelSource& model, bool latent = false);

// The inputs of --inpaint for a model of H x W x C images.
struct InpaintInputs {
  Tensor image;  // [1, H, W, C] f64 on the CPU, in [-1, 1]
  Tensor mask;   // [1, H, W, 1] f64 on the CPU: 1 known, 0 generate
  std::int64_t known_pixels = 0;
  std::int64_t pixels = 0;         // H * W
  std::vector<std::uint8_t> strip;  // inpaint_input.png's pixels: [H, 3W + padding, C] as make_grid makes them
  int strip_height = 0, strip_width = 0;
};
// Reads and checks IMAGE and MASK (see above for the errors).
InpaintInputs load_inpaint_inputs(const std::string& image_path, const std::string& mask_path, int H, int W, int C);

struct SampleResult {
  Shape shape;                        // [N, H, W, C], or [N, F, H, W, C] for a video model
  std::vector<std::uint8_t> pixels;   // the samples as written
  std::vector<std::int64_t> labels;   // N labels, empty for an unconditional model
  std::string out_dir;
  std::vector<std::string> files;     // every file written, relative to out_dir
  Tensor latents;                     // a latent model's samples before decoding (CPU f32), else undefined
};

// The whole program: check options, check --out, open the model, sample, publish OUT.
// Progress lines go to `log` when given.
SampleResult run_sample(const SampleOptions& o, std::ostream* log = nullptr);
// Same with an already opened model (o.checkpoint is only recorded); `latent` decodes the
// samples of a latent diffusion model (nullptr: a pixel-space model).
class LatentCodec;
// `guide`: the --autoguide model already opened (o.autoguide is then only recorded); nullptr
// opens o.autoguide when set.
SampleResult run_sample(const SampleOptions& o, const ModelSource& model, std::ostream* log = nullptr,
                        const LatentCodec* latent = nullptr, const ModelSource* guide = nullptr);

}  // namespace ddpm::run
