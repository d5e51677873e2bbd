// models/unet/controlnet.h: ControlNet (Zhang, Rao, Agrawala 2023, "Adding Conditional
// Control to Text-to-Image Diffusion Models", sec. 3.1-3.3): spatial conditioning of a FROZEN
// trained UNet by a trainable copy of its encoder.
//
// The paper's construction (sec. 3.1, eq. 1-2): a frozen block F(x; Theta) gets a trainable
// copy F(.; Theta_c) whose input is x plus a zero convolution of the condition c and whose
// output re-enters through a second zero convolution:
//   y_c = F(x; Theta) + Z(F(x + Z(c; Theta_z1); Theta_c); Theta_z2)
// Here, as in sec. 3.2 for Stable Diffusion's UNet and diffusers' ControlNetModel, the copied
// block is the UNet's whole encoder (DownHalf: time/class embedding, conv_in, the down path
// and the middle block) and its outputs re-enter at the base's skip connections:
//   emb   = the copy's time (+ class) embedding of t (and y)                 [N, 4 mc]
//   e     = controlnet_cond_embedding(hint)                                   [N, H, W, mc]
//           conv_in 3x3 -> SiLU -> (blocks: 3x3 conv -> SiLU)* -> conv_out 3x3 (ZERO init)
//   skips, h = encode(x_t, emb) with e added to conv_in's output              (the copy)
//   down[k] = scale * controlnet_down_blocks.k(skips[k])   1x1 conv, ZERO init
//   mid     = scale * controlnet_mid_block(h)              1x1 conv, ZERO init
// and the frozen base adds down[k] to its skip k and mid to its middle output (unet.h
// ControlResiduals). Every path from the ControlNet into the base ends in a zero conv, so at
// initialisation the residuals are exactly 0 and base + ControlNet IS the base (sec. 3.1: no
// harmful noise reaches the trained network's deep features at the start). Training still
// moves the zero convs: for y = W x + b with W = 0, dL/dW = dL/dy x^T is non-zero whenever x
// and the upstream gradient are, so after the first step W != 0 and the gradient flows on into
// the copy and the hint embedding (sec. 3.1's argument; tested).
//
// The copy is INITIALISED from the base (copy_encoder_from): conv_in, time_embedding,
// class_embedding, down_blocks and mid_block take the base's weights, so before training the
// copy's encode() equals the base's (sec. 3.2: "trainable copy" of the encoder).
//
// The hint embedding's resolution. The hint always has the IMAGE's size. For a pixel-space
// base that is the UNet's size and every conv has stride 1 (a stride would only lose detail).
// For a latent base (Rombach et al. 2022; models/run/latent_run.h) the UNet works on
// h = H / f latents, f = hint_downsampling_factor = 2^k the autoencoder's factor, and the
// embedding brings the hint down as diffusers' ControlNetConditioningEmbedding does for
// Stable Diffusion (512-pixel hints, 64 latents, f = 8): its widths w_0..w_m
// (conditioning_embedding_out_channels) make m pairs of 3x3 convs, w_j -> w_j (stride 1)
// then w_j -> w_{j+1} with stride 2 (padding 1: H -> H / 2) in the first k pairs and stride
// 1 in the rest, so k <= m is required; diffusers' default 16, 32, 96, 256 has m = k = 3.
// Ours is 16, 32 for f <= 2 (one pair: a conv 16 -> 16 and a conv 16 -> 32, each followed by
// SiLU) and 16, 32, ..., 16 2^k for larger f (ddpm-control train picks it; control_run.h).
// Configs written before the factor existed have no "hint_downsampling_factor" and read as
// f = 1, and f = 1 is not written, so their config.json stays byte for byte the same.
//
// Parameter names are diffusers' ControlNetModel's: conv_in, time_embedding.linear_1/2,
// class_embedding, down_blocks.i..., mid_block..., controlnet_cond_embedding.{conv_in,
// blocks.j, conv_out}, controlnet_down_blocks.k, controlnet_mid_block. The differences:
// class_embedding is our UNet's (num_classes + 1 rows with the null label; diffusers'
// ControlNetModel has a class_embedding only for its class_embed_type variants), the hint
// embedding's odd blocks have stride 1 (see above), and there is no text cross-attention
// (a base with context_dim > 0 is refused by validate()).
// Tensors are NHWC.
#pragma once

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/unet/unet.h"

namespace ddpm::unet {

struct ControlNetConfig {
  UNetConfig base;                 // the frozen UNet's config: the copy has its levels and classes
  int conditioning_channels = 1;   // the hint's channels
  std::vector<int> conditioning_embedding_out_channels = {16, 32};
  // f: the hint is [N, f h, f w, C] for a UNet of size h (a power of two; 1 = pixel space).
  int hint_downsampling_factor = 1;
  // ValueError naming the field: the base's own checks, plus no super-resolution or
  // conditioning-augmented base (their input and embedding differ from the copy's), no
  // cross-attention base (context_dim > 0: not supported), positive
  // hint channels and embedding widths, f a power of two with log2 f stride-2 pairs available.
  void validate() const;
  int hint_stride2_pairs() const;  // k = log2 f
};

// {"base_model": config_to_json(base), "conditioning_channels": C,
//  "conditioning_embedding_out_channels": [...], "hint_downsampling_factor": f (only when
//  f != 1)}; from_json reads it strictly (IoError for an unknown or missing key; the factor
// may be missing: 1) and validates.
nlohmann::json controlnet_config_to_json(const ControlNetConfig& c);
ControlNetConfig controlnet_config_from_json(const nlohmann::json& j);

class ControlNet : public DownHalf {
 public:
  // Zero convs are zero; the copy's layers get fresh random weights from gen until
  // copy_encoder_from() overwrites them.
  ControlNet(const ControlNetConfig& cfg, Generator& gen, Device device);
  ~ControlNet() override;

  // Copies the base's conv_in, time_embedding, class_embedding, down_blocks and mid_block
  // weights into the copy (ValueError when the base's config differs from cfg.base).
  void copy_encoder_from(const UNet& base);

  // x_t [N, h, h, C], t the original timesteps, labels as for the base, hint
  // [N, f h, f h, conditioning_channels]; every residual multiplied by `scale` (diffusers'
  // conditioning_scale; 1 = as trained).
  ControlResiduals forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                           const Tensor& hint, const nn::Context& ctx, double scale = 1.0) const;

  // The copy's encoder alone (for the test that the copy equals the base): the middle
  // block's output and, in `skips`, every skip tensor.
  Tensor encode_copy(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                     std::vector<Tensor>* skips) const;

  const ControlNetConfig& config() const { return cfg_; }

 private:
  ControlNetConfig cfg_;
  std::unique_ptr<nn::Conv2d> hint_in_, hint_out_;
  std::vector<std::unique_ptr<nn::Conv2d>> hint_blocks_;
  std::vector<std::unique_ptr<nn::Conv2d>> zero_down_;
  std::unique_ptr<nn::Conv2d> zero_mid_;
};

// One denoiser call of base + ControlNet: the base run with the ControlNet's residuals.
Tensor controlled_forward(const UNet& base, const ControlNet& control, const Tensor& x, const std::vector<double>& t,
                          const std::vector<std::int64_t>& labels, const Tensor& hint, const nn::Context& ctx,
                          double scale = 1.0);

}  // namespace ddpm::unet
