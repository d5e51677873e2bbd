// models/unet/encoder.h: the noisy, timestep-conditioned classifier of classifier guidance
// (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", sec. 4: ADM's EncoderUNetModel).
//
// It is the UNet's downsampling half and middle block, built by the same code
// (models/unet/down_half.h), followed by a classification head:
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

#include "models/unet/down_half.h"

namespace ddpm::unet {

// The level fields are LevelConfig's (level_config.h); the constructor sets the encoder's
// defaults, a small ADM-style classifier (ADM's own uses 32 GroupNorm groups).
struct EncoderConfig : LevelConfig {
  EncoderConfig() {
    model_channels = 32;
    channel_mult = {1, 2, 2};
    num_res_blocks = 1;
    attention_resolutions = {8};
    norm_groups = 8;
    norm_eps = 1e-5;
    dropout = 0.0;
    use_scale_shift_norm = true;                      // AdaGN (ADM's classifier: on)
    resblock_updown = true;                           // BigGAN-style resampling (ADM: on)
    time_embedding = TimestepEmbeddingStyle::improved;  // ADM's [cos, sin]
  }

  int num_classes = 10;  // K, the logits' width

  // The channels of the deepest level (the head's input).
  int out_feature_channels() const { return model_channels * channel_mult.back(); }
  // Throws ValueError naming the first inconsistent field.
  void validate() const;
};

// Every field by name; from_json refuses unknown and missing keys (IoError) and validates.
nlohmann::json encoder_config_to_json(const EncoderConfig& c);
EncoderConfig encoder_config_from_json(const nlohmann::json& j);

// DownHalf (down_half.h) builds and runs the time embedding, the down path and the middle
// block; the classifier adds the head.
class NoisyClassifier : public DownHalf {
 public:
  NoisyClassifier(const EncoderConfig& cfg, Generator& gen, Device device);
  ~NoisyClassifier() override;

  // x_t [N, H, W, C] (f32, or f64 on the CPU when the parameters are f64); t the original
  // timestep per sample. Returns the logits of p(y | x_t, t), [N, num_classes].
  Tensor forward(const Tensor& x, const std::vector<double>& t, const nn::Context& ctx) const;

  const EncoderConfig& config() const { return cfg_; }
  Device device() const { return device_; }

 private:
  EncoderConfig cfg_;
  Device device_;
  std::unique_ptr<nn::GroupNorm> norm_out_;
  std::unique_ptr<nn::Linear> out_proj_;
};

}  // namespace ddpm::unet
