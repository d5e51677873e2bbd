// models/run/autoencoder_run.h: the library behind ddpm-autoencoder, the KL autoencoder of
// latent diffusion (models/autoencoder/autoencoder.h; Rombach et al. 2022).
//
// Training: Adam(W) with LDM's betas (0.5, 0.9) at a constant learning rate (by default;
// --warmup-steps and --lr-schedule linear|cosine --lr-min give the trainer's warm-up and
// decay, models/train/lr_schedule.h) on
//   L = L_rec (l1 | l2, summed over pixels, mean over the batch) + kl_weight * L_KL
// (autoencoder.h); the reparameterisation noise comes from a generator seeded from --seed,
// the weights from Generator(--seed), the batch order from the loader (--seed). No
// perceptual (LPIPS) or adversarial term: both need pretrained networks from outside.
// After the last step the latent scale factor (LDM's scale_by_std) is measured:
//   s = 1 / std(z),  z ~ q(z | x) over the first --scale-images training images (one
//   posterior sample each, from Generator(--seed)), std the unbiased (n - 1) standard
//   deviation over every latent element, as torch.Tensor.std
// and stored in the config, so the diffusion model sees z_diffusion = s * z with unit variance.
//
// An autoencoder folder (autoencoder_io.h, published atomically; an existing one is refused
// unless --overwrite):
//   OUT/model.safetensors, OUT/config.json ("train": data, steps, loss, kl_weight, final
//   losses, the scale's image count), OUT/reconstructions.png (top row: the first 8
//   training images; bottom row: their reconstructions D(mean))
//
// Evaluation: every image of a split (or the first --limit) through x -> D(mean of q(z|x))
// (the posterior mean: deterministic), both quantised to uint8 as the sample writers do;
//   MSE  = mean over pixels and channels of (x_uint8 - x^_uint8)^2   (0..255 scale)
//   PSNR = 10 log10(255^2 / MSE) dB
// printed as a sentence and as one JSON line {"mse", "psnr", "images", ...}. The data gets the
// padding the autoencoder was trained with (its config's train.pad_to_32).
//
// Subcommands of ddpm-autoencoder (ValueError = exit 2):
//   train --data SPEC --out DIR [--pad-to-32 --steps --batch-size --lr --warmup-steps
//         --lr-schedule --lr-min --kl-weight --loss l1|l2
//         --base-channels --channel-mult --num-res-blocks --z-channels --norm-groups
//         --scale-images --log-every --overwrite --gradient-checkpointing]
//   eval  --autoencoder DIR --data SPEC [--split train|test --limit N --batch-size]
//   finetune-temporal --from AE_DIR --data moving-* --frames F --out DIR [--steps
//         --batch-size --lr --loss --train-only decoder|temporal ...]: the temporal decoder of
//         Video LDM (temporal_decoder_run.h)
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/device.h"
#include "engine/optim.h"
#include "models/autoencoder/autoencoder.h"
#include "models/data/dataset.h"
#include "models/run/lr_schedule_flags.h"
#include "models/run/temporal_decoder_run.h"

namespace ddpm::run {

struct AutoencoderTrainArgs {
  std::string data = "fashion-mnist";  // data_spec.h
  bool pad_to_32 = false;
  // --data moving-*: the clips' first frames, each item at its random starting place, are the
  // training images (every frame of a clip is such an image, so the per-frame autoencoder of a
  // latent video run, latent_run.h, learns the frames' distribution); the clips' geometry as
  // ddpm-train's flags (data_spec.h DataOptions). Refused with any other --data.
  int canvas = 32;
  int item_size = 16;
  int moving_items = 1;
  std::string out;
  bool overwrite = false;
  std::int64_t steps = 2000;
  std::int64_t batch_size = 16;
  double lr = 2e-4;
  std::int64_t warmup_steps = 0;       // linear warm-up, then --lr-schedule (lr_schedule_flags.h)
  LrScheduleFlags lr_schedule;
  double kl_weight = 1e-6;             // LDM's KL-f configs
  std::string loss = "l1";
  // Model size (autoencoder.h): small defaults that train on the CPU; f = 4.
  int base_channels = 32;
  std::string channel_mult = "1,2,2";
  int num_res_blocks = 1;
  int z_channels = 4;
  int norm_groups = 8;
  std::int64_t scale_images = 512;     // training images used to measure the latent std
  std::int64_t log_every = 100;
  // nn::Context::recompute (engine/recompute.h): the blocks rerun their forward in the
  // backward; recorded as train.gradient_checkpointing in config.json.
  bool gradient_checkpointing = false;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};

// The config for these flags and a dataset (its channels); ValueError naming the flag.
autoencoder::AutoencoderConfig autoencoder_config_for(const AutoencoderTrainArgs& a, const Dataset& data);

// LDM's autoencoder optimizer (Rombach et al. 2022, the first stage's config): Adam with
// betas (0.5, 0.9) and no weight decay, at learning rate lr. ddpm-autoencoder train and
// finetune-temporal (temporal_decoder_run.h) both use it.
AdamWConfig ldm_autoencoder_adam(double lr);

struct AutoencoderTrainReport {
  std::vector<double> losses, reconstruction, kl;  // one per step
  double seconds = 0;
};
AutoencoderTrainReport train_autoencoder(autoencoder::Autoencoder& ae, const Dataset& data,
                                         const AutoencoderTrainArgs& a,
                                         const std::function<void(const std::string&)>& log = {});

// 1 / std of posterior samples of the first min(count, data.n) images (see above).
double measure_latent_scale(const autoencoder::Autoencoder& ae, const Dataset& data, std::int64_t count,
                            std::int64_t batch_size, std::uint64_t seed);

struct AutoencoderEvalArgs {
  std::string autoencoder, data = "fashion-mnist", split = "test";
  std::int64_t limit = 0;  // > 0: the first `limit` images of the split
  std::int64_t batch_size = 64;
  Device device = Device::cpu();
};
struct AutoencoderEvalReport {
  std::int64_t images = 0;
  double mse = 0, psnr = 0;
};
// MSE and PSNR of the reconstructions of `data` (uint8 scale, see above).
AutoencoderEvalReport evaluate_reconstruction(const autoencoder::Autoencoder& ae, const Dataset& data,
                                              std::int64_t batch_size);

void run_autoencoder_train(const AutoencoderTrainArgs& a, std::ostream& out);
AutoencoderEvalReport run_autoencoder_eval(const AutoencoderEvalArgs& a, std::ostream& out);

struct AutoencoderCommand {
  AutoencoderTrainArgs train;
  AutoencoderEvalArgs eval;
  TemporalFinetuneArgs finetune;
  CLI::App* train_app = nullptr;
  CLI::App* eval_app = nullptr;
  CLI::App* finetune_app = nullptr;
};
void add_autoencoder_subcommands(CLI::App& app, AutoencoderCommand& c);
void run_autoencoder_command(AutoencoderCommand& c, Device device, std::uint64_t seed, std::ostream& out);

}  // namespace ddpm::run
