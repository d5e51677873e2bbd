// models/autoencoder/autoencoder.h: the KL-regularised convolutional autoencoder of latent
// diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
// Models", sec. 3.1 and appendix G: the "KL-f" first stage), built from engine ops.
//
// Architecture (NHWC throughout; f = 2^(levels - 1) is the downsampling factor):
//   encoder: conv_in 3x3 -> per level i: num_res_blocks x ResBlock(ch_i), then a 3x3
//            stride-2 conv except after the last level -> mid: ResBlock, self-attention,
//            ResBlock -> GroupNorm+SiLU -> conv_out 3x3 to 2 z_channels
//   quant_conv 1x1 (2z -> 2z): the moments [N, H/f, W/f, 2z] = (mean, log-variance)
//   post_quant_conv 1x1 (z -> z)
//   decoder: conv_in 3x3 -> mid (as above) -> per level from the deepest:
//            (num_res_blocks + 1) x ResBlock, then nearest 2x upsampling + 3x3 conv except
//            after level 0 -> GroupNorm+SiLU -> conv_out 3x3 to in_channels
// ResBlock(x) = shortcut(x) + conv2(SiLU(GN(conv1(SiLU(GN(x)))))), shortcut a 1x1 conv when
// the channels change (LDM's ResnetBlock with temb_channels = 0: no timestep here).
// The log-variance is clamped to [-30, 20] as in LDM's DiagonalGaussianDistribution, so
// exp(logvar / 2) never overflows or vanishes in f32.
// Decoder output: left linear (no tanh), as LDM does; images are compared with data in
// [-1, 1], and the sample writers clip to [-1, 1] before quantising to uint8.
//
// Activation checkpointing (engine/recompute.h, Chen et al. 2016; diffusers' AutoencoderKL
// has the same switch, checkpointing whole down/up blocks and the mid block): with
// nn::Context::recompute on and grad mode on, every ResBlock and the middle self-attention
// (the UNet's AttentionBlock) keep only their input on the tape and rerun their forward in
// the backward. A ResBlock otherwise keeps about four activations
// of its size (its input, GN+SiLU's output feeding conv1, conv1's output, GN+SiLU's output
// feeding conv2), so the blocks' memory falls to about a quarter for one extra forward of
// them. The strided and upsampling convs, the heads and the loss are not recomputed: the
// decoder's upsampling conv keeps its 2x-upsampled input, as the UNet's Upsample does.
// The autoencoder has no dropout, so the segments draw nothing from a generator.
//
// Parameter names follow diffusers' AutoencoderKL (encoder.conv_in, encoder.down_blocks.i.
// resnets.j, encoder.down_blocks.i.downsamplers.0.conv, encoder.mid_block.{resnets.0,
// attentions.0, resnets.1}, encoder.conv_norm_out, encoder.conv_out, quant_conv,
// post_quant_conv, decoder.{conv_in, mid_block, up_blocks.i.{resnets.j, upsamplers.0.conv},
// conv_norm_out, conv_out}); the downsampling conv pads symmetrically (diffusers pads
// (0, 1, 0, 1)), so diffusers weights are not claimed to load bit-for-bit.
//
// Loss (LDM appendix G, LPIPSWithDiscriminator without its perceptual and GAN terms: those
// need pretrained VGG / discriminator weights from outside the project):
//   z = mean + exp(logvar / 2) * eps,  eps ~ N(0, I)            (reparameterisation)
//   L_rec = (1/B) sum_i sum_{h,w,c} |x - D(z)|   (or squared, --loss l2)
//   L_KL  = (1/B) sum_i 1/2 sum_{h,w,c} (mean^2 + exp(logvar) - 1 - logvar)   (closed form
//           KL(N(mean, var) || N(0, I)), Kingma & Welling 2014, appendix B)
//   L = L_rec + kl_weight * L_KL,  kl_weight = 1e-6 by default (LDM's KL-f configs)
// Both terms sum over the dimensions and average over the batch as LDM does, so kl_weight
// keeps LDM's meaning.
//
// Temporal decoder (Blattmann et al. 2023, "Align your Latents", "Temporal Autoencoder
// Finetuning", sec. 3.1.1 in our reading, and fig. 3: the
// decoder gets temporal layers and is fine-tuned on video while the encoder stays frozen, so
// the latents a video diffusion model was trained on do not change). With
// temporal_frames = F >= 2 the decoder has a unet::TemporalConv (temporal_conv.h: y = x +
// proj_out(conv_3(SiLU(GN_clip(x)))), a kernel of 3 over frames, proj_out zero at
// construction) after each of its ResBlocks, mid and up blocks alike, and decodes clips:
//   decode_clips: z [N, F, h, w, z] -> frames folded [N F, h, w, z] -> the 2D layers on the
//   N F frames, each TemporalConv mixing the F frames of a clip -> [N, F, H, W, C].
// The temporal layers are built after every other module, so the image part draws the same
// weights from the generator as an image autoencoder, and proj_out = 0 makes a fresh temporal
// decoder equal to the image decoder frame by frame. Their names (decoder.mid_block.
// temporal_convs.{0,1}, decoder.up_blocks.k.temporal_convs.j, after resnets.j) leave the
// LDM / diffusers names of the image part unchanged. Clip loss (temporal_decoder_loss): the
// L_rec above per clip, summed over the clip's frames and pixels, averaged over the clips,
// with z a posterior sample of each frame from the frozen encoder. No KL term (the encoder
// and so q(z | x) do not train) and no patch-wise temporal discriminator (Video LDM's GAN
// term; this autoencoder has no adversarial loss).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/rng.h"
#include "models/nn/layers.h"
#include "models/unet/blocks.h"

namespace ddpm::autoencoder {

struct AutoencoderConfig {
  int in_channels = 3;                   // image channels
  int base_channels = 64;                // channels of the first level
  std::vector<int> channel_mult{1, 2, 2};  // one entry per level: f = 2^(levels - 1)
  int num_res_blocks = 1;                // residual blocks per encoder level
  int z_channels = 4;                    // latent channels
  int norm_groups = 32;
  double norm_eps = 1e-6;                // LDM's GroupNorm epsilon
  // s of z_diffusion = s * z: 1 / std of posterior samples over training images, set after
  // training (Stable Diffusion's 0.18215 is this number for its VAE); 1 until then.
  double scale_factor = 1.0;
  // 0: the image decoder. F >= 2: the temporal decoder of clips of F frames (above). Written
  // to config.json only when F > 0, so an image autoencoder's config reads as before.
  int temporal_frames = 0;

  int downsampling_factor() const { return 1 << (static_cast<int>(channel_mult.size()) - 1); }
  // ValueError naming the first inconsistent field.
  void validate() const;
};

// Every field by name; from_json refuses unknown and missing keys (IoError; temporal_frames
// may be absent: an image autoencoder) and validates.
nlohmann::json autoencoder_config_to_json(const AutoencoderConfig& c);
AutoencoderConfig autoencoder_config_from_json(const nlohmann::json& j);

// The posterior q(z | x) = N(mean, diag(exp(logvar))), both [N, H/f, W/f, z_channels].
struct DiagonalGaussian {
  Tensor mean, logvar;
  // mean + exp(logvar / 2) * eps (recorded on the tape).
  Tensor sample(const Tensor& eps) const;
  // KL(q || N(0, I)) summed over every dimension of each sample, then averaged over the
  // batch: a {} tensor.
  Tensor kl() const;
};

class Autoencoder : public nn::Module {
 public:
  Autoencoder(const AutoencoderConfig& cfg, Generator& gen, Device device);
  ~Autoencoder() override;

  // x [N, H, W, in_channels], H and W divisible by f -> moments [N, H/f, W/f, 2 z_channels].
  // ctx.recompute checkpoints the blocks (above); ctx.training and ctx.gen are unused (no
  // dropout).
  Tensor encode_moments(const Tensor& x, const nn::Context& ctx = nn::Context{}) const;
  // The moments split into mean and clamped log-variance.
  DiagonalGaussian encode(const Tensor& x, const nn::Context& ctx = nn::Context{}) const;
  // z [N, h, w, z_channels] (unscaled) -> images [N, h f, w f, in_channels]. An image
  // decoder only: a temporal one decodes clips (ValueError).
  Tensor decode(const Tensor& z, const nn::Context& ctx = nn::Context{}) const;
  // Clips z [N, F, h, w, z_channels] (unscaled) -> [N, F, h f, w f, in_channels]. A temporal
  // decoder needs F == temporal_frames (the clip length it was fine-tuned on; ValueError
  // otherwise); an image decoder decodes the N F frames one by one.
  Tensor decode_clips(const Tensor& z, const nn::Context& ctx = nn::Context{}) const;

  const AutoencoderConfig& config() const { return cfg_; }
  AutoencoderConfig& mutable_config() { return cfg_; }  // the scale factor is set after training
  Device device() const { return device_; }

 private:
  struct ResBlock;
  struct Half;  // the encoder or the decoder
  AutoencoderConfig cfg_;
  Device device_;
  std::unique_ptr<Half> encoder_, decoder_;
  std::unique_ptr<nn::Conv2d> quant_conv_, post_quant_conv_;
};

// True for the parameters of the temporal layers (a "temporal_convs." component), for
// ddpm-autoencoder finetune-temporal --train-only temporal.
bool is_temporal_parameter(const std::string& name);
// True for the decoder side: decoder.* and post_quant_conv.* (the encoder and quant_conv
// make the latents and stay frozen when a decoder is fine-tuned).
bool is_decoder_parameter(const std::string& name);

// A temporal autoencoder of clips of `frames` frames whose every image parameter is a copy
// of `image`'s (an image autoencoder); the temporal layers are fresh (from gen), so it
// decodes as `image` does frame by frame until they train.
std::unique_ptr<Autoencoder> with_temporal_decoder(const Autoencoder& image, int frames, Generator& gen);

// Sum over every axis but the batch, then the mean over the batch: [N, ...] -> {}.
Tensor mean_over_batch(const Tensor& per_element);

enum class ReconstructionLoss { l1, l2 };
ReconstructionLoss parse_reconstruction_loss(const std::string& name);  // "l1" | "l2"

struct AutoencoderLossTerms {
  Tensor total;           // L_rec + kl_weight * L_KL, {}
  Tensor reconstruction;  // L_rec, {}
  Tensor kl;              // L_KL, {}
  Tensor reconstruction_image;  // D(z) [N, H, W, C]
};

// The loss above for images x in [-1, 1] and the reparameterisation noise eps (standard
// normal, the latent's shape [N, H/f, W/f, z_channels]); ctx goes to encode and decode
// (ctx.recompute: activation checkpointing, the same gradients to float rounding).
AutoencoderLossTerms autoencoder_loss(const Autoencoder& ae, const Tensor& x, const Tensor& eps,
                                      ReconstructionLoss rec, double kl_weight,
                                      const nn::Context& ctx = nn::Context{});

struct TemporalDecoderLossTerms {
  Tensor reconstruction;        // L_rec per clip, {}: the loss (no KL term, above)
  Tensor reconstruction_clips;  // D(z) [N, F, H, W, C]
};

// The clip loss of temporal decoder fine-tuning for clips x [N, F, H, W, C] in [-1, 1] and
// the reparameterisation noise eps [N F, H/f, W/f, z_channels] (one draw per frame): z is
// the posterior sample of every frame, computed with no gradient (the encoder is frozen),
// then decoded clip-wise. ae must be a temporal autoencoder of F frames.
TemporalDecoderLossTerms temporal_decoder_loss(const Autoencoder& ae, const Tensor& x, const Tensor& eps,
                                               ReconstructionLoss rec, const nn::Context& ctx = nn::Context{});

}  // namespace ddpm::autoencoder
