// models/run/train_run.h: one whole training run (ddpm-train is a thin shell over it).
//
// train_run(options):
//   1. validate the options (ValueError naming the flag: exit 2 in the app)
//   2. load the data (--data, --pad-to-32), derive the image size and channels
//   3. prepare the run folder: refuse one that already holds a run unless --resume or
//      --overwrite (the old run is then moved aside to DIR.replaced-<time>, never deleted);
//      write config.json
//   4. build the UNet, pack its slab, make the trainer; on --resume, check that the saved
//      config equals this one (every differing name listed) and load the checkpoint
//   5. loop: trainer.step(); metrics every --log-every steps (loss.png redrawn with each
//      checkpoint); EMA samples (DDIM,
//      --sample-steps, fixed seed; Heun with --sample-steps levels for --objective edm) every --sample-every; a checkpoint every --save-every
//      and at the end; with --posthoc-ema a snapshot of the power EMAs every
//      --posthoc-snapshot-every (default --save-every) and at the end (posthoc_export.h)
// Non-finite losses: the trainer skips such a step without touching the weights; after
// --max-nonfinite consecutive skipped steps (default 1) the run stops with an Error naming
// the step, and no checkpoint is written after the last good one.
//
// Stop signals (stop_signals.h): SIGINT or SIGTERM ends the run after the current step with
// a checkpoint of it (no final sample grid) and TrainResult::stopped_by_signal set; with
// several ranks they agree on it first, so all stop after the same step.
// Resume is bit-identical: the checkpoint holds the parameters, the AdamW moments and step
// count, the EMA (and the power EMAs of --posthoc-ema), the generator (seed, offset: it also drives dropout) and the loader
// position, and (with --schedule-sampler loss-second-moment) the importance sampler's loss
// history, so steps N+1.. are the ones an uninterrupted run takes.
//
// Data parallel (options.comm of world W > 1, one process per rank, e.g. under mpirun): every
// rank loads the data and builds the model; --batch-size is the GLOBAL batch and must be
// divisible by W (ValueError naming both). Rank 0 alone prepares the run folder and writes
// config.json (with "run.world_size"), metrics, loss.png, sample grids and checkpoints; the
// others log nothing and learn the checkpoint to resume from by a broadcast from rank 0, which
// is also the barrier that keeps them from reading a folder rank 0 is still preparing. Every
// rank resumes from the same checkpoint; the trainer (models/train/trainer.h) keeps the
// weights identical on all ranks and the run independent of W (dropout aside). The ranks
// meet at a barrier at the end, so the last checkpoint exists when train_run returns.
//
// Latent diffusion (--autoencoder DIR, models/run/latent_run.h): the UNet is built for the
// latent (image size / f, z_channels), each batch is encoded by the frozen autoencoder and
// scaled by s, the run folder gets a copy of the autoencoder (RUN/autoencoder/) and
// config.json an "autoencoder" section; sample grids are decoded to pixels (no x_0 clipping:
// latents are not confined to [-1, 1]). Clips (--data moving-*) are encoded frame by frame,
// joint stills after them (latent video, latent_run.h).
//
// Super-resolution (--super-res L, models/run/super_res_run.h): the UNet takes x_t
// concatenated with the batch's x_0 area-downsampled to L x L and bilinearly upsampled back
// (train::Batch::cond); config.json's model section records "super_res". --autoencoder is
// refused with it. --cond-augment MAX (CDM's Gaussian conditioning augmentation,
// models/diffusion/super_res.h) noises each condition at a level a ~ U{0, ..., round(MAX
// (T - 1))} of the model's schedule and gives a to the UNet (super_res "cond_augment"); the
// draws come from the trainer's generator inside the batch provider, after the batch's own
// draws (trainer.h: "the provider's draws"). 0 (the default) is off: no draws, no parameters.
// --blur-augment P --blur-sigma A,B (CDM's blurring augmentation, models/diffusion/
// blur_augment.h) blurs each low-res condition with probability P by a Gaussian of sigma ~
// U[A, B] before the upsample; 2N draws per batch, before --cond-augment's; config.json's
// train section records "blur_augment" P and, when P > 0, "blur_sigma" [A, B] (a resume
// with other values is refused; a run without the keys had P = 0). The sample grids
// condition on clean low-res images. P = 0 (the default) is off: no draws.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "engine/dist/communicator.h"
#include "models/diffusion/blur_augment.h"
#include "models/run/lr_schedule_flags.h"
#include "models/run/text_flags.h"
#include "models/unet/unet.h"

namespace ddpm::run {

struct TrainOptions {
  // Data.
  std::string data = "fashion-mnist";
  bool random_flip = false;
  bool pad_to_32 = false;
  std::int64_t toy_count = 1024;  // images of --data toy
  // Video clips of --data moving-* (data_spec.h, models/data/moving.h); refused with other data.
  int frames = 8;        // --frames per clip
  int canvas = 32;       // --canvas: clips are canvas x canvas
  int item_size = 16;    // --item-size: items are resized to item_size x item_size
  int moving_items = 1;  // --moving-items per clip
  std::string autoencoder;        // latent diffusion: a ddpm-autoencoder folder (latent_run.h)
  int super_res = 0;              // > 0: a super-resolution model conditioned on this low-res size (super_res_run.h)
  double cond_augment = 0.0;      // --super-res only: the largest conditioning-augmentation level, a fraction of T
  double blur_augment = 0.0;      // --super-res only: probability of blurring the low-res condition (blur_augment.h)
  std::string blur_sigma = "0.4,0.6";  // --blur-sigma A,B: the blur's sigma ~ U[A, B], in low-res pixels
  // Video data (clips of F frames) trains a video UNet (unet.h num_frames = F); with this flag
  // it is conditioned on each clip's first frame (Emu Video, models/run/video_run.h).
  bool first_frame_condition = false;
  // --condition-frames K: with it, each clip is conditioned on k ~ Uniform{1..K} of its own
  // first frames (unet.h condition_frames; video_run.h training_frames_condition).
  int condition_frames = 1;
  // --frame-condition-dropout P: with --first-frame-condition, each clip's condition is the
  // null one (all zeros) with probability P, so ddpm-sample --frame-guidance-scale can guide
  // on the frames (video_run.h "Frame guidance"). 0 = off, no draw.
  double frame_condition_dropout = 0.0;
  // --temporal-conv: video data only; the video UNet gets a temporal convolution after every
  // resnet (unet.h temporal_conv, models/unet/temporal_conv.h).
  bool temporal_conv = false;
  // --temporal-position sinusoid|relative: how the video model's temporal attention tells
  // frames apart (unet.h temporal_position). Empty = not given: sinusoid, or the --init-from
  // video model's own.
  std::string temporal_position;
  // --temporal-max-distance R: with --temporal-position relative, frame distances beyond R
  // share the rows of +-R (unet.h temporal_max_distance). -1 = not given: R = F - 1, or the
  // --init-from video model's own R.
  int temporal_max_distance = -1;
  // Joint image-video training (Ho et al. 2022 sec. 3; models/train/trainer.h): each step
  // also trains on this many still images, the first frames of randomly drawn clips. 0 = off.
  std::int64_t joint_images = 0;
  // Model (0 / empty: derived or default).
  int image_size = 0;  // must equal the data's size after padding when given
  int num_channels = 128;
  std::string channel_mult = "1,2,2,2";
  int num_res_blocks = 2;
  std::string attention_resolutions = "16";  // "" for none
  int num_heads = 1;
  int num_head_channels = -1;
  int norm_groups = 32;
  double dropout = 0.1;
  bool learn_sigma = false;
  bool use_scale_shift_norm = false;
  bool resblock_updown = false;
  bool class_cond = false;
  // --text-cond: text conditioning by cross-attention (models/text/text_conditioned.h):
  // the data's captions (generated for labelled data, models/data/captions.h; an image
  // folder's metadata.jsonl) through a text encoder of text.layers layers of width
  // text.width (the UNet's context_dim) with text.heads heads, trained jointly; every
  // attention resolution's block becomes a spatial transformer of text.transformer_depth
  // blocks (models/run/text_flags.h).
  TextCondFlags text;
  std::string timestep_embedding = "ddpm";
  // Diffusion. objective "edm" (models/run/edm_options.h) replaces the next five DDPM-only
  // choices by sigma_data, p_mean and p_std.
  std::string objective = "ddpm";
  double sigma_data = 0.5, p_mean = -1.2, p_std = 1.2;
  // objective "ict" (models/run/ict_options.h) shares the three above (p_mean / p_std at iCT's
  // -1.1 / 2.0 unless given) and adds the curriculum and the distance.
  std::string ict_discretization = "10,1280";  // --ict-discretization S0,S1
  std::string consistency_loss = "pseudo-huber";
  // objective "vdm" (models/run/vdm_options.h): gamma(t) = -log SNR(t) and the loss's steps.
  std::string vdm_schedule = "fixed";
  double gamma_min = -13.3, gamma_max = 5.0;
  std::int64_t vdm_steps = 0;
  bool vdm_learn_endpoints = false;   // --vdm-learn-endpoints: gamma_0, gamma_1 trained on the VLB
  std::string vdm_fourier_features;   // --vdm-fourier-features N_MIN,N_MAX ("" = none)
  std::vector<std::string> objective_flags_given;  // note_objective_flags: the flags the parse saw
  std::int64_t diffusion_steps = 1000;
  std::string noise_schedule = "linear";
  std::string predict = "eps";
  bool zero_terminal_snr = false;  // --zero-terminal-snr (Lin et al. 2024; needs --predict v or x0)
  std::string loss = "simple";
  std::string schedule_sampler = "uniform";
  // Training recipes (models/diffusion/training_recipes.h; DDPM objective; 0 = off).
  double snr_gamma = 0.0;           // --snr-gamma: Min-SNR-gamma loss weighting (Hang et al. 2023)
  double noise_offset = 0.0;        // --noise-offset: offset noise (Guttenberg 2023)
  double input_perturbation = 0.0;  // --input-perturbation (Ning et al. 2023)
  // Training.
  std::int64_t batch_size = 64;
  std::int64_t microbatch = 0;
  bool gradient_checkpointing = false;  // nn::Context::recompute (engine/recompute.h)
  double lr = 1e-4;
  double weight_decay = 0.0;
  std::int64_t warmup_steps = 0;
  LrScheduleFlags lr_schedule;  // --lr-schedule, --lr-min (lr_schedule_flags.h): decay to --steps
  double grad_clip = 1.0;
  double ema_rate = 0.9999;
  // Post-hoc EMA (models/run/posthoc_export.h): relative widths of the power-function EMAs to
  // track ("0.05,0.10"; empty = off) and their snapshot interval (0: --save-every).
  std::string posthoc_ema;
  std::int64_t posthoc_snapshot_every = 0;
  std::int64_t steps = 1000;
  std::int64_t save_every = 1000;
  std::int64_t sample_every = 1000;  // 0: only at the end
  std::int64_t log_every = 10;
  double class_dropout = -1;  // < 0: 0.1 with --class-cond or --text-cond (the empty caption), else 0
  int max_nonfinite = 1;
  // Sample grids.
  int num_samples = 16;
  int sample_steps = 50;  // DDIM steps
  double guidance_scale = 1.0;
  // Fine-tuning (models/run/finetune.h): start from this model's weights, taking its
  // architecture, diffusion settings and conditioning; "" = a new model.
  std::string init_from;
  std::string init_weights;                         // "" (EMA when there is one) | "ema" | "raw"
  std::vector<std::string> init_from_flags_given;  // note_init_from_flags: the flags the parse saw
  // LoRA (models/run/lora_run.h): > 0 trains rank-r adapters on SRC's attention projections,
  // SRC frozen; alpha <= 0 means alpha = rank (the update is scaled by alpha / rank).
  int lora_rank = 0;
  double lora_alpha = 0.0;
  // --train-only temporal (finetune.h; AnimateDiff's motion-module training): a video
  // fine-tune trains its temporal blocks (and conv_in with --first-frame-condition) alone,
  // every other weight frozen; "" = every weight trains.
  std::string train_only;
  // Run folder.
  std::string out;
  std::string resume;  // "", "latest" or a checkpoint folder
  bool overwrite = false;
  std::string preset = "auto";
  // Common.
  std::uint64_t seed = 0;
  Device device = Device::cpu();
  std::FILE* log = stderr;  // progress and messages; nullptr: silent (always on ranks > 0)
  dist::Communicator* comm = nullptr;  // data-parallel ranks; nullptr: one process
};

// (validate_options and make_unet_config live in train_options.cpp.)
// Throws ValueError naming the flag for every invalid value or combination that can be
// seen without the data: non-positive sizes, a sampling respacing that does not divide
// --diffusion-steps, channels not divisible by the groups, heads that do not divide the
// channels, guidance without class conditioning, hybrid loss without --learn-sigma, ...
void validate_options(const TrainOptions& options);

// The UNet of these options for images of `size` x `size` x `channels` with `num_classes`
// classes (used when --class-cond), a video UNet of `frames` frames per clip when frames > 1;
// ValueError naming the flag when it cannot be built (e.g. an image size the levels cannot
// halve, --first-frame-condition without video data).
unet::UNetConfig make_unet_config(const TrainOptions& options, int size, int channels, int num_classes,
                                  int frames = 1);

// The flags of a video model's frame layers (--temporal-conv, --temporal-position,
// --temporal-max-distance) against the data, shared by make_unet_config and a fine-tune's
// finetune_unet_config: `clips` = `data` holds clips (a video model is built); `position` =
// the frame positions the model gets ("relative", or "sinusoid"/"" for the embedding: the
// flag's value, or a video --init-from source's). ValueError naming the flag: an unknown
// --temporal-position, either flag on images, --temporal-max-distance below 1 or without
// relative positions.
void check_temporal_flags(const TrainOptions& options, bool clips, const std::string& data,
                          const std::string& position);

// --blur-augment and --blur-sigma parsed and checked (ValueError naming the flag: P outside
// [0, 1], a range that is not two numbers A,B with 0 < A <= B, P > 0 without --super-res).
diffusion::BlurAugment blur_augment_options(const TrainOptions& options);

// Every option that defines the run (model, diffusion, data, training): config.json. The
// run-control flags (--steps, --save-every, --out, --device, ...) are under "run" and may
// change on resume; everything else must match the checkpoint's config. A decaying
// --lr-schedule also records --steps ("train.lr_decay_steps"), which then may not change.
nlohmann::json run_config_json(const TrainOptions& options, const unet::UNetConfig& model);

struct TrainResult {
  std::string run_dir;
  std::string last_checkpoint;  // the folder of the final checkpoint
  std::int64_t steps_done = 0;
  double last_loss = 0;
  int stopped_by_signal = 0;  // SIGINT / SIGTERM when a stop signal ended the run early (stop_signals.h)
};

TrainResult train_run(const TrainOptions& options);

}  // namespace ddpm::run
