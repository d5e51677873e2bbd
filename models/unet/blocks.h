// models/unet/blocks.h: the UNet's building blocks, named as in diffusers' UNet2DModel
// (ResnetBlock2D, Attention, Downsample2D, Upsample2D) so parameter names line up.
//
// ResnetBlock (Ho et al. 2020, App. B; Nichol & Dhariwal 2021 for scale-shift; Dhariwal &
// Nichol 2021 for BigGAN up/down and 1/sqrt(2) residual scaling):
//   h = conv1( SiLU(norm1(x)) )                      (resampled between SiLU and conv1 when up/down)
//   e = time_emb_proj( SiLU(emb) )                   [N, C] or [N, 2C] for scale-shift
//   default:     h = SiLU(norm2(h + e))
//   scale-shift: h = SiLU(norm2(h) * (1 + scale) + shift),  (scale, shift) = split(e)
//   h = conv2( dropout(h) )                           conv2 zero-initialized
//   out = (shortcut(x) + h) * output_scale            shortcut = 1x1 conv when channels change
// The two additions around the convolutions run in their epilogues (engine/ops/conv.h):
// h + e as conv1's sample_bias (default mode) and shortcut(x) + h as conv2's residual, each
// saving a full pass over the activation; the results are bitwise those of separate adds.
// All activations NHWC.
//
// With nn::Context::recompute on (and grad mode on), ResnetBlock and AttentionBlock run
// under activation checkpointing (engine/recompute.h): the tape keeps each block's inputs
// only, and the backward reruns the block's forward, with the same dropout masks.
#pragma once

#include <memory>

#include "models/nn/layers.h"

namespace ddpm::unet {

struct BlockOptions {
  int norm_groups = 32;
  double norm_eps = 1e-5;
  double dropout = 0.0;
  bool scale_shift = false;    // AdaGN ("time_embedding_norm = scale_shift" in diffusers)
  double output_scale = 1.0;   // 1/sqrt(2) for ADM's rescaled residuals
};

enum class Resample { none, up, down };

class ResnetBlock : public nn::Module {
 public:
  ResnetBlock(std::int64_t in, std::int64_t out, std::int64_t emb_dim, const BlockOptions& opt, Resample resample,
              Generator& gen, Device device);
  Tensor forward(const Tensor& x, const Tensor& emb, const nn::Context& ctx) const;

 private:
  Tensor compute(const Tensor& x, const Tensor& emb, const nn::Context& ctx) const;  // the block itself

  std::unique_ptr<nn::GroupNorm> norm1_, norm2_;
  std::unique_ptr<nn::Conv2d> conv1_, conv2_, shortcut_;
  std::unique_ptr<nn::Linear> emb_proj_;
  BlockOptions opt_;
  Resample resample_;
  std::int64_t out_;
};

// Self-attention over the H*W tokens: x + to_out(attention(to_q(n), to_k(n), to_v(n))),
// n = group_norm(x). to_out is zero-initialized, so the block starts as the identity.
class AttentionBlock : public nn::Module {
 public:
  AttentionBlock(std::int64_t channels, int num_heads, int norm_groups, double norm_eps, Generator& gen,
                 Device device);
  Tensor forward(const Tensor& x, const nn::Context& ctx = nn::Context{}) const;
  int num_heads() const { return heads_; }

 private:
  Tensor compute(const Tensor& x) const;  // the block itself

  std::unique_ptr<nn::GroupNorm> norm_;
  std::unique_ptr<nn::Linear> q_, k_, v_, out_;
  int heads_;
};

// 3x3 convolution with stride 2 (Downsample2D with use_conv).
class Downsample : public nn::Module {
 public:
  Downsample(std::int64_t channels, Generator& gen, Device device);
  Tensor forward(const Tensor& x) const;

 private:
  std::unique_ptr<nn::Conv2d> conv_;
};

// Nearest 2x upsampling then a 3x3 convolution (Upsample2D with use_conv).
class Upsample : public nn::Module {
 public:
  Upsample(std::int64_t channels, Generator& gen, Device device);
  Tensor forward(const Tensor& x) const;

 private:
  std::unique_ptr<nn::Conv2d> conv_;
};

}  // namespace ddpm::unet
