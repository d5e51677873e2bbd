// models/run/temporal_decoder_run.h: ddpm-autoencoder finetune-temporal, the temporal decoder
// fine-tuning of Video LDM (Blattmann et al. 2023, "Align your Latents", "Temporal
// Autoencoder Finetuning", fig. 3):
// an image autoencoder (ddpm-autoencoder train) gets temporal layers in its decoder
// (autoencoder.h "Temporal decoder") and its decoder is fine-tuned on clips while the encoder
// stays frozen, so the latents a latent video run diffuses are unchanged and only their
// decoding becomes temporally coherent. ddpm-sample --decoder uses the result (latent_run.h).
//
// Training: the clips of --data moving-* (F = --frames, the clips' geometry as ddpm-train's
// flags), for each step a batch x [B, F, H, W, C] in [-1, 1]:
//   z = mean + exp(logvar / 2) eps per frame, from the frozen encoder (eps from a generator
//       seeded from --seed, as ddpm-autoencoder train)
//   L = L_rec(x, D_temporal(z)): |x - D(z)| (or squared, --loss l2) summed over the clip's
//       frames and pixels, averaged over the clips (temporal_decoder_loss)
// No KL term: the encoder, and so q(z | x), does not train, and the KL depends on nothing
// else. No patch-wise temporal discriminator: Video LDM's adversarial term, which this
// project's autoencoder never had. Adam with LDM's autoencoder betas (0.5, 0.9), constant
// --lr. What trains (--train-only): `decoder` (default: the whole decoder side, its image
// layers, post_quant_conv and the new temporal layers; Video LDM adds temporal layers to the
// decoder and fine-tunes the decoder on video with the encoder unchanged, and does not
// single out the temporal layers as it does for the diffusion model, which is how we read
// it), or `temporal` (the temporal layers alone: the image decoder is kept exactly).
// The encoder and quant_conv are frozen either way, so their weights are those of --from
// byte for byte (ddpm-sample --decoder checks this).
//
// Output: an autoencoder folder (autoencoder_io.h) with temporal_frames = F, --from's scale
// factor and config otherwise; config.json's "train" is --from's, plus "temporal_decoder":
// {from, data, frames, steps, batch_size, lr, loss, train_only, first_loss, final_loss, ...}.
// An existing --out is refused unless --overwrite. No resume: ddpm-autoencoder train has
// none either (it is short; it writes nothing until it is done).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/device.h"
#include "models/autoencoder/autoencoder.h"
#include "models/data/dataset.h"

namespace ddpm::run {

struct TemporalFinetuneArgs {
  std::string from;                 // --from: an image autoencoder folder
  std::string data = "moving-toy";  // moving-toy | moving-fashion-mnist[:DIR]
  int frames = 8;                   // --frames F: the clip length, the decoder's temporal_frames
  int canvas = 32;
  int item_size = 16;
  int moving_items = 1;
  std::string out;
  bool overwrite = false;
  std::int64_t steps = 500;
  std::int64_t batch_size = 4;  // clips per step
  double lr = 1e-4;
  std::string loss = "l1";
  std::string train_only = "decoder";  // decoder | temporal
  std::int64_t log_every = 50;
  bool gradient_checkpointing = false;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};

struct TemporalFinetuneReport {
  std::vector<double> losses;  // L_rec per clip, one per step
  std::int64_t trainable = 0;  // parameters trained
  double seconds = 0;
};

// Freezes what --train-only keeps (requires_grad off) and returns the parameters that train;
// ValueError for another value of `train_only`.
std::vector<nn::NamedTensor> temporal_finetune_parameters(const autoencoder::Autoencoder& ae,
                                                          const std::string& train_only);

// The loop above on clips `data` (frames == ae's temporal_frames).
TemporalFinetuneReport finetune_temporal_decoder(autoencoder::Autoencoder& ae, const Dataset& data,
                                                 const TemporalFinetuneArgs& a,
                                                 const std::function<void(const std::string&)>& log = {});

void run_temporal_finetune(const TemporalFinetuneArgs& a, std::ostream& out);

// The finetune-temporal subcommand's flags.
CLI::App* add_temporal_finetune_subcommand(CLI::App& app, TemporalFinetuneArgs& a);

}  // namespace ddpm::run
