// models/run/profile_run.h: the library side of ddpm-profile.
//
// Builds a UNet, warms it up (cuDNN algorithm choice, memory pool growth), then profiles
//   - one training step: Trainer::step(), i.e. batch, q_sample, forward, loss, backward,
//     gradient clipping, AdamW and the EMA update;
//   - one sampling step: one no-grad forward of the network at the sampling batch size;
// with the op profiler (engine/profiler.h). Each step gives a per-op table sorted by time
// (op, calls, time, share of the step, estimated GFLOP and GB, achieved TFLOP/s and GB/s),
// the step's total time, and on CUDA the launches: "N engine kernels + M library calls
// (cuBLAS/cuDNN, each one or more kernels)".
//
// A text-conditioned model (--text-cond, as ddpm-train's: models/text/text_conditioned.h)
// is the UNet with spatial transformers (context_dim = the encoder's width) and its text
// encoder tau_theta, in one parameter slab: each network call runs the encoder on the
// batch's token ids, then the UNet cross-attending to that context, as the denoiser of
// text_conditioned.h does; so the tables show the encoder's embedding, layer_norm, gelu
// and self-attention beside the UNet's cross-attention. The tokens are synthetic (the step's
// cost does not depend on their values): a vocabulary of kProfileVocabSize ids, each sample
// its own pseudo-random row of context_length ids.
//
// Times are attributed to the outermost op (an op's backward includes the ops it calls).
// The row "(outside ops)" is the rest of the step: host work, host-device copies and, on
// CUDA, the device idling between launches. So the shares add up to 100%.
//
// A video model (--frames F, num_frames = F: the space-time factorised UNet of unet.h) takes
// batches of clips [B, F, H, W, C] in both steps; its tables add the temporal blocks'
// `transpose` rows and their attention calls (sequences of F tokens, one per pixel).
//
// --checkpoint SRC profiles a trained model as it is: SRC is anything open_model
// (model_source.h) opens (a run or checkpoint folder, a model file with config.json, a
// diffusers folder), its network and text encoder with their weights (the EMA set when there
// is one), at the run's training batch size (config.json "train.batch_size"; --batch-size
// overrides) and T. The model flags are then refused by name: the network is SRC's. The
// steps are still the DDPM loss on synthetic data: an EDM or VDM run's network costs the same
// per call, but its loss arithmetic is not the one profiled. Inputs the network takes beside
// x_t (a super-resolution model's low-res image, a video model's first-frame condition) are
// synthetic noise of their shape (a conditioning-augmented model's level plane: level 0); a
// guidance-embedded model gets w = 0. A latent run's UNet is profiled on latents: its
// autoencoder is not.
#pragma once

#include "models/run/int_list.h"

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/device.h"
#include "engine/profiler.h"
#include "models/run/text_flags.h"
#include "models/text/text_encoder.h"
#include "models/unet/unet.h"

namespace ddpm::run {

// The synthetic vocabulary of a profiled text encoder (rows of its token embedding).
constexpr int kProfileVocabSize = 1000;

struct ProfileOptions {
  // Non-empty: open_model(checkpoint) supplies the network (and text encoder); `model` and
  // `text` are then filled from it by profile_model (the report shows what was profiled).
  std::string checkpoint;
  unet::UNetConfig model;
  // text_cond: the model's text encoder (its width is model.context_dim, its vocab_size
  // kProfileVocabSize); ignored otherwise.
  bool text_cond = false;
  text::TextEncoderConfig text;
  std::int64_t batch_size = 128;
  std::int64_t sample_batch_size = 0;  // 0: the training batch size
  std::int64_t diffusion_steps = 1000;
  int warmup_steps = 1;  // untimed training steps (and sampling forwards) first
  Device device = Device::cpu();
  std::uint64_t seed = 0;
};

struct StepProfile {
  std::string name;          // "train" or "sample"
  std::int64_t batch = 0;
  ProfileResult result;      // raw records, total time, launch counts
  std::vector<OpSummary> ops;  // per op name, longest first
  double outside_ms() const;   // total - time inside ops (never negative)
};

struct ProfileReport {
  ProfileOptions options;
  std::int64_t num_parameters = 0;
  StepProfile train, sample;
};

// Runs the warm-up and the two profiled steps.
ProfileReport profile_model(const ProfileOptions& options);

// The human-readable table of one step, and of the whole report.
std::string format_step(const StepProfile& step);
std::string format_report(const ProfileReport& report);
// The report as one JSON object.
std::string report_json(const ProfileReport& report);

// --- the command line ------------------------------------------------------------------
// Model flags are those of ddpm-train. A value left at its sentinel (-1 or "") takes the
// device default: the DDPM CIFAR-10 network at batch 128 on CUDA; on the CPU a small
// network (32 channels, channel-mult 1,2, one residual block per level, batch 4), since a
// CIFAR-10 step takes minutes there.
// (--device, --seed and --config are the common flags of apps/common/cli.h, added and
// resolved by the program; this library does not depend on apps/.)
struct ProfileFlags {
  int image_size = 32;
  int num_channels = -1;
  std::string channel_mult;           // "1,2,2,2"
  int num_res_blocks = -1;
  std::string attention_resolutions = "16";
  int num_heads = 1;
  int num_head_channels = -1;
  double dropout = 0.1;
  bool learn_sigma = false;
  bool use_scale_shift_norm = false;
  bool resblock_updown = false;
  bool class_cond = false;
  int num_classes = 10;
  int frames = 0;  // --frames: 0 = an image model; F >= 2 = a video model of F-frame clips
  int norm_groups = 32;  // --norm-groups: GroupNorm groups (must divide every level's channels)
  std::string checkpoint;  // --checkpoint SRC: profile SRC's network (see the top of this file)
  // The model-shaping flags the parse saw (note_profile_flags), refused with --checkpoint.
  std::vector<std::string> model_flags_given;
  TextCondFlags text;  // ddpm-train's text flags (text_flags.h)
  std::int64_t batch_size = -1;
  std::int64_t sample_batch_size = 0;
  std::int64_t diffusion_steps = 1000;
  int warmup = 1;
  bool json = false;
};

void add_profile_flags(CLI::App& app, ProfileFlags& flags);
// After the parse: records which model-shaping flags were given (as ddpm-train's
// note_init_from_flags does), so --checkpoint can refuse them by name.
void note_profile_flags(const CLI::App& app, ProfileFlags& flags);
// Applies the device defaults and validates; ValueError on bad values.
ProfileOptions resolve_profile_options(const ProfileFlags& flags, Device device, std::uint64_t seed);
// What ddpm-profile does after parsing: profile, then print the tables (or JSON) to out.
void profile_main(const ProfileFlags& flags, Device device, std::uint64_t seed, std::ostream& out);


}  // namespace ddpm::run
