// models/run/train_options.cpp: the checks of ddpm-train's options and the UNet they
// describe (validate_options, make_unet_config; contracts in train_run.h), apart from the
// run itself (train_run.cpp).
#include <cmath>
#include <exception>
#include <string>
#include <utility>

#include "engine/error.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/schedule.h"
#include "models/run/data_spec.h"
#include "models/run/edm_options.h"
#include "models/run/ict_options.h"
#include "models/run/vdm_options.h"
#include "models/run/int_list.h"
#include "models/run/train_run.h"
#include "models/run/posthoc_flags.h"
#include "models/unet/model_io.h"

namespace ddpm::run {
namespace {

// --joint-images (joint image-video training, models/train/trainer.h): video data, the DDPM
// objective with uniform t, one process; not with a condition a still cannot have.
void validate_joint_images(const TrainOptions& o, int world) {
  DDPM_CHECK(o.joint_images >= 0, "--joint-images must be >= 0 (0 = off), got " << o.joint_images);
  if (o.joint_images == 0) return;
  const std::string m = "--joint-images " + std::to_string(o.joint_images);
  DDPM_CHECK(parse_data_spec(o.data).is_moving(),
             m << " adds still images to batches of clips; --data " << o.data
               << " holds images, not clips (use --data moving-toy or moving-fashion-mnist)");
  DDPM_CHECK(!is_edm(o) && !is_vdm(o),
             m << " supports the DDPM objective only, not --objective " << o.objective);
  DDPM_CHECK(o.schedule_sampler == "uniform",
             m << " draws the stills' timesteps uniformly; --schedule-sampler " << o.schedule_sampler
               << " is not supported with it");
  DDPM_CHECK(!o.first_frame_condition,
             m << " does not apply with --first-frame-condition: a still image is its own first frame and has "
                  "nothing to be conditioned on");
  DDPM_CHECK(!o.text.enabled, m << " does not apply with --text-cond: the captions describe the clips' motion, "
                                   "which a still image does not have");
  DDPM_CHECK(world == 1, m << " runs in one process; this launch has " << world
                           << " (data parallel training with still images is not supported)");
}

}  // namespace

void validate_options(const TrainOptions& o) {
  auto positive = [](const char* flag, double v) { DDPM_CHECK(v > 0, flag << " must be positive, got " << v); };
  auto non_negative = [](const char* flag, double v) { DDPM_CHECK(v >= 0, flag << " must be >= 0, got " << v); };
  positive("--num-channels", o.num_channels);
  positive("--num-res-blocks", o.num_res_blocks);
  positive("--norm-groups", o.norm_groups);
  positive("--diffusion-steps", static_cast<double>(o.diffusion_steps));
  positive("--batch-size", static_cast<double>(o.batch_size));
  positive("--steps", static_cast<double>(o.steps));
  positive("--save-every", static_cast<double>(o.save_every));
  positive("--log-every", static_cast<double>(o.log_every));
  positive("--lr", o.lr);
  positive("--num-samples", o.num_samples);
  positive("--sample-steps", o.sample_steps);
  positive("--max-nonfinite", o.max_nonfinite);
  positive("--toy-count", static_cast<double>(o.toy_count));
  non_negative("--microbatch", static_cast<double>(o.microbatch));
  validate_lr_schedule_flags(o.lr_schedule, o.lr, o.warmup_steps, o.steps);  // --lr-schedule, --lr-min
  non_negative("--grad-clip", o.grad_clip);
  non_negative("--weight-decay", o.weight_decay);
  non_negative("--sample-every", static_cast<double>(o.sample_every));
  non_negative("--image-size", o.image_size);
  non_negative("--super-res", o.super_res);
  DDPM_CHECK(o.super_res == 0 || o.autoencoder.empty(),
             "--super-res does not apply with --autoencoder: a latent model has no pixel-space low-res image to "
             "condition on; train the super-resolution model on pixels");
  DDPM_CHECK(o.cond_augment >= 0 && o.cond_augment <= 1,
             "--cond-augment must be a fraction of the diffusion steps in [0, 1], got " << o.cond_augment);
  DDPM_CHECK(o.cond_augment == 0 || o.super_res > 0,
             "--cond-augment " << o.cond_augment
                               << " needs --super-res: conditioning augmentation noises a super-resolution "
                                  "model's low-res condition");
  blur_augment_options(o);  // --blur-augment, --blur-sigma
  DDPM_CHECK(o.dropout >= 0 && o.dropout < 1, "--dropout must be in [0, 1), got " << o.dropout);
  DDPM_CHECK(o.ema_rate >= 0 && o.ema_rate < 1, "--ema-rate must be in [0, 1), got " << o.ema_rate);
  validate_posthoc_ema_flags(o.posthoc_ema, o.posthoc_snapshot_every);  // --posthoc-ema, --posthoc-snapshot-every
  DDPM_CHECK(o.class_dropout <= 1, "--class-dropout must be in [0, 1], got " << o.class_dropout);
  DDPM_CHECK(!o.out.empty(), "--out is required: the run folder to write");
  DDPM_CHECK(o.resume.empty() || !o.overwrite, "--resume and --overwrite exclude each other");

  validate_objective_options(o);  // --objective and its flags (edm_options.h)
  validate_vdm_options(o);        // the vdm objective's flags (vdm_options.h)
  for (const auto& [flag, value] : {std::pair<const char*, double>{"--snr-gamma", o.snr_gamma},
                                    {"--noise-offset", o.noise_offset},
                                    {"--input-perturbation", o.input_perturbation}}) {
    DDPM_CHECK(std::isfinite(value) && value >= 0, flag << " must be a number >= 0 (0 = off), got " << value);
    DDPM_CHECK(value == 0 || !is_edm(o), flag << " is a DDPM training recipe; --objective edm draws its own noise "
                                                 "levels and weights its loss (EDM's lambda(sigma))");
  }
  DDPM_CHECK(o.snr_gamma == 0 || o.loss == "simple",
             "--snr-gamma reweights the simple MSE loss; --loss " << o.loss << " carries the variational bound's "
                                                                     "own weights");
  // Names that must parse (each parser's ValueError lists the choices).
  diffusion::parse_noise_schedule(o.noise_schedule);
  diffusion::parse_model_mean_type(o.predict);
  DDPM_CHECK(!o.zero_terminal_snr || !is_edm(o),
             "--zero-terminal-snr rescales the discrete DDPM schedule; --objective edm has none (its sigma range is "
             "set by --p-mean and --p-std)");
  DDPM_CHECK(!o.zero_terminal_snr || o.predict != "eps",
             "--zero-terminal-snr needs --predict v (or x0): at the last step alpha_bar = 0, x_t is pure noise and an "
             "eps-prediction cannot give x_0 (Lin et al. 2024, sec. 3.2)");
  const diffusion::LossType loss = diffusion::parse_loss_type(o.loss);
  parse_timestep_embedding_style(o.timestep_embedding);
  DDPM_CHECK(o.schedule_sampler == "uniform" || o.schedule_sampler == "loss-second-moment",
             "--schedule-sampler must be uniform or loss-second-moment, got '" << o.schedule_sampler << "'");
  parse_data_spec(o.data);

  DDPM_CHECK(o.noise_schedule != "linear" || o.diffusion_steps > 20,
             "--diffusion-steps " << o.diffusion_steps << " is too few for the linear schedule (needs > 20)");
  DDPM_CHECK(o.autoencoder.empty() || loss == diffusion::LossType::simple,
             "--loss " << o.loss << " does not apply with --autoencoder: its t = 0 term is the discretised decoder "
                       "likelihood of 8-bit pixels, and a latent model diffuses autoencoder latents; use --loss simple");
  DDPM_CHECK(loss != diffusion::LossType::hybrid || o.learn_sigma,
             "--loss hybrid trains the variance: it requires --learn-sigma");
  DDPM_CHECK(is_edm(o) || is_vdm(o) || is_ict(o) || (o.sample_steps <= o.diffusion_steps && o.diffusion_steps % o.sample_steps == 0),
             "--sample-steps " << o.sample_steps << " does not divide --diffusion-steps " << o.diffusion_steps
                               << " (DDIM respacing needs an integer stride)");
  DDPM_CHECK(o.guidance_scale == 1.0 || o.class_cond || o.text.enabled,
             "--guidance-scale " << o.guidance_scale << " needs a conditional model (--class-cond or --text-cond)");
  DDPM_CHECK(o.class_dropout <= 0 || o.class_cond || o.text.enabled,
             "--class-dropout " << o.class_dropout << " needs a conditional model (--class-cond or --text-cond)");
  DDPM_CHECK(std::isfinite(o.frame_condition_dropout) && o.frame_condition_dropout >= 0 &&
                 o.frame_condition_dropout < 1,
             "--frame-condition-dropout must be a probability in [0, 1), got " << o.frame_condition_dropout);
  DDPM_CHECK(o.frame_condition_dropout == 0 || o.first_frame_condition,
             "--frame-condition-dropout " << o.frame_condition_dropout
                                          << " drops the frame condition of a video model and needs "
                                             "--first-frame-condition");
  check_text_cond_flags(o.text, o.class_cond, o.attention_resolutions.empty());
  DDPM_CHECK(!o.text.enabled || o.super_res == 0, "--text-cond with --super-res is not supported yet");
  const int world = o.comm != nullptr ? o.comm->world_size() : 1;
  validate_joint_images(o, world);
  DDPM_CHECK(o.batch_size % world == 0,
             "--batch-size " << o.batch_size << " is not divisible by the world size " << world
                             << " (the number of processes): it is the global batch, split evenly over the ranks");
  DDPM_CHECK(o.microbatch == 0 || o.microbatch <= o.batch_size,
             "--microbatch " << o.microbatch << " is larger than --batch-size " << o.batch_size);

  const std::vector<int> mult = parse_int_list("--channel-mult", o.channel_mult);
  DDPM_CHECK(!mult.empty(), "--channel-mult must name at least one level");
  if (!o.attention_resolutions.empty()) parse_int_list("--attention-resolutions", o.attention_resolutions);
  for (int m : mult) {
    const long ch = static_cast<long>(o.num_channels) * m;
    DDPM_CHECK(ch % o.norm_groups == 0, "--num-channels " << o.num_channels << " x channel multiplier " << m << " = "
                                                           << ch << " channels are not divisible by the "
                                                           << o.norm_groups << " GroupNorm groups (--norm-groups)");
    if (o.num_head_channels > 0)
      DDPM_CHECK(ch % o.num_head_channels == 0,
                 "--num-head-channels " << o.num_head_channels << " does not divide " << ch << " channels");
    else
      DDPM_CHECK(o.num_heads > 0 && ch % o.num_heads == 0,
                 "--num-heads " << o.num_heads << " does not divide " << ch << " channels");
  }
  const int halvings = static_cast<int>(mult.size()) - 1;
  DDPM_CHECK(o.image_size == 0 || o.image_size % (1 << halvings) == 0,
             "--image-size " << o.image_size << " cannot be halved " << halvings << " times for the "
                             << mult.size() << " levels of --channel-mult " << o.channel_mult);
}

diffusion::BlurAugment blur_augment_options(const TrainOptions& o) {
  diffusion::BlurAugment b;
  b.prob = o.blur_augment;
  // "A,B": two numbers and nothing else (std::stod alone would accept "0.4x").
  const std::size_t comma = o.blur_sigma.find(',');
  bool parsed = comma != std::string::npos && o.blur_sigma.find(',', comma + 1) == std::string::npos;
  for (int part = 0; parsed && part < 2; ++part) {
    const std::string s = part == 0 ? o.blur_sigma.substr(0, comma) : o.blur_sigma.substr(comma + 1);
    std::size_t used = 0;
    try {
      (part == 0 ? b.sigma_min : b.sigma_max) = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    parsed = used > 0 && used == s.size();
  }
  DDPM_CHECK(parsed, "--blur-sigma must be a range A,B of two numbers with 0 < A <= B (sigma ~ U[A, B] in low-res "
                     "pixels), got '" << o.blur_sigma << "'");
  diffusion::validate_blur_augment(b);  // p in [0, 1], 0 < A <= B
  DDPM_CHECK(b.prob == 0 || o.super_res > 0,
             "--blur-augment " << b.prob << " needs --super-res: blurring augmentation blurs a super-resolution "
                                            "model's low-res condition");
  return b;
}

void check_temporal_flags(const TrainOptions& o, bool clips, const std::string& data, const std::string& position) {
  DDPM_CHECK(!o.temporal_conv || clips,
             "--temporal-conv adds convolutions over a video model's frames; --data " << data
                 << " holds images, not clips (video data: e.g. --data moving-toy with --frames 2 or more)");
  DDPM_CHECK(o.temporal_position.empty() || o.temporal_position == "sinusoid" || o.temporal_position == "relative",
             "--temporal-position must be sinusoid or relative, got '" << o.temporal_position << "'");
  DDPM_CHECK(o.temporal_position.empty() || clips,
             "--temporal-position " << o.temporal_position << " positions the frames of a video model; --data "
                                    << data << " holds images, not clips (use e.g. --data moving-toy)");
  const int R = o.temporal_max_distance;
  if (R == -1) return;  // not given
  DDPM_CHECK(R >= 1, "--temporal-max-distance must be at least 1 (frames further apart than R share one bias), got "
                         << R);
  DDPM_CHECK(clips, "--temporal-max-distance " << R << " clips the frame distances of a video model; --data " << data
                                               << " holds images, not clips (use e.g. --data moving-toy)");
  DDPM_CHECK(position == "relative", "--temporal-max-distance " << R
                                                                << " clips the distances of relative frame positions "
                                                                   "and needs --temporal-position relative (the model "
                                                                   "has "
                                                                << (position.empty() ? "sinusoid" : position)
                                                                << " positions)");
}

unet::UNetConfig make_unet_config(const TrainOptions& o, int size, int channels, int num_classes, int frames) {
  DDPM_CHECK(o.image_size == 0 || o.image_size == size,
             "--image-size " << o.image_size << " differs from the data's " << size << "x" << size
                             << (size == 28 ? " (add --pad-to-32 for 32)" : ""));
  unet::UNetConfig c;
  c.image_size = size;
  c.in_channels = channels;
  c.model_channels = o.num_channels;
  c.channel_mult = parse_int_list("--channel-mult", o.channel_mult);
  c.num_res_blocks = o.num_res_blocks;
  c.attention_resolutions =
      o.attention_resolutions.empty() ? std::vector<int>{} : parse_int_list("--attention-resolutions", o.attention_resolutions);
  c.num_heads = o.num_heads;
  c.num_head_channels = o.num_head_channels;
  c.dropout = o.dropout;
  c.learn_sigma = o.learn_sigma;
  c.use_scale_shift_norm = o.use_scale_shift_norm;
  c.resblock_updown = o.resblock_updown;
  c.num_classes = o.class_cond ? num_classes : 0;
  if (o.text.enabled) {
    c.context_dim = o.text.width;
    c.transformer_depth = o.text.transformer_depth;
    c.context_pool_heads = o.text.context_pool_heads();  // --text-pooling: the --text-heads
  }
  c.norm_groups = o.norm_groups;
  c.time_embedding = parse_timestep_embedding_style(o.timestep_embedding);
  c.fourier_features = vdm_fourier_range(o);  // --vdm-fourier-features (vdm_options.h); empty without it
  if (o.super_res > 0) {  // the condition: the low-res image, upsampled (super_res.h)
    DDPM_CHECK(o.super_res < size && size % o.super_res == 0,
               "--super-res " << o.super_res << " must be smaller than the image size " << size
                              << " and divide it (area downsampling by an integer factor)");
    c.low_res_size = o.super_res;
    c.concat_channels = channels;
    c.cond_augment = o.cond_augment;
  }
  // Video (unet.h num_frames): clips of `frames` frames, optionally conditioned on the first.
  DDPM_CHECK(!o.first_frame_condition || frames > 1,
             "--first-frame-condition conditions a video model on each clip's first frame; --data " << o.data
                 << " holds images, not clips (use e.g. --data moving-fashion-mnist)");
  // --autoencoder on clips is latent video (latent_run.h): the frames are encoded one by one.
  DDPM_CHECK(frames <= 1 || o.super_res == 0,
             "--data " << o.data << " holds clips of " << frames << " frames; video models do not support "
                       << "--super-res yet");
  DDPM_CHECK(o.condition_frames == 1 || o.first_frame_condition,
             "--condition-frames " << o.condition_frames
                                   << " sets how many known frames condition the video model and needs "
                                      "--first-frame-condition");
  DDPM_CHECK(!o.first_frame_condition || (o.condition_frames >= 1 && o.condition_frames < frames),
             "--condition-frames must be in [1, " << frames - 1 << "] for clips of --frames " << frames
                                                  << " (at least one frame is generated), got " << o.condition_frames);
  check_temporal_flags(o, frames > 1, o.data, o.temporal_position);
  if (frames > 1) {
    c.temporal_conv = o.temporal_conv;
    if (!o.temporal_position.empty()) c.temporal_position = o.temporal_position;
    if (o.temporal_max_distance > 0) c.temporal_max_distance = o.temporal_max_distance;  // else R = F - 1
    c.num_frames = frames;
    c.first_frame_condition = o.first_frame_condition;
    c.condition_frames = o.first_frame_condition ? o.condition_frames : 0;
  }
  const int levels = static_cast<int>(c.channel_mult.size());
  DDPM_CHECK(size % (1 << (levels - 1)) == 0,
             "the images are " << size << "x" << size << ", which the " << levels << " levels of --channel-mult "
                               << o.channel_mult << " cannot halve " << levels - 1
                               << " times: pad them (--pad-to-32) or use fewer levels");
  c.validate();
  return c;
}

}  // namespace ddpm::run
