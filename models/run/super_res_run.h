// models/run/super_res_run.h: super-resolution models in the run layer (cascaded diffusion,
// Ho et al. 2021; ADM's SuperResModel), i.e. what ddpm-train --super-res and ddpm-sample
// --low-res need beyond the UNet (unet.h concat_channels / low_res_size) and the degradation
// maps (models/diffusion/super_res.h).
//
// Training (ddpm-train --super-res L): each batch's condition is super_res_condition(x_0, L)
// (area down to L x L, bilinear back up), given to the trainer as train::Batch::cond; the
// model section of config.json records "super_res" {"low_res_size", "concat_channels"}. The
// sample grids during training condition on the first --num-samples training images (fixed,
// so the grids of successive steps are comparable). --autoencoder is refused (a latent model
// has no pixel-space low-res image); L must be >= 1, below the image size and divide it.
//
// Sampling (ddpm-sample --checkpoint SR_RUN --low-res PATH): PATH is
//   - a .npz: "arr_0" uint8 [M, L, L, C] (what ddpm-sample writes for a base model: the
//     cascade) and optionally "arr_1" int64 [M] labels; or
//   - a PNG of L x L with C channels (one image, M = 1).
// Pixels map to [-1, 1] as the training data (v / 127.5 - 1), then bilinear_upsample to the
// model's size. N = M unless --num-samples is given (then N <= M: the first N images). The
// labels of a class-conditional SR model come from arr_1 when present and --class is not
// given (each high-res sample keeps its base sample's class), else as for plain sampling.
// --low-res-noise-level f (conditioning augmentation, models/diffusion/super_res.h): only for
// a model trained with --cond-augment MAX, f in [0, MAX]; sample_info.json's "low_res" then
// adds "noise_level" f and "aug_level" a = round(f (T - 1)).
// --low-res-blur SIGMA (models/diffusion/blur_augment.h): cond = bilinear_upsample(G_SIGMA *
// low, H), the low-res images blurred (every one, with the same sigma) before the upsample,
// as a --blur-augment model's training conditions are; SIGMA = 0 is no blur (bit-identical).
// Recorded as "blur_sigma" in "low_res" (always, 0 when off).
// The cascade in one call (ddpm-sample --checkpoint SR_RUN --low-res-from BASE, models/run/
// cascade_run.h) samples BASE first and gives its samples.npz to this same --low-res path.
// Autoguidance (--autoguide GUIDE, autoguide_run.h) works here: the guide is another
// super-resolution model of the same layout and gets the same condition (low_res_denoisers).
// Refused with a ValueError (exit 2): --low-res for a model without super-resolution, a
// super-resolution model without --low-res (or --low-res-from), --low-res-blur for a model without
// super-resolution, a size or channel mismatch (naming both),
// --num-samples above M, labels outside [0, num_classes), --inpaint and --classifier.
// Outputs: OUT/low_res.png (the inputs, each pixel repeated as a k x k block, k = H / L, in
// a grid like grid.png) and sample_info.json "low_res" {"path", "low_res_size", "images",
// "labels_from_low_res"} (null for other models).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/data/dataset.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/unet/unet.h"

namespace ddpm::run {

struct SampleOptions;

// The condition of the training sample grids: super_res_condition of dataset images
// 0, 1, ..., n - 1 (cycling when n exceeds the dataset), [n, H, H, C] f32 on `device`; a
// conditioning-augmented model's gets the level plane of level 0 and no noise ([n, H, H,
// C + 1], super_res.h with_level_plane), so the grids draw nothing from the trainer.
Tensor grid_condition(const Dataset& data, int n, const unet::UNetConfig& model, Device device);

struct LowResInputs {
  std::string path;
  std::int64_t count = 0;             // M images in the file
  int size = 0, channels = 0;         // L, C
  std::vector<std::uint8_t> pixels;   // uint8 [M, L, L, C]
  std::vector<std::int64_t> labels;   // [M] from arr_1, or empty
  Tensor cond;                        // [M, H, H, C] f32 on the CPU: the (blurred,) upsampled images in [-1, 1]
  // Conditioning augmentation (super_res.h): --low-res-noise-level f and its level
  // a = round(f (T - 1)) (0 and 0 for a model trained without it).
  bool augmented = false;
  double noise_level = 0.0;
  std::int64_t aug_level = 0;
  double blur_sigma = 0.0;  // --low-res-blur: cond holds the blurred images' upsample (0 = unblurred)
};

// The model checks of the low-res flags without reading any file: false for a model without
// super-resolution (which must then have none of them), a ValueError for a bad flag. `low_res_flag`
// is where the images come from (--low-res, or the cascade's --low-res-from BASE; "" = none,
// refused for a super-resolution model). load_low_res_for runs it first; the cascade
// (cascade_run.h) before it samples its base model.
bool check_low_res_flags(const SampleOptions& o, const unet::UNetConfig& model, const std::string& low_res_flag);
// Checks --low-res and --low-res-noise-level against the model (see the top of this file
// and sample_run.h) and loads the images; returns false (and leaves `low` empty) for a model
// without super-resolution and no --low-res. num_timesteps: the model's T (for the level).
bool load_low_res_for(const SampleOptions& o, const unet::UNetConfig& model, LowResInputs& low,
                      std::int64_t num_timesteps, std::ostream* log = nullptr);
// The network closures of batch rows [begin, begin + n): net(concat(x, cond rows)) and, when
// `guide` is set (autoguidance, autoguide_run.h), the guide's with the SAME condition: the same
// upsampled rows and, for a conditioning-augmented model, the same augmentation noise (drawn
// once from `gen` at the first call of either, super_res.h concat_augmented_conditions).
// `.guide` is empty without a guide.
struct LowResDenoisers {
  diffusion::DenoiseFn main, guide;
};
LowResDenoisers low_res_denoisers(const LowResInputs& low, const diffusion::DenoiseFn& net,
                                  const diffusion::DenoiseFn& guide, std::int64_t begin, std::int64_t n, Device device,
                                  const std::vector<double>& alphas_cumprod, Generator& gen);
// The number of samples to draw: M, or --num-samples when given (checked <= M).
std::int64_t low_res_num_samples(const SampleOptions& o, const LowResInputs& low);
// Replaces `labels` by the file's for a class-conditional model without --class; returns
// whether it did.
bool take_low_res_labels(const SampleOptions& o, const unet::UNetConfig& model, const LowResInputs& low,
                         std::int64_t n, std::vector<std::int64_t>& labels);
// Writes DIR/low_res.png for the first n inputs at the model's size (nearest); returns its name.
std::string write_low_res_png(const std::string& dir, const LowResInputs& low, std::int64_t n, int size);
nlohmann::json low_res_info(const LowResInputs& low, std::int64_t n, bool labels_from_low_res);

// ValueError "<what> does not apply to <checkpoint>: it is a super-resolution model ..." for
// the evaluations that would need the low-res image of every test image (bits/dim, NLL).
void refuse_super_res_model(const unet::UNetConfig& model, const std::string& checkpoint, const std::string& what);

}  // namespace ddpm::run
