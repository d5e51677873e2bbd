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
// Tensors are NHWC: x [N, H, W, forward_channels()] -> [N, H, W, out_channels()], where
// input_channels() = in_channels + concat_channels (a super-resolution model's x_t with its
// upsampled low-res condition concatenated by the caller; in_channels for other models) and
// forward_channels() adds the level plane of a conditioning-augmented model (cond_augment).
// A text-conditioned model (context_dim > 0; Rombach et al. 2022 sec. 3.3, diffusers'
// UNet2DConditionModel) replaces every attention block by a spatial transformer
// (transformer.h) that cross-attends to a context [N, L, context_dim], e.g. the output of
// text::TextEncoder; it is called through the forward overload that takes the context.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/unet/down_half.h"

namespace ddpm::unet {

class TextTimeEmbedding;  // context_pool.h

// The shared level fields (image_size, in_channels, model_channels, channel_mult,
// num_res_blocks, attention_resolutions, heads, norm_groups, norm_eps, dropout,
// use_scale_shift_norm, resblock_updown, time_embedding) are LevelConfig's
// (level_config.h); the constructor sets the UNet's defaults, the original DDPM CIFAR-10
// network (Ho et al. 2020, App. B).
struct UNetConfig : LevelConfig {
  UNetConfig() {
    model_channels = 128;
    channel_mult = {1, 2, 2, 2};
    num_res_blocks = 2;
    attention_resolutions = {16};
    norm_groups = 32;
    norm_eps = 1e-5;  // google/ddpm-cifar10-32 uses 1e-6
    dropout = 0.1;
    use_scale_shift_norm = false;
    resblock_updown = false;
    time_embedding = TimestepEmbeddingStyle::ddpm;
  }

  bool learn_sigma = false;                   // output 2C channels: eps and the variance interpolant v
  bool rescale_residual = false;              // multiply residual outputs by 1/sqrt(2)
  int num_classes = 0;                        // > 0: class-conditional, with label num_classes as "null"
  // Super-resolution (cascaded diffusion, models/diffusion/super_res.h): the network input is
  // concat(x_t, up(low), channels), so conv_in takes in_channels + concat_channels; the
  // output is still out_channels(). low_res_size is the size of the low-resolution image
  // before its bilinear upsampling. Both 0 for an ordinary model; otherwise concat_channels
  // == in_channels (the low-res image has the image's channels) and low_res_size divides
  // image_size and is smaller.
  int concat_channels = 0;
  int low_res_size = 0;
  // Gaussian conditioning augmentation (CDM, Ho et al. 2022 sec. 3.2; models/diffusion/
  // super_res.h): the largest augmentation level trained, as a fraction of the T timesteps,
  // in [0, 1]; 0 = none (no extra parameters, the network of an SR model without it). When
  // > 0 the condition carries its level a as one more constant channel (the level plane)
  // that forward() cuts off before conv_in, and the level is embedded like a timestep:
  //   emb = time_embedding(t) [+ class_embedding(y)]
  //         + aug_embedding.linear_2(SiLU(aug_embedding.linear_1(timestep_embedding(a))))
  // (the same sinusoid and MLP shape as the time embedding, its own weights; diffusers'
  // TimestepEmbedding layout, built after conv_out so every other weight is drawn as before).
  double cond_augment = 0.0;
  // Guided distillation (Meng et al. 2023, "On Distillation of Guided Diffusion Models",
  // sec. 3; models/run/guided_distill.h): the network also takes the guidance weight w of
  // classifier-free guidance per sample (w = s - 1 for ddpm-sample's --guidance-scale s) and
  // embeds it like a timestep:
  //   emb += guidance_embedding.linear_2(SiLU(guidance_embedding.linear_1(
  //              timestep_embedding(1000 w))))
  // The factor 1000 spreads w in [0, ~10] over the sinusoid's frequencies as a timestep in
  // [0, T) is spread (diffusers' get_guidance_scale_embedding in its LCM pipeline scales w by
  // 1000 too). linear_2 starts at ZERO, so a fresh embedding adds exactly nothing: the
  // network is the conditional model it was copied from. Built last (after aug_embedding),
  // so every other weight is drawn as without it. Class-conditional models only.
  bool guidance_embedding = false;
  // Cross-attention conditioning on a token sequence (latent diffusion, Rombach et al. 2022
  // sec. 3.3): context_dim > 0 is the width D of the context [N, L, D] (the text encoder's
  // width) and makes every attention block of the network (down, middle, up) a
  // SpatialTransformer of transformer_depth BasicTransformerBlocks, named attentions.j as
  // the block it replaces (diffusers' Transformer2DModel names below that). 0 = none: the
  // network is exactly the one without these fields (same parameters, same draws).
  int context_dim = 0;
  int transformer_depth = 1;
  // A pooled context added to the timestep embedding (GLIDE sec. 2.3, Imagen, DeepFloyd IF;
  // diffusers' addition_embed_type = "text"): context_pool_heads > 0 builds add_embedding,
  // a TextTimeEmbedding (context_pool.h) with that many attention-pooling heads, and
  //   emb += add_embedding.norm2(add_embedding.proj(AttentionPooling(add_embedding.norm1(c))))
  // right after the time (and class) embedding, so every residual block sees the caption.
  // Needs a cross-attention model, heads dividing context_dim. Built last of all (after
  // guidance_embedding), so every other weight is drawn as without it; 0 = none: the
  // network is exactly the one without this field.
  int context_pool_heads = 0;
  // Video (Ho et al. 2022, "Video Diffusion Models"; models/unet/temporal.h): num_frames >= 2
  // makes a space-time factorised UNet. forward() then takes clips x [N, F, H, W, C] and
  // returns [N, F, H, W, out_channels()]; F = num_frames is the trained length, but any
  // F >= 1 runs (length extrapolation, see forward()); every 2D layer runs on the N*F
  // frames as images, and a TemporalAttention follows every resnet (after its spatial
  // attention when the level has one) of every down and up level, and the middle block's
  // attentions.0, named down_blocks.i.temp_attentions.j, mid_block.temp_attentions.0 and
  // up_blocks.i.temp_attentions.j. They are built after every other module, so a video
  // model draws the image model's weights exactly, and start as the identity (to_out zero):
  // a fresh video model is the image model applied frame by frame. t, labels, guidance
  // weights and the context are per clip. 0 = an image model (the network without them).
  // Still images also pass as one-frame clips [M, 1, H, W, C] (joint image-video training:
  // each temporal attention then attends only to the frame itself).
  int num_frames = 0;
  // Image-conditioned video (Emu Video, Girdhar et al. 2023, sec. 3): the network input is
  // concat(x_t, I, m) on the channels, with I the conditioning frame at frame 0 and zeros at
  // the other frames, and m a mask channel, 1 at frame 0 and 0 elsewhere, so conv_in takes
  // 2 in_channels + 1. The caller builds (I, m) with first_frame_condition() below. Video
  // models only.
  bool first_frame_condition = false;
  // Conditioning on several known frames (Ho et al. 2022 sec. 3.1, video extension): the same
  // network (conv_in still 2 in_channels + 1) sees k known frames at positions 0..k-1 of I
  // with m = 1 there (frames_condition() below); condition_frames = K is the largest k it was
  // trained on (each training clip draws k ~ Uniform{1..K}). 1 <= K <= num_frames - 1 with
  // first_frame_condition (1: every first-frame model), 0 without it. config.json has the
  // key only when K > 1, so a file without it means 1.
  int condition_frames = 0;
  // Temporal convolutions (temporal_conv.h; Make-A-Video's pseudo-3D convolutions, Tran et
  // al.'s (2+1)D): a video model with temporal_conv has a TemporalConv (kernel 3 over the
  // frames, identity at construction) right after every resnet, before its spatial and
  // temporal attention, named down_blocks.i.temp_convs.j, mid_block.temp_convs.0/1 and
  // up_blocks.i.temp_convs.j. Built after the temporal attention layers, so every other
  // weight is drawn as without them. false = none; config.json has the key only when true.
  bool temporal_conv = false;
  // Frame positions in every TemporalAttention (models/unet/temporal.h): "sinusoid" adds the
  // fixed sinusoidal frame embedding to the tokens; "relative" (Ho et al. 2022 sec. 3) learns
  // a logit bias per head and signed frame distance clipped to [-R, R] (a relative_bias
  // parameter [2R + 1, heads] per block). Video models only; config.json has the key only
  // for "relative", so a file without it means "sinusoid".
  std::string temporal_position = "sinusoid";
  // R of relative positions (ddpm-train --temporal-max-distance): distances beyond R share
  // the rows of +-R (Shaw et al. 2018 sec. 3.2), so the table's size, and the attention
  // range the model learns, do not depend on the clip length. 0 = the default R =
  // num_frames - 1 (every distance of a training clip has its own row); config.json has the
  // key only when > 0, so a file without it (every run before the option) means F - 1.
  // relative_max_distance() resolves it.
  int temporal_max_distance = 0;
  // Base-2 Fourier features of x_t (VDM, Kingma et al. 2021; fourier_features.h): {n_min,
  // n_max} appends sin and cos of 2 pi 2^n x_t, n = n_min..n_max, per channel of x_t after
  // the input channels, so conv_in takes conv_in_channels(). Empty = none (config.json has
  // the key "fourier_features" only when set).
  std::vector<int> fourier_features;

  int out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  // conv_in's input: x_t, a super-resolution condition, a first-frame condition (I, m).
  int input_channels() const {
    return in_channels + concat_channels + (first_frame_condition ? in_channels + 1 : 0);
  }
  bool fourier() const { return !fourier_features.empty(); }
  // conv_in's width: input_channels() plus 2 in_channels (n_max - n_min + 1) Fourier features.
  int conv_in_channels() const {
    return input_channels() + (fourier() ? 2 * in_channels * (fourier_features[1] - fourier_features[0] + 1) : 0);
  }
  bool super_res() const { return low_res_size > 0; }
  bool cond_augmented() const { return cond_augment > 0; }
  // The channels forward() takes: input_channels() plus the level plane when augmented.
  int forward_channels() const { return input_channels() + (cond_augmented() ? 1 : 0); }
  bool cross_attention() const { return context_dim > 0; }
  bool context_pooled() const { return context_pool_heads > 0; }
  bool video() const { return num_frames > 0; }
  // TemporalAttention's max_distance R: with relative positions temporal_max_distance, or
  // num_frames - 1 when that is 0; 0 (the sinusoidal embedding) otherwise.
  std::int64_t relative_max_distance() const {
    if (temporal_position != "relative") return 0;
    return temporal_max_distance > 0 ? temporal_max_distance : num_frames - 1;
  }
  // The original DDPM CIFAR-10 network: 35.7M parameters.
  static UNetConfig ddpm_cifar10();
  // Throws ValueError naming the first inconsistent field.
  void validate() const;
};

// The condition of a frame-conditioned video model (first_frame_condition; Emu Video, and
// Ho et al. 2022 sec. 3.1 for k > 1): known [N, k, H, W, C] -> [N, num_frames, H, W, C + 1],
// frames 0..k-1 holding (known frame, 1) and every later frame zeros; concatenated after x_t
// on the channels it is the model's input. 1 <= k <= num_frames - 1 (at least one frame is
// generated). Built from concat and zeros only, so it runs on any device, on the tape (a
// gradient reaches `known`).
Tensor frames_condition(const Tensor& known, int num_frames);
// The k = 1 case: frame0 [N, H, W, C] -> frames_condition(frame0 as [N, 1, H, W, C]).
// num_frames >= 2.
Tensor first_frame_condition(const Tensor& frame0, int num_frames);

// Additive residuals from a ControlNet (controlnet.h; Zhang et al. 2023 sec. 3.2, diffusers'
// down_block_additional_residuals / mid_block_additional_residual): down[k] is added to the
// k-th skip tensor the down path pushes (shape [N, H_k, W_k, skip_channels()[k]]) before the
// up path concatenates it, mid to the middle block's output [N, H', W', C'].
struct ControlResiduals {
  std::vector<Tensor> down;
  Tensor mid;
};

// DownHalf (down_half.h) builds and runs the time and class embeddings, the down path and the
// middle block; the UNet adds the up path and the output head.
class UNet : public DownHalf {
 public:
  UNet(const UNetConfig& cfg, Generator& gen, Device device);
  ~UNet() override;

  // x [N, H, W, C] (a video model: [N, F, H, W, C], everything else per clip); t the (original, un-respaced) timestep per sample, possibly fractional;
  // labels per sample in [0, num_classes] (num_classes is the null label) when
  // class-conditional, empty otherwise.
  // A video model takes any F >= 1, not only num_frames: no layer is tied to one F.
  // The temporal attention's sinusoidal embedding has a row for every frame index (rows
  // 0..F-1 of the same formula) and its relative bias clips distances to [-R, R]; the
  // temporal convolution pads each clip's ends. Clips longer than the trained num_frames
  // extrapolate (Ho et al. 2022 sec. 3): they run, but their quality is not guaranteed.
  Tensor forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                 const nn::Context& ctx) const;
  // The same with a ControlNet's residuals added (see ControlResiduals; nullptr is the
  // overload above, the same ops in the same order). ValueError when their count or shapes
  // do not match this network's skips.
  Tensor forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                 const nn::Context& ctx, const ControlResiduals* residuals) const;
  // A guidance-embedded model (guidance_embedding): guidance_w holds one weight w per sample
  // (Meng et al.'s w = s - 1). ValueError for a model without the embedding; the overloads
  // without weights throw ValueError for a model with it (it would silently ignore w).
  Tensor forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                 const std::vector<double>& guidance_w, const nn::Context& ctx,
                 const ControlResiduals* residuals = nullptr) const;

  // A context model (context_dim > 0): context [N, L, context_dim] is what its spatial
  // transformers cross-attend to, any L >= 1. ValueError for a model without cross-attention;
  // the overloads above throw ValueError for a context model ("needs a context").
  Tensor forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                 const Tensor& context, const nn::Context& ctx) const;

  const UNetConfig& config() const { return cfg_; }
  Device device() const { return device_; }

 private:
  UNetConfig cfg_;
  Device device_;
  std::vector<std::unique_ptr<ResolutionLevel>> up_;
  std::unique_ptr<nn::GroupNorm> norm_out_;
  std::unique_ptr<nn::Conv2d> conv_out_;
  std::unique_ptr<nn::Linear> aug_1_, aug_2_;  // aug_embedding.linear_1/2 (cond_augment > 0)
  std::unique_ptr<nn::Linear> guide_1_, guide_2_;  // guidance_embedding.linear_1/2 (guidance_embedding)
  std::unique_ptr<TextTimeEmbedding> add_embedding_;  // context_pool_heads > 0

  Tensor forward_impl(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                      const std::vector<double>* guidance_w, const nn::Context& ctx,
                      const ControlResiduals* residuals, const Tensor& context) const;
};

}  // namespace ddpm::unet
