// models/run/autoguide_run.h: ddpm-sample --autoguide, autoguidance (Karras et al. 2024;
// the math is in models/diffusion/guidance.h): a second, weaker model of the same task
// whose prediction takes the place of classifier-free guidance's unconditional branch,
//   pred = pred_guide + w (pred_main - pred_guide),   w = --guidance-scale.
// The guide is opened like --checkpoint (model_source.h: a run folder, a checkpoint folder,
// a diffusers folder or a model file; EMA weights unless --no-ema, as for the main model).
//
// The guide must describe the same denoising task as the main model, or the difference of
// the two predictions is not the main model's error direction but a mismatch: it must share
// the image size, channels, class conditioning (both unconditional, or the same number of
// classes; then both get the same labels), learned sigma, prediction type (eps, x_0, v), and
// the diffusion (T, noise schedule, zero terminal SNR; or the EDM objective with the same
// sigma_data). Each difference is a ValueError naming it. Its size (channels, depth) and
// training length may differ: that is the point.
//
// What the other guidance flags mean with it: --guidance-scale is w (1 = the main model
// alone, the guide is then never evaluated; 0 = the guide alone); --guidance-interval limits
// it to [LO, HI] in sigma as for CFG; --guidance-rescale phi pulls the guided prediction back
// to the MAIN model's per-sample std (CFG: the conditional branch's). Refused with it: the
// main model itself as guide (w would change nothing) and ControlNet (--control): the guide
// would be a second network without the ControlNet's residuals.
//
// Super-resolution models (super_res_run.h; --low-res or the cascade's --low-res-from) are
// autoguided by another super-resolution model that gets the SAME condition: the same
// upsampled (and --low-res-blur blurred) low-res rows and, with --low-res-noise-level, the same
// augmentation noise, drawn once per batch for both networks (super_res.h
// concat_augmented_conditions). What must agree, because it shapes the condition tensor or
// what the network reads from it: low_res_size (the guide upsamples the same images), the
// concat layout (concat_channels) and whether the model was trained with conditioning
// augmentation (the level plane and level embedding exist only then); and the sampling level
// must lie inside the guide's own --cond-augment range as well as the model's (a level it was
// never trained on is an input it never saw). What need not agree: the --cond-augment MAX
// itself and the training-time blur augmentation (--blur-augment, --blur-sigma): they only
// widen the distribution of conditions a model was trained on, and at sampling both
// networks see one and the same condition, so a guide trained with less augmentation is one
// more way of being a "weaker model of the same task".
//
// Latent diffusion models (Rombach et al. 2022; latent_run.h) are autoguided in latent space:
// both networks denoise the same latents z and only the result is decoded. That is one task
// only when both were trained on the SAME autoencoder: a latent means nothing without its
// encoder, and two autoencoders (even of one architecture, or one retrained) map an image to
// different z. So a latent model takes a latent guide whose autoencoder folder is the same,
// file for file and byte for byte (the folder each run copied at training time; an earlier
// checkpoint of the same run, RUN/checkpoints/step_N, shares it by construction); a pixel
// model takes a pixel guide.
#pragma once

#include <string>

#include "models/diffusion/gaussian_diffusion.h"
#include "models/run/model_source.h"

namespace ddpm::run {

struct SampleOptions;

// Checks what can be checked without the models (ValueError naming the flag).
void check_autoguide_flags(const SampleOptions& o);

// ValueError naming the first difference between `main` and `guide` that autoguidance cannot
// work across (see above); `guide_path` names the guide in the message.
// `low_res_noise_level`: --low-res-noise-level of a super-resolution model (must lie in the
// guide's augmentation range too).
void check_autoguide_fits(const ModelSource& main, const ModelSource& guide, const std::string& guide_path,
                          double low_res_noise_level = 0.0);

// ValueError unless main and guide diffuse the same space (see above): `main_autoencoder` and
// `guide_autoencoder` are their autoencoder folders (find_run_autoencoder; "" for a pixel
// model), compared file for file.
void check_autoguide_autoencoder(const std::string& main_autoencoder, const std::string& guide_autoencoder,
                                 const std::string& guide_path);

// The guide's network as a DenoiseFn (borrowing guide.net: it must outlive the function).
diffusion::DenoiseFn autoguide_denoiser(const ModelSource& guide);

}  // namespace ddpm::run
