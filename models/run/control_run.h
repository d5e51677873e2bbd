// models/run/control_run.h: the library behind ddpm-control (training a ControlNet on a frozen
// ddpm-train run, models/unet/controlnet.h) and ddpm-sample --control (sampling with one).
//
// Training (ddpm-control train --base RUN --hint edges [--data SPEC] --out CTRL; without
// --data the base run's data and padding):
//   - the base is a ddpm-train run folder; its latest checkpoint's EMA weights are loaded and
//     FROZEN (requires_grad off: the tape records nothing for its down path and embedding, and
//     its up path's nodes compute only the data gradients that carry dL/d(residual) back to
//     the ControlNet, never a weight gradient: the ops skip what `need` does not ask for). Only
//     the ControlNet's parameters are in the trainer's ParameterSlab, so AdamW moments, EMA,
//     clipping and checkpoints hold the ControlNet alone;
//   - the ControlNet starts as a copy of the base's encoder with zero convs (controlnet.h);
//   - the objective is the base run's: its schedule (diffusion_steps, noise_schedule,
//     zero_terminal_snr), predict, loss and learn_sigma from its config.json, its class
//     dropout for a class-conditional base (so classifier-free guidance keeps working), and
//     its schedule sampler of t unless --schedule-sampler says otherwise: uniform, or
//     loss-second-moment importance sampling (Nichol & Dhariwal 2021 sec. 3.3: p_t ~
//     sqrt(E[L_t^2]) once every t has 10 recorded losses, each loss weighted 1 / (T p_t)),
//     whose loss history rides in each checkpoint's trainer_state.json ("importance_history")
//     so a resume draws the same t. The resolved setting is config.json's
//     train.schedule_sampler (a run from before it was recorded trained with uniform t).
//     An EDM base (edm.h) trains with the trainer's edm objective and the base's sigma_data,
//     P_mean, P_std: the closure gets c_in x and t = c_noise, so the residuals enter the
//     preconditioned F exactly where they enter a DDPM base's prediction, and sampling goes
//     through ddpm-sample's EDM path (heun by default);
//   - each batch's hint is computed on the host from its pixel images (models/data/hints.h)
//     and handed to the closure beside the batch: x_t -> ControlNet and base, hint ->
//     ControlNet only. The ControlNet runs in training mode (its copied dropout on), the
//     frozen base in evaluation mode (no dropout);
//   - a latent diffusion base (latent_run.h; its run's own copy of the autoencoder, frozen):
//     x_0 = s z, z ~ q(z | image) drawn from the trainer's generator as ddpm-train does, while
//     the hint stays at the IMAGE's resolution f h; the hint embedding gets log2 f stride-2
//     pairs (controlnet.h; widths 16, 32, ..., 16 f for f >= 4) and the control config
//     records hint_downsampling_factor f. Sampling decodes as for the base alone. The base's
//     autoencoder is recorded (base.autoencoder: autoencoder_fingerprint), since a ControlNet
//     learns residuals for THAT autoencoder's latents: the UNet config alone cannot tell two
//     autoencoders of one architecture apart;
//   - refused (ValueError, exit 2): a super-resolution base (controlnet.h), data whose size
//     or channels differ from the base's images (a latent base's: f times its UNet's size),
//     --schedule-sampler loss-second-moment with an EDM base (sigma is drawn, not t).
// The control run folder (published piece by piece atomically, like a ddpm-train run):
//   CTRL/config.json  {"architecture": "controlnet", "hint": "edges",
//                      "controlnet": controlnet_config_to_json, "base": {"run": absolute path,
//                      "model": the base's UNet config, "diffusion": its DiffusionSettings,
//                      "autoencoder" (a latent base only): autoencoder_fingerprint below},
//                      "data": {...}, "train": {...}, "run": {steps, save_every, log_every,
//                      device}}; everything but "run" must match on --resume ("train"
//                      records --warmup-steps, --lr-schedule, --lr-min and, for a decaying
//                      schedule, --steps as lr_decay_steps: lr_schedule_flags.h)
//   CTRL/checkpoints/step_N/{model,ema,optimizer}.safetensors + trainer_state.json: the
//                      ControlNet only (checkpoint.h), diffusers' ControlNetModel names
//   CTRL/metrics.csv, metrics.jsonl, loss.png
//                      as a ddpm-train run's (metrics.h, loss_plot.h): one line per
//                      --log-every steps (window means of loss, per-quartile loss and gradient
//                      norm), loss.png redrawn with each checkpoint
//   CTRL/posthoc/step_N.safetensors
//                      with --posthoc-ema S1,S2: snapshots of the power-function EMAs of the
//                      ControlNet's parameters (the frozen base is not averaged), every
//                      --posthoc-snapshot-every steps (0: --save-every), at the last step and at
//                      the step a stop signal ends the run on, each before that step's
//                      checkpoint (posthoc_flags.h; format posthoc_export.h); the checkpoints
//                      add power_ema.safetensors. "train" records posthoc_ema (a changed list is
//                      refused on resume; a run from before it tracked none), "run" the interval.
//                      ddpm-export --checkpoint CTRL --posthoc-ema SIGMA --out DIR reconstructs
//                      the EMA of any width as a folder DIR/config.json (this run's, plus
//                      "posthoc_ema") + DIR/ema.safetensors that open_control_run, so
//                      ddpm-sample --control and ddpm-control eval --control, take like the run.
// Ctrl-C / SIGTERM (stop_signals.h): the step in progress finishes, its post-hoc snapshot and
// checkpoint are written, and ddpm-control exits with 128 + the signal's number (130, 143);
// --resume latest continues from that step, as ddpm-train does.
// --resume latest is bit-identical: parameters, AdamW moments, EMA, power EMAs, generator, loader
// position and the importance sampler's loss history are restored (the base is re-read from
// its run and must still match the recorded config); the metrics files keep their lines up
// to the checkpoint's step and drop the rest (an interrupted run's), then continue, as
// ddpm-train's do. An existing control run is refused unless --resume or --overwrite (the
// old one is moved aside to CTRL.replaced-<time>).
//
// Sampling (ddpm-sample --checkpoint RUN --control CTRL (--control-image PNG | --control-from
// IMAGES) [--control-scale S]): the ControlNet's EMA weights from CTRL's latest checkpoint;
// its recorded base model config and diffusion settings must equal the opened checkpoint's
// (ValueError naming the differences), and so must its recorded autoencoder (a latent base:
// the same config and weights checksum, wherever the folder now lies; ValueError naming both
// folders and both fingerprints; a pixel-space checkpoint for a latent-trained ControlNet or
// the reverse is refused too; a control run from before the record is checked by its hint
// factor alone). The hint is computed with the run's hint type from
//   --control-image PNG: one image of the model's size and channels (a latent model's decoded
//     images: f times its UNet's size, the autoencoder's channels), the hint of every sample;
//   --control-from X.npz: arr_0 uint8 [M, H, W, C] (e.g. a ddpm-sample samples.npz), or a
//     data spec (data_spec.h, with the control run's --pad-to-32): sample i uses image i mod M;
//     N = M unless --num-samples is given (a data spec is cut to --num-samples images).
// Labels of a class-conditional base: sample i gets the label of the image its hint came from
// (image i mod M) when the source has labels (an npz's arr_1 int64 [M], as ddpm-sample
// writes it; a labelled data spec), as --low-res takes arr_1; --class C still gives every
// sample class C, and a source without labels gets the balanced labels i mod num_classes.
// Labels outside the base's classes are a ValueError. sample_info.json "control"
// "labels_from_images" says which.
// The denoiser closure is base + scale * ControlNet residuals, so every sampler (ddpm, ddim,
// plms, the Karras-level ones, inpainting, guidance) works unchanged; a classifier-free
// guidance's doubled batch repeats the hint. --control-scale S (diffusers'
// controlnet_conditioning_scale) must be finite; 0 gives the base's samples. Outputs:
// OUT/control.png (the hints, grid like grid.png) and sample_info.json "control" {"run",
// "hint", "scale", "source", "images", "labels_from_images"} (null without --control).
// Export to diffusers is not offered: ddpm-export refuses a control run (it is not a UNet),
// except for the post-hoc EMA export above.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "models/data/hints.h"
#include "models/run/control_eval.h"
#include "models/run/lr_schedule_flags.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/unet/controlnet.h"

namespace ddpm::run {

class LatentCodec;
struct ModelSource;
struct SampleOptions;

inline constexpr const char* kControlNetArchitecture = "controlnet";

struct ControlTrainArgs {
  std::string base;                    // a ddpm-train run folder
  std::string hint = "edges";          // hints.h
  // data_spec.h; "" = the base run's data, --pad-to-32 and --toy-count (its config.json)
  std::string data;
  bool pad_to_32 = false;
  std::int64_t toy_count = 1024;
  std::string out;
  std::string resume;  // "", "latest" or a checkpoint folder
  bool overwrite = false;
  std::int64_t steps = 1000;
  std::int64_t batch_size = 16;
  double lr = 1e-4;    // the paper uses 1e-5 for Stable Diffusion; small pixel models take more
  double weight_decay = 0.0;
  std::int64_t warmup_steps = 0;  // linear learning-rate warm-up (trainer.h)
  LrScheduleFlags lr_schedule;    // --lr-schedule, --lr-min (lr_schedule_flags.h): decay to --steps
  double grad_clip = 1.0;
  double ema_rate = 0.999;
  std::int64_t save_every = 500;
  std::int64_t log_every = 10;
  bool gradient_checkpointing = false;  // nn::Context::recompute (engine/recompute.h); may change on resume
  std::uint64_t seed = 0;
  Device device = Device::cpu();
  // How t is drawn: "uniform" | "loss-second-moment"; "" = the base run's setting.
  std::string schedule_sampler;
  // Post-hoc EMA (posthoc_flags.h): --posthoc-ema "0.05,0.10" tracks power-function EMAs of the
  // ControlNet's parameters and snapshots them into CTRL/posthoc/ every --posthoc-snapshot-every
  // steps (0: --save-every); "" = none.
  std::string posthoc_ema;
  std::int64_t posthoc_snapshot_every = 0;
};

// ValueError naming the flag for what can be checked without the files.
void check_control_train_args(const ControlTrainArgs& a);

struct ControlTrainResult {
  std::string run_dir, last_checkpoint;
  std::int64_t steps_done = 0;
  int stopped_by_signal = 0;   // SIGINT / SIGTERM that ended the run early (stop_signals.h), else 0
  std::vector<double> losses;  // the steps taken in this call
};
// The whole training program (see the top of this file); progress lines go to `log`.
ControlTrainResult train_control_run(const ControlTrainArgs& a, std::ostream* log = nullptr);

// A control run opened for sampling.
struct ControlRun {
  std::string dir, checkpoint;
  std::unique_ptr<unet::ControlNet> net;  // EMA weights
  data::HintSpec hint;
  nlohmann::json config;  // config.json
};
// DIR is a control run (its latest checkpoint's EMA weights) or a post-hoc EMA export of one
// (config.json with "posthoc_ema" and ema.safetensors beside it, no checkpoints/; `checkpoint`
// is then DIR). IoError when DIR is neither (or is damaged); ValueError for an unknown hint.
ControlRun open_control_run(const std::string& dir, Device device);
// True when DIR/config.json is a JSON object whose "architecture" is "controlnet" (a control
// run or its post-hoc EMA export); false for anything else, damaged files included.
bool is_control_run_folder(const std::string& dir);
// ValueError listing where the control run's recorded base differs from `model`.
void check_control_fits(const ControlRun& control, const ModelSource& model);

// What identifies a latent base's autoencoder (config.json base.autoencoder): {"folder": its
// absolute path (for messages only), "model": its AutoencoderConfig (LatentCodec::
// run_config_json's, scale_factor included), "weights_crc32": the zlib CRC-32 of its
// model.safetensors file, 8 hex digits}.
nlohmann::json autoencoder_fingerprint(const LatentCodec& ae);
// ValueError naming both folders and fingerprints when the autoencoder `latent` (nullptr: a
// pixel-space model) is not the one the control run recorded (see the top of this file).
void check_control_autoencoder(const ControlRun& control, const LatentCodec* latent, const std::string& checkpoint);

// Sampling inputs (--control ...): the run and the hints [M, H, W, Ch] f32 on the CPU.
struct ControlInputs {
  ControlRun run;
  Tensor hints;
  std::vector<std::int64_t> labels;  // [M] the hint images' labels; empty when the source has none
  bool labels_used = false;          // take_control_labels gave the samples these labels
  std::string source;                // the PNG, npz or data spec
  double scale = 1.0;
};
// Checks the --control flags on their own (ValueError): --control-image / --control-from
// need --control, --control needs exactly one of them, --control-scale finite.
void check_control_flags(const SampleOptions& o);
// Opens the control run and computes the hints for `model` (a latent model's: `latent`, its
// autoencoder, gives the images' size and channels; ValueError when the control run was
// trained for another factor); false (and `c` untouched) when there is no --control.
bool load_control_for(const SampleOptions& o, const ModelSource& model, ControlInputs& c, std::ostream* log = nullptr,
                      const LatentCodec* latent = nullptr);
// The samples to draw: M for --control-from without --num-samples, else --num-samples.
std::int64_t control_num_samples(const SampleOptions& o, const ControlInputs& c);
// A class-conditional model without --class whose hint images have labels: `labels` becomes
// their labels for the n samples (sample i: image i mod M), c.labels_used is set and true is
// returned; otherwise nothing changes. ValueError for a label outside the model's classes.
bool take_control_labels(const SampleOptions& o, const unet::UNetConfig& model, ControlInputs& c, std::int64_t n,
                         std::vector<std::int64_t>& labels);
// The denoiser base + scale * ControlNet for samples [begin, begin + n): hint row i mod M.
diffusion::DenoiseFn control_denoiser(const unet::UNet& base, const ControlInputs& c, std::int64_t begin,
                                      std::int64_t n);
// Writes DIR/control.png (the first n hints) and returns sample_info.json's "control".
nlohmann::json write_control_outputs(const std::string& dir, const ControlInputs& c, std::int64_t n,
                                     std::vector<std::string>& files);

// ddpm-control's subcommands (train, eval: control_eval.h), bound to the args.
struct ControlCommand {
  ControlTrainArgs train;
  ControlEvalArgs eval;
  CLI::App* train_app = nullptr;
  CLI::App* eval_app = nullptr;
};
void add_control_subcommands(CLI::App& app, ControlCommand& c);
// Returns the exit status: 0, or 128 + the signal's number when a stop signal ended training.
int run_control_command(ControlCommand& c, Device device, std::uint64_t seed, std::ostream& out);

}  // namespace ddpm::run
