// models/run/latent_run.h: diffusion in the latent space of a frozen autoencoder (Rombach et
// al. 2022, sec. 3.2), as ddpm-train --autoencoder and ddpm-sample use it.
//
// The diffusion model never sees pixels: a training batch x_0 [B, H, W, C] in [-1, 1] becomes
//   z_0 = s * (mean + exp(logvar / 2) * eps),   eps ~ N(0, I) from the TRAINER's generator
// [B, H/f, W/f, z_channels], s the autoencoder's scale_factor (1 / std of the latents, so
// z_0 has about unit variance like pixel data). A posterior SAMPLE (not the mean) is used, as
// LDM's get_first_stage_encoding does: it is a little data augmentation and matches the
// decoder's training inputs. Drawing eps from the trainer's generator keeps a resumed run
// bit-identical (the checkpoint restores that generator). Samples go the other way:
//   x_0 = D(z_0 / s)  (pixels; the writers clip to [-1, 1] and quantise to uint8).
// No gradient reaches the autoencoder (its parameters are frozen; encode and decode run under
// NoGradGuard).
//
// Latent video (Blattmann et al. 2023, "Align your Latents"): a clip x_0 [N, F, H, W, C] is
// encoded frame by frame, z_0 [N, F, H/f, W/f, z]: the frames are folded into the batch
// ([N F, H, W, C], the autoencoder is a 2D network), encoded, and unfolded. So a clip's codes
// are exactly its frames' codes, and encode's eps draw is the one of the N F frames as a batch
// of images. decode unfolds the same way: every frame of a sampled latent clip is decoded.
// With a temporal decoder (ddpm-sample --decoder DIR, use_clip_decoder; autoencoder.h
// "Temporal decoder") clips are decoded clip-wise instead, x_0 = D_temporal(z_0 / s), the
// frames of a clip mixed by its temporal layers. DIR must come from this run's autoencoder
// (ddpm-autoencoder finetune-temporal --from it): the same config apart from temporal_frames
// (scale factor included) and the same encoder and quant_conv weights, exactly, so the
// latents the run diffuses are the ones the decoder was fine-tuned on; and its
// temporal_frames must equal the length of the clips decoded. Images (4-D) still go through
// the run's own decoder.
//
// A latent run folder holds a COPY of the autoencoder (RUN/autoencoder/, autoencoder_io.h) so
// it is self-contained, and its config.json an "autoencoder" section:
//   {"folder": "autoencoder", "posterior": "sample", "model": <AutoencoderConfig, with s>}
// What makes no sense in latent space is refused (ValueError, exit 2 in the apps): RePaint
// inpainting (its mask is in pixels), bits/dim (the bound is over latents, not pixels: not
// comparable with pixel models), classifier guidance with a ddpm-classifier folder (trained
// on noisy pixels), and the VLB losses hybrid / vlb whose t = 0 term is the discretised
// Gaussian decoder of 8-bit pixels.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/rng.h"
#include "models/autoencoder/autoencoder_io.h"

namespace ddpm::run {

inline constexpr const char* kRunAutoencoderFolder = "autoencoder";

class LatentCodec {
 public:
  // Loads the autoencoder folder `dir` on `device` and freezes its parameters.
  LatentCodec(const std::string& dir, Device device);

  // Each also takes clips [N, F, ...] (5-D), frame by frame (see above).
  // x0 [B, H, W, C] -> s * z with z ~ q(z | x0), eps drawn from gen.  [B, H/f, W/f, z]
  Tensor encode(const Tensor& x0, Generator& gen) const;
  // x0 [B, H, W, C] -> s * mean of q(z | x0), no draw  [B, H/f, W/f, z] f32. For editing
  // (ddpm-edit): an edit must be a deterministic function of its input (invert twice, get the
  // same latents; a reconstruction error that measures the diffusion, not a fresh posterior
  // draw), and the mean is the posterior's most likely code; the sample's augmentation only
  // matters in training.
  Tensor encode_mean(const Tensor& x0) const;
  // z_scaled [B, h, w, z] (any float dtype) -> D(z_scaled / s)  [B, h f, w f, C] f32.
  // Clips [N, F, h, w, z]: with a clip decoder (or a temporal autoencoder of its own) D is
  // the temporal decoder on whole clips (F must be its temporal_frames); else frame by frame.
  Tensor decode(const Tensor& z_scaled) const;

  // Loads the temporal decoder folder `dir` (frozen) for decoding clips; ValueError naming
  // --decoder when it is not an autoencoder folder, does not match this codec's autoencoder
  // (config apart from temporal_frames, or encoder / quant_conv weights) or has no temporal
  // decoder.
  void use_clip_decoder(const std::string& dir);
  bool has_clip_decoder() const { return clip_decoder_.model != nullptr; }
  const std::string& clip_decoder_source() const { return clip_decoder_source_; }
  // The clip length the decoder takes: the clip decoder's, or the own autoencoder's
  // temporal_frames (0: frames decoded one by one, any count).
  int clip_frames() const;

  const autoencoder::Autoencoder& model() const { return *folder_.model; }
  const autoencoder::AutoencoderConfig& config() const { return folder_.model->config(); }
  int factor() const { return config().downsampling_factor(); }
  double scale() const { return config().scale_factor; }
  const std::string& source() const { return source_; }

  // config.json's "autoencoder" section.
  nlohmann::json run_config_json() const;

 private:
  autoencoder::AutoencoderFolder folder_;
  std::string source_;
  autoencoder::AutoencoderFolder clip_decoder_;  // --decoder, or empty
  std::string clip_decoder_source_;
};

// The autoencoder folder of a latent run, found from what ddpm-sample / ddpm-eval accept: a
// run folder, a checkpoint folder (RUN/checkpoints/step_N) or a model file beside a
// config.json. "" when that config.json has no "autoencoder" section (a pixel-space model);
// IoError when it has one but RUN/autoencoder is missing.
std::string find_run_autoencoder(const std::string& checkpoint);

// ValueError "<what> does not apply to a latent diffusion model ..." when `checkpoint` is a
// latent run: for the pixel-only features (bits/dim, inpainting, classifier guidance).
void refuse_latent_model(const std::string& checkpoint, const std::string& what);

// True when the autoencoder folders a and b hold the same autoencoder: the same "model"
// section of config.json and byte-identical weights files (a run's copy of a source is
// byte-identical to it: copy_autoencoder_folder). Two latent runs whose latents may be
// exchanged (ddpm-sample --first-frame-from) must share one.
bool same_autoencoder(const std::string& a, const std::string& b);

}  // namespace ddpm::run
