// models/unet/down_half.h: the UNet's downsampling half and middle block, the part the
// denoising UNet (unet.h) and the noisy classifier (encoder.h, ADM's EncoderUNetModel) have in
// common. Both derive from DownHalf, which builds and runs, for a LevelConfig:
//   emb = linear_2(SiLU(linear_1(timestep_embedding(t)))) [+ class_embedding(y)]  [N, 4 mc]
//   h = conv_in(x)                                                       [N, H, W, mc]
//   per level i: num_res_blocks x (ResnetBlock(h, emb) [+ AttentionBlock]), then a
//     downsampler except after the last level (a 3x3 stride-2 conv, or a ResnetBlock with
//     average pooling when resblock_updown)
//   mid_block: ResnetBlock -> AttentionBlock -> ResnetBlock               [N, H', W', C']
// With a context width (context_dim > 0, a text-conditioned UNet: transformer.h) every
// AttentionBlock above is a SpatialTransformer instead, under the same name (attentions.j),
// and encode() takes the context [N, L, context_dim] its cross-attention reads.
// A video UNet (unet.h num_frames) adds temporal attention layers (temporal.h) through
// add_temporal_layers(), after the subclass built everything else, and encode() runs them
// when given the frame count: after each resnet (and its attention), and after the middle
// block's attention. With temporal_conv (unet.h) add_temporal_conv_layers() adds a temporal
// convolution (temporal_conv.h) right after every resnet, the middle block's two included.
// Parameter names (diffusers' UNet2DModel): conv_in, time_embedding.linear_1/2,
// class_embedding, down_blocks.i.{resnets.j, attentions.j, downsamplers.0},
// mid_block.{resnets.0, attentions.0, resnets.1}. The subclass registers its own modules
// (the up path, the head) after these, so names, parameter order and the order in which
// initial weights are drawn from the generator are those of one network built in one piece.
// Tensors are NHWC.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/ops/embedding.h"
#include "models/unet/blocks.h"
#include "models/unet/level_config.h"
#include "models/unet/temporal.h"
#include "models/unet/temporal_conv.h"
#include "models/unet/transformer.h"

namespace ddpm::unet {

// One resolution level: resnets.j, attentions.j (one per resnet, or none: self-attention
// blocks, or spatial transformers in a context model, never both) and an optional resampler
// (downsamplers.0 / upsamplers.0): a conv, or a resampling residual block.
struct ResolutionLevel : nn::Module {
  std::vector<std::unique_ptr<ResnetBlock>> resnets;
  std::vector<std::unique_ptr<AttentionBlock>> attentions;
  std::vector<std::unique_ptr<SpatialTransformer>> transformers;
  std::unique_ptr<Downsample> down;
  std::unique_ptr<Upsample> up;
  std::unique_ptr<ResnetBlock> res_resample;
  std::vector<std::unique_ptr<TemporalAttention>> temporals;  // temp_attentions.j: one per resnet, or none
  std::vector<std::unique_ptr<TemporalConv>> temporal_convs;  // temp_convs.j: one per resnet, or none

  void add_resnet(std::unique_ptr<ResnetBlock> r);
  void add_attention(std::unique_ptr<AttentionBlock> a);
  void add_transformer(std::unique_ptr<SpatialTransformer> t);  // registered as attentions.j too
  bool has_attention() const { return !attentions.empty() || !transformers.empty(); }
  void add_temporal(std::unique_ptr<TemporalAttention> t);  // registered as temp_attentions.j
  // After resnet j (and its attention): temporal attention over `frames` frames when the
  // level has it and frames > 0; h unchanged otherwise.
  Tensor attend_frames(std::size_t j, const Tensor& h, std::int64_t frames, const nn::Context& ctx) const;
  void add_temporal_conv(std::unique_ptr<TemporalConv> c);  // registered as temp_convs.j
  // Right after resnet j: the temporal convolution over `frames` frames when the level has
  // one and frames > 0; h unchanged otherwise.
  Tensor conv_frames(std::size_t j, const Tensor& h, std::int64_t frames, const nn::Context& ctx) const;
  // The j-th attention layer on h: AttentionBlock(h), or SpatialTransformer(h, context).
  Tensor attend(std::size_t j, const Tensor& h, const Tensor& context, const nn::Context& ctx) const;
  // Exactly one of d, u, r is non-null; it is registered as `name`.
  void set_resampler(const char* name, std::unique_ptr<Downsample> d, std::unique_ptr<Upsample> u,
                     std::unique_ptr<ResnetBlock> r);
  bool has_resampler() const { return down || up || res_resample; }
  Tensor resample(const Tensor& h, const Tensor& emb, const nn::Context& ctx) const;
};

// The residual-block options of a LevelConfig; output_scale 1/sqrt(2) for ADM's rescaled
// residuals (the UNet's rescale_residual).
BlockOptions level_block_options(const LevelConfig& c, double output_scale = 1.0);

// Calls cfg.validate() and returns cfg: for a subclass's base initializer, so a bad config
// fails with its validate()'s message before DownHalf builds a layer from it.
template <class Config>
const Config& validated_config(const Config& cfg) {
  cfg.validate();
  return cfg;
}

class DownHalf : public nn::Module {
 public:
  ~DownHalf() override;

 protected:
  // cfg must be validated by the caller (its own validate(), which has more checks).
  // input_channels: conv_in's input (the UNet's x_t with its super-resolution condition);
  // num_class_embeds > 0 adds class_embedding with that many rows (0: none).
  // context_dim > 0 builds SpatialTransformers of transformer_depth blocks in place of the
  // attention blocks (the caller validated both).
  DownHalf(const LevelConfig& cfg, std::int64_t input_channels, int num_class_embeds, const BlockOptions& opt,
           Generator& gen, Device device, int context_dim = 0, int transformer_depth = 1);

  // emb [N, 4 mc] from timesteps t [N] (the embedding is computed in t's dtype) and, when the
  // class embedding exists, one label per sample.
  Tensor embed(const Tensor& t, const std::vector<std::int64_t>& labels) const;
  // x [N, H, W, input_channels] -> the middle block's output [N, H', W', C']. When `skips` is
  // given, every tensor the UNet's skip connections take is pushed onto it (conv_in's output,
  // each resnet's (+ attention's) output, each downsampler's output), in order; their
  // channels are skip_channels(). `after_conv_in` (optional, [N, H, W, mc]) is added to
  // conv_in's output before anything else sees it: a ControlNet's embedded hint (controlnet.h).
  // `context` [N, L, context_dim]: what the spatial transformers attend to (context models
  // only; the caller checked it).
  // `frames` > 0 (a video model; x holds N clips of that many consecutive frames) runs the
  // temporal layers; 0 skips them.
  Tensor encode(const Tensor& x, const Tensor& emb, const nn::Context& ctx, std::vector<Tensor>* skips,
                const Tensor& after_conv_in = Tensor(), const Tensor& context = Tensor(),
                std::int64_t frames = 0) const;
  // Appends the attention layer a level of `channels` channels gets: an AttentionBlock, or
  // a SpatialTransformer in a context model. For the subclass's up path too.
  void add_attention_layer(ResolutionLevel& level, const LevelConfig& cfg, std::int64_t channels, Generator& gen,
                           Device device) const;
  int context_dim() const { return context_dim_; }
  // Builds a TemporalAttention after every resnet of the down levels and after the middle
  // block's attention (heads by the spatial rule, cfg.heads_for); for the subclass to call
  // once, after all its other modules, so the weights before are drawn as without them.
  // max_distance: TemporalAttention's (0 = sinusoidal positions, R = relative, temporal.h).
  void add_temporal_layers(const LevelConfig& cfg, Generator& gen, Device device, std::int64_t max_distance = 0);
  // Builds a TemporalConv after every resnet of the down levels and after both resnets of
  // the middle block (temp_convs.0 and .1); for the subclass to call after the temporal
  // attention layers, for the same reason.
  void add_temporal_conv_layers(const LevelConfig& cfg, Generator& gen, Device device);

  std::int64_t deepest_channels() const { return deepest_channels_; }  // C' of the middle block
  const std::vector<std::int64_t>& skip_channels() const { return skip_channels_; }
  const BlockOptions& block_options() const { return opt_; }

 private:
  int model_channels_;
  TimestepEmbeddingStyle time_embedding_;
  BlockOptions opt_;
  std::int64_t deepest_channels_ = 0;
  std::vector<std::int64_t> skip_channels_;
  std::unique_ptr<nn::Conv2d> conv_in_;
  std::unique_ptr<nn::Linear> time_1_, time_2_;
  std::unique_ptr<nn::Embedding> class_emb_;
  std::vector<std::unique_ptr<ResolutionLevel>> down_;
  std::unique_ptr<ResnetBlock> mid_res1_, mid_res2_;
  int context_dim_ = 0;
  int transformer_depth_ = 1;
  std::unique_ptr<AttentionBlock> mid_attn_;
  std::unique_ptr<SpatialTransformer> mid_transformer_;  // instead of mid_attn_ in a context model
  std::unique_ptr<TemporalAttention> mid_temporal_;      // mid_block.temp_attentions.0 (video models)
  std::unique_ptr<TemporalConv> mid_conv1_, mid_conv2_;  // mid_block.temp_convs.0/1 (temporal_conv)
};

}  // namespace ddpm::unet
