// models/unet/encoder.h: the noisy, timestep-conditioned classifier of classifier guidance
// (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", sec. 4: ADM's EncoderUNetModel).
//
// It is the UNet's downsampling half and middle block, built from the same blocks
// (models/unet/blocks.h), followed by a classification head:
//   x_t [N, H, W, C], t [N]                       (ORIGINAL timesteps, possibly fractional)
//   emb = linear_2(SiLU(linear_1(timestep_embedding(t))))            [N, 4 model_channels]
//   h = conv_in(x_t); per level: num_res_blocks x (ResnetBlock(h, emb) [+ attention]),
//       then a downsampler (3x3 stride-2 conv, or a ResnetBlock with avg-pool when
//       resblock_updown) except after the last level
//   h = mid_block: ResnetBlock -> AttentionBlock -> ResnetBlock       [N, H', W', C']
//   logits = out_proj( mean_{H', W'} SiLU(GroupNorm(h)) )            [N, num_classes]
// ADM's "adaptive" pool head: GroupNorm, SiLU, global average pool, then a (1x1 conv =)
// linear map, zero-initialized as in ADM, so a fresh classifier outputs uniform logits.
// Unlike the UNet there is no class embedding (the class is what it predicts) and no up path.
//
// Parameter names follow the UNet's (diffusers' UNet2DModel where the modules match):
//   conv_in, time_embedding.linear_1/2,
//   down_blocks.i.{resnets.j, attentions.j, downsamplers.0},
//   mid_block.{resnets.0, attentions.0, resnets.1},
//   conv_norm_out (the head's GroupNorm), out_proj (the head's linear, [K, C'] + [K]).
// Tensors are NHWC.
#pragma once

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/ops/embedding.h"
#include "models/unet/blocks.h"

namespace ddpm::unet {

struct EncoderConfig {
  int image_size = 32;                        // H = W; must halve (levels - 1) times
  int in_channels = 3;
  int model_channels = 32;                    // channels of the first level
  std::vector<int> channel_mult{1, 2, 2};     // one entry per level
  int num_res_blocks = 1;                     // residual blocks per level
  std::vector<int> attention_resolutions{8};  // feature-map sizes (pixels) that get attention
  int num_heads = 1;                          // heads per attention block ...
  int num_head_channels = -1;                 // ... or, when > 0, channels per head
  int norm_groups = 8;                        // GroupNorm groups (ADM: 32)
  double norm_eps = 1e-5;
  double dropout = 0.0;
  bool use_scale_shift_norm = true;           // AdaGN in the residual blocks (ADM's classifier: on)
  bool resblock_updown = true;                // BigGAN-style resampling residual blocks (ADM: on)
  TimestepEmbeddingStyle time_embedding = TimestepEmbeddingStyle::improved;  // ADM's [cos, sin]
  int num_classes = 10;                       // K, the logits' width

  int time_embed_dim() const { return 4 * model_channels; }
  // The channels of the deepest level (the head's input).
  int out_feature_channels() const { return model_channels * channel_mult.back(); }
  // Throws ValueError naming the first inconsistent field.
  void validate() const;
};

// Every field by name; from_json refuses unknown and missing keys (IoError) and validates.
nlohmann::json encoder_config_to_json(const EncoderConfig& c);
EncoderConfig encoder_config_from_json(const nlohmann::json& j);

class NoisyClassifier : public nn::Module {
 public:
  NoisyClassifier(const EncoderConfig& cfg, Generator& gen, Device device);
  ~NoisyClassifier() override;

  // x_t [N, H, W, C] (f32, or f64 on the CPU when the parameters are f64); t the original
  // timestep per sample. Returns the logits of p(y | x_t, t), [N, num_classes].
  Tensor forward(const Tensor& x, const std::vector<double>& t, const nn::Context& ctx) const;

  const EncoderConfig& config() const { return cfg_; }
  Device device() const { return device_; }

 private:
  struct Level;  // one resolution: resnets, attentions, optional downsampler
  EncoderConfig cfg_;
  Device device_;
  std::unique_ptr<nn::Conv2d> conv_in_;
  std::unique_ptr<nn::Linear> time_1_, time_2_;
  std::vector<std::unique_ptr<Level>> down_;
  std::unique_ptr<ResnetBlock> mid_res1_, mid_res2_;
  std::unique_ptr<AttentionBlock> mid_attn_;
  std::unique_ptr<nn::GroupNorm> norm_out_;
  std::unique_ptr<nn::Linear> out_proj_;
};

}  // namespace ddpm::unet
