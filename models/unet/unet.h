// models/unet/unet.h: the denoising UNet as a callable net(x_t, t, y) -> output.
//
// One builder covers the original DDPM network (Ho et al. 2020), the improved-DDPM options
// (Nichol & Dhariwal 2021: learned variance, more heads, scale-shift norm, attention at
// several resolutions) and the ADM options (Dhariwal & Nichol 2021: BigGAN-style residual
// up/down-sampling, residual scaling by 1/sqrt(2)), plus class conditioning with a null
// label for classifier-free guidance. Parameter names follow diffusers' UNet2DModel:
//   conv_in, time_embedding.linear_1/2, class_embedding, down_blocks.i.{resnets,attentions,
//   downsamplers}.j, mid_block.{resnets,attentions}.j, up_blocks.i.{...,upsamplers}.j,
//   conv_norm_out, conv_out.
// Tensors are NHWC: x [N, H, W, input_channels()] -> [N, H, W, out_channels()], where
// input_channels() = in_channels + concat_channels (a super-resolution model's x_t with its
// upsampled low-res condition concatenated by the caller; in_channels for other models).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/ops/embedding.h"
#include "models/unet/blocks.h"

namespace ddpm::unet {

struct UNetConfig {
  int image_size = 32;                        // H = W; must halve (levels - 1) times
  int in_channels = 3;
  int model_channels = 128;                   // channels of the first level
  std::vector<int> channel_mult{1, 2, 2, 2};  // one entry per level
  int num_res_blocks = 2;                     // residual blocks per level on the way down
  std::vector<int> attention_resolutions{16}; // feature-map sizes (pixels) that get attention
  int num_heads = 1;                          // heads per attention block ...
  int num_head_channels = -1;                 // ... or, when > 0, channels per head
  double dropout = 0.1;
  bool learn_sigma = false;                   // output 2C channels: eps and the variance interpolant v
  bool use_scale_shift_norm = false;          // AdaGN in the residual blocks
  bool resblock_updown = false;               // BigGAN-style resampling residual blocks
  bool rescale_residual = false;              // multiply residual outputs by 1/sqrt(2)
  int num_classes = 0;                        // > 0: class-conditional, with label num_classes as "null"
  int norm_groups = 32;
  double norm_eps = 1e-5;                     // GroupNorm epsilon (google/ddpm-cifar10-32 uses 1e-6)
  TimestepEmbeddingStyle time_embedding = TimestepEmbeddingStyle::ddpm;
  // Super-resolution (cascaded diffusion, models/diffusion/super_res.h): the network input is
  // concat(x_t, up(low), channels), so conv_in takes in_channels + concat_channels; the
  // output is still out_channels(). low_res_size is the size of the low-resolution image
  // before its bilinear upsampling. Both 0 for an ordinary model; otherwise concat_channels
  // == in_channels (the low-res image has the image's channels) and low_res_size divides
  // image_size and is smaller.
  int concat_channels = 0;
  int low_res_size = 0;

  int out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  int input_channels() const { return in_channels + concat_channels; }  // conv_in's input
  bool super_res() const { return low_res_size > 0; }
  int time_embed_dim() const { return 4 * model_channels; }
  // The original DDPM CIFAR-10 network: 35.7M parameters.
  static UNetConfig ddpm_cifar10();
  // Throws ValueError naming the first inconsistent field.
  void validate() const;
};

// The checks every network built from the UNet's levels makes (the UNet, and its encoder
// half in encoder.h): positive sizes, an image size that halves once per level, whole
// GroupNorm groups and heads in every level's channels, attention only at level sizes.
// ValueError starting with `what` ("UNet config", "encoder config").
struct LevelLayout {
  int image_size, in_channels, model_channels;
  const std::vector<int>& channel_mult;
  int num_res_blocks;
  double dropout;
  int norm_groups;
  double norm_eps;
  int num_heads, num_head_channels;
  const std::vector<int>& attention_resolutions;
};
void check_level_layout(const char* what, const LevelLayout& l);

class UNet : public nn::Module {
 public:
  UNet(const UNetConfig& cfg, Generator& gen, Device device);
  ~UNet() override;

  // x [N, H, W, C]; t the (original, un-respaced) timestep per sample, possibly fractional;
  // labels per sample in [0, num_classes] (num_classes is the null label) when
  // class-conditional, empty otherwise.
  Tensor forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                 const nn::Context& ctx) const;

  const UNetConfig& config() const { return cfg_; }
  Device device() const { return device_; }

 private:
  struct Level;  // one resolution: resnets, attentions, optional resampler
  UNetConfig cfg_;
  Device device_;
  std::unique_ptr<nn::Conv2d> conv_in_, conv_out_;
  std::unique_ptr<nn::Linear> time_1_, time_2_;
  std::unique_ptr<nn::Embedding> class_emb_;
  std::vector<std::unique_ptr<Level>> down_, up_;
  std::unique_ptr<ResnetBlock> mid_res1_, mid_res2_;
  std::unique_ptr<AttentionBlock> mid_attn_;
  std::unique_ptr<nn::GroupNorm> norm_out_;
};

}  // namespace ddpm::unet
