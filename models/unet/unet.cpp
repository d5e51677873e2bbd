// models/unet/unet.cpp: see unet.h.
#include "models/unet/unet.h"

#include <cmath>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/transpose.h"
#include "models/unet/context_pool.h"
#include "models/unet/fourier_features.h"

namespace ddpm::unet {

UNetConfig UNetConfig::ddpm_cifar10() { return UNetConfig{}; }

void UNetConfig::validate() const {
  validate_levels("UNet config");
  DDPM_CHECK(num_classes >= 0, "UNet config: num_classes must be >= 0");
  DDPM_CHECK(concat_channels >= 0 && low_res_size >= 0,
             "UNet config: concat_channels and low_res_size must be >= 0, got " << concat_channels << " and "
                                                                                << low_res_size);
  DDPM_CHECK((concat_channels > 0) == (low_res_size > 0),
             "UNet config: a super-resolution model needs both concat_channels and low_res_size (got "
                 << concat_channels << " and " << low_res_size << ")");
  if (super_res()) {
    DDPM_CHECK(concat_channels == in_channels,
               "UNet config: concat_channels " << concat_channels << " must equal in_channels " << in_channels
                                               << " (the concatenated low-res image has the image's channels)");
    DDPM_CHECK(low_res_size < image_size && image_size % low_res_size == 0,
               "UNet config: low_res_size " << low_res_size << " must be smaller than image_size " << image_size
                                            << " and divide it (area downsampling by an integer factor)");
  }
  DDPM_CHECK(cond_augment >= 0 && cond_augment <= 1,
             "UNet config: cond_augment must be a fraction of the timesteps in [0, 1], got " << cond_augment);
  DDPM_CHECK(!cond_augmented() || super_res(),
             "UNet config: cond_augment " << cond_augment
                                          << " (conditioning augmentation) needs a super-resolution model");
  DDPM_CHECK(!guidance_embedding || num_classes > 0,
             "UNet config: guidance_embedding (a guidance-distilled model, Meng et al. 2023) embeds the weight of "
             "classifier-free guidance and needs a class-conditional model (num_classes > 0)");
  DDPM_CHECK(context_dim >= 0, "UNet config: context_dim (the width of the cross-attention context) must be >= 0, got "
                                    << context_dim);
  DDPM_CHECK(transformer_depth >= 1,
             "UNet config: transformer_depth must be at least 1, got " << transformer_depth);
  DDPM_CHECK(cross_attention() || transformer_depth == 1,
             "UNet config: transformer_depth " << transformer_depth
                                               << " needs a cross-attention model (context_dim > 0); context_dim is 0");
  DDPM_CHECK(context_pool_heads >= 0,
             "UNet config: context_pool_heads (the heads of the pooled text embedding) must be >= 0, got "
                 << context_pool_heads);
  DDPM_CHECK(!context_pooled() || cross_attention(),
             "UNet config: context_pool_heads " << context_pool_heads
                                                << " pools a context and needs a cross-attention model (context_dim > "
                                                   "0); context_dim is 0");
  DDPM_CHECK(!context_pooled() || context_dim % context_pool_heads == 0,
             "UNet config: context_pool_heads " << context_pool_heads << " does not divide context_dim "
                                                << context_dim << " (each head takes context_dim / heads channels)");
  DDPM_CHECK(num_frames == 0 || num_frames >= 2,
             "UNet config: num_frames must be 0 (an image model) or at least 2 (a video model), got " << num_frames);
  DDPM_CHECK(!first_frame_condition || video(),
             "UNet config: first_frame_condition (Emu Video's image-conditioned video) needs a video model "
             "(num_frames >= 2); num_frames is 0");
  if (first_frame_condition)
    DDPM_CHECK(condition_frames >= 1 && condition_frames <= num_frames - 1,
               "UNet config: condition_frames must be in [1, num_frames - 1 = "
                   << num_frames - 1 << "] for a frame-conditioned video model (at least one frame is generated), got "
                   << condition_frames);
  else
    DDPM_CHECK(condition_frames == 0, "UNet config: condition_frames " << condition_frames
                                                                       << " needs first_frame_condition (a "
                                                                          "frame-conditioned video model)");
  DDPM_CHECK(!temporal_conv || video(), "UNet config: temporal_conv (convolutions over the frames) needs a video "
                                        "model (num_frames >= 2); num_frames is " << num_frames);
  DDPM_CHECK(temporal_position == "sinusoid" || temporal_position == "relative",
             "UNet config: temporal_position must be \"sinusoid\" or \"relative\", got \"" << temporal_position
                                                                                            << "\"");
  DDPM_CHECK(temporal_position == "sinusoid" || video(),
             "UNet config: temporal_position \"" << temporal_position
                                                  << "\" positions the frames of a video model (num_frames >= 2); "
                                                     "num_frames is 0");
  DDPM_CHECK(temporal_max_distance >= 0,
             "UNet config: temporal_max_distance must be at least 1 (or 0: num_frames - 1), got "
                 << temporal_max_distance);
  DDPM_CHECK(temporal_max_distance == 0 || (video() && temporal_position == "relative"),
             "UNet config: temporal_max_distance " << temporal_max_distance
                                                   << " clips the frame distances of relative positions and needs a "
                                                      "video model with temporal_position \"relative\"");
  DDPM_CHECK(fourier_features.empty() ||
                 (fourier_features.size() == 2 && fourier_features[0] <= fourier_features[1] &&
                  fourier_features[0] >= -16 && fourier_features[1] <= 16),
             "UNet config: fourier_features must be empty or {n_min, n_max} with -16 <= n_min <= n_max <= 16 (an "
             "angle 2 pi 2^n x past 2^16 keeps no digits of an f32 input), got "
                 << fourier_features.size() << " values" << (fourier_features.size() == 2
                                                                ? " " + std::to_string(fourier_features[0]) + ", " +
                                                                      std::to_string(fourier_features[1])
                                                                : std::string()));
  if (video()) {
    DDPM_CHECK(!super_res(), "UNet config: a video model (num_frames "
                                 << num_frames << ") cannot be a super-resolution model (low_res_size "
                                 << low_res_size << "); set one or the other");
    DDPM_CHECK(!cond_augmented(), "UNet config: a video model (num_frames "
                                      << num_frames << ") does not support cond_augment " << cond_augment);
    // Every resnet gets a temporal attention layer, so every width needs a head split.
    for (int i = 0; i < levels(); ++i) {
      const std::int64_t c = level_channels(i);
      const int heads = heads_for(c);
      DDPM_CHECK(heads > 0 && c % heads == 0 && (num_head_channels <= 0 || c % num_head_channels == 0),
                 "UNet config: a video model puts temporal attention at every level, but level "
                     << i << " has " << c << " channels, which "
                     << (num_head_channels > 0 ? "num_head_channels " + std::to_string(num_head_channels)
                                               : "num_heads " + std::to_string(num_heads))
                     << " does not divide");
    }
  }
}

Tensor frames_condition(const Tensor& known, int num_frames) {
  DDPM_CHECK(known.defined() && known.ndim() == 5,
             "frames_condition: the known frames must be clips [N, k, H, W, C], got "
                 << (known.defined() ? shape_str(known.shape()) : std::string("an undefined tensor")));
  const std::int64_t n = known.dim(0), k = known.dim(1), h = known.dim(2), w = known.dim(3), c = known.dim(4);
  DDPM_CHECK(k >= 1 && k < num_frames, "frames_condition: " << k << " known frame(s) for clips of " << num_frames
                                                            << " frames; need 1 <= k <= " << num_frames - 1
                                                            << " (at least one frame to generate)");
  const Tensor mask = Tensor::full({n, k, h, w, 1}, 1.0, known.dtype(), known.device());  // m = 1 at 0..k-1
  const Tensor head = concat({known, mask}, -1);                                          // (I, m) [N, k, H, W, C+1]
  const Tensor rest = Tensor::zeros({n, num_frames - k, h, w, c + 1}, known.dtype(), known.device());
  return concat({head, rest}, 1);  // [N, F, H, W, C + 1]
}

Tensor first_frame_condition(const Tensor& frame0, int num_frames) {
  DDPM_CHECK(frame0.defined() && frame0.ndim() == 4,
             "first_frame_condition: the conditioning frame must be an image batch [N, H, W, C], got "
                 << (frame0.defined() ? shape_str(frame0.shape()) : std::string("an undefined tensor")));
  DDPM_CHECK(num_frames >= 2, "first_frame_condition: num_frames must be at least 2, got " << num_frames);
  return frames_condition(frame0.reshape({frame0.dim(0), 1, frame0.dim(1), frame0.dim(2), frame0.dim(3)}),
                          num_frames);
}

UNet::UNet(const UNetConfig& cfg, Generator& gen, Device device)
    : DownHalf(validated_config(cfg), cfg.conv_in_channels(), cfg.num_classes > 0 ? cfg.num_classes + 1 : 0,  // + null label
               level_block_options(cfg, cfg.rescale_residual ? 1.0 / std::sqrt(2.0) : 1.0), gen, device,
               cfg.context_dim, cfg.transformer_depth),
      cfg_(cfg),
      device_(device) {
  const int levels = cfg.levels();
  const std::int64_t emb_dim = cfg.time_embed_dim();
  const BlockOptions& opt = block_options();

  // Up path: num_res_blocks + 1 blocks per level, each consuming one skip (concatenated
  // after the running features, as diffusers does: cat([h, skip], channels)). `skips` holds
  // the channels of every tensor the down path pushes, popped in reverse.
  std::vector<std::int64_t> skips = skip_channels();
  std::int64_t ch = deepest_channels();
  for (int i = 0; i < levels; ++i) {
    const int level_index = levels - 1 - i;
    auto level = std::make_unique<ResolutionLevel>();
    const std::int64_t out = cfg.level_channels(level_index);
    for (int j = 0; j <= cfg.num_res_blocks; ++j) {
      const std::int64_t skip = skips.back();
      skips.pop_back();
      level->add_resnet(std::make_unique<ResnetBlock>(ch + skip, out, emb_dim, opt, Resample::none, gen, device));
      ch = out;
      if (cfg.wants_attention(level_index)) add_attention_layer(*level, cfg, ch, gen, device);
    }
    if (level_index > 0) {
      if (cfg.resblock_updown)
        level->set_resampler("upsamplers.0", nullptr, nullptr,
                             std::make_unique<ResnetBlock>(ch, ch, emb_dim, opt, Resample::up, gen, device));
      else
        level->set_resampler("upsamplers.0", nullptr, std::make_unique<Upsample>(ch, gen, device), nullptr);
    }
    register_module("up_blocks." + std::to_string(i), level.get());
    up_.push_back(std::move(level));
  }

  norm_out_ = std::make_unique<nn::GroupNorm>(cfg.norm_groups, ch, device, cfg.norm_eps);
  register_module("conv_norm_out", norm_out_.get());
  conv_out_ = std::make_unique<nn::Conv2d>(ch, cfg.out_channels(), 3, 1, 1, gen, device);
  conv_out_->zero_();
  register_module("conv_out", conv_out_.get());
  if (cfg.cond_augmented()) {  // last: the weights above are drawn exactly as without it
    aug_1_ = std::make_unique<nn::Linear>(cfg.model_channels, emb_dim, gen, device);
    register_module("aug_embedding.linear_1", aug_1_.get());
    aug_2_ = std::make_unique<nn::Linear>(emb_dim, emb_dim, gen, device);
    register_module("aug_embedding.linear_2", aug_2_.get());
  }
  if (cfg.guidance_embedding) {  // last of all, for the same reason; linear_2 zero (unet.h)
    guide_1_ = std::make_unique<nn::Linear>(cfg.model_channels, emb_dim, gen, device);
    register_module("guidance_embedding.linear_1", guide_1_.get());
    guide_2_ = std::make_unique<nn::Linear>(emb_dim, emb_dim, gen, device);
    guide_2_->weight.zero_();
    guide_2_->bias.zero_();
    register_module("guidance_embedding.linear_2", guide_2_.get());
  }
  if (cfg.context_pooled()) {  // after everything else: the weights above are drawn as without it
    add_embedding_ = std::make_unique<TextTimeEmbedding>(cfg.context_dim, emb_dim, cfg.context_pool_heads, gen, device);
    register_module("add_embedding", add_embedding_.get());
  }
  if (cfg.video()) {  // after everything else: the image network's weights are drawn as without them
    add_temporal_layers(cfg, gen, device, cfg.relative_max_distance());  // down levels, then the middle block
    for (int i = 0; i < levels; ++i) {
      const std::int64_t ch = cfg.level_channels(levels - 1 - i);  // every resnet of up level i outputs this
      for (std::size_t j = 0; j < up_[i]->resnets.size(); ++j)
        up_[i]->add_temporal(std::make_unique<TemporalAttention>(ch, cfg.heads_for(ch), cfg.norm_groups,
                                                                 cfg.norm_eps, gen, device,
                                                                 cfg.relative_max_distance()));
    }
  }
  if (cfg.temporal_conv) {  // after the temporal attention: every weight above is drawn as without it
    add_temporal_conv_layers(cfg, gen, device);  // down levels, then the middle block's two
    for (int i = 0; i < levels; ++i) {
      const std::int64_t ch = cfg.level_channels(levels - 1 - i);
      for (std::size_t j = 0; j < up_[i]->resnets.size(); ++j)
        up_[i]->add_temporal_conv(std::make_unique<TemporalConv>(ch, cfg.norm_groups, cfg.norm_eps, gen, device));
    }
  }
}

UNet::~UNet() = default;

Tensor UNet::forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                     const nn::Context& ctx) const {
  return forward_impl(x, t, labels, nullptr, ctx, nullptr, Tensor());
}

Tensor UNet::forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                     const nn::Context& ctx, const ControlResiduals* residuals) const {
  return forward_impl(x, t, labels, nullptr, ctx, residuals, Tensor());
}

Tensor UNet::forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                     const std::vector<double>& guidance_w, const nn::Context& ctx,
                     const ControlResiduals* residuals) const {
  return forward_impl(x, t, labels, &guidance_w, ctx, residuals, Tensor());
}

Tensor UNet::forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                     const Tensor& context, const nn::Context& ctx) const {
  DDPM_CHECK(cfg_.cross_attention(), "UNet: a context was given but the model has no cross-attention (context_dim "
                                     "= 0), so it cannot take one");
  DDPM_CHECK(context.defined(), "UNet: the context is undefined; the model (context_dim = "
                                    << cfg_.context_dim << ") needs a context [N, L, " << cfg_.context_dim << "]");
  return forward_impl(x, t, labels, nullptr, ctx, nullptr, context);
}

Tensor UNet::forward_impl(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                          const std::vector<double>* guidance_w, const nn::Context& ctx,
                          const ControlResiduals* residuals, const Tensor& context) const {
  // A video model takes clips [N, F, H, W, C] and runs its 2D layers on the N*F frames
  // [N*F, H, W, C]; an image model takes [N, H, W, C]. n counts samples (clips).
  // A video model also takes still images as one-frame clips [M, 1, H, W, C] (joint
  // image-video training, Ho et al. 2022 sec. 3): temporal attention over a single token
  // has softmax weight 1, so each block computes x + to_out(to_v(norm(x) + p_0)), the
  // image's attention masked to itself, with the frame's own group-norm statistics.
  // Clips of any length F >= 1 run (unet.h forward): every temporal layer takes F from the
  // input, so a model trained on num_frames frames also samples longer or shorter clips.
  const std::int64_t frames = cfg_.video() && x.ndim() == 5 ? x.dim(1) : 0;
  if (cfg_.video()) {
    DDPM_CHECK(x.ndim() == 5, "UNet: input " << shape_str(x.shape()) << " is not a batch of clips; the model is a "
                                             << "video model (num_frames " << cfg_.num_frames << ") and takes [N, "
                                             << cfg_.num_frames << ", " << cfg_.image_size << ", " << cfg_.image_size
                                             << ", " << cfg_.forward_channels() << "]");
    DDPM_CHECK(frames >= 1, "UNet: input " << shape_str(x.shape()) << " has no frames per clip; the video model "
                                           << "takes clips of F >= 1 frames (trained on " << cfg_.num_frames << ")");
  } else {
    DDPM_CHECK(x.ndim() != 5, "UNet: input " << shape_str(x.shape())
                                             << " is a batch of clips [N, F, H, W, C], but the model is an image "
                                                "model (num_frames 0) and takes [N, "
                                             << cfg_.image_size << ", " << cfg_.image_size << ", "
                                             << cfg_.forward_channels() << "]");
  }
  const Tensor x4 = cfg_.video() ? x.reshape({x.dim(0) * frames, x.dim(2), x.dim(3), x.dim(4)}) : x;  // [N(*F), H, W, C]
  const std::int64_t n = x.ndim() == 4 || cfg_.video() ? x.dim(0) : -1;
  DDPM_CHECK(x4.ndim() == 4 && x4.dim(1) == cfg_.image_size && x4.dim(2) == cfg_.image_size &&
                 x4.dim(3) == cfg_.forward_channels(),
             "UNet: input " << shape_str(x.shape()) << " does not match the model's [N, "
                            << (cfg_.video() ? std::to_string(frames) + ", " : std::string()) << cfg_.image_size
                            << ", " << cfg_.image_size << ", " << cfg_.forward_channels() << "]"
                            << (cfg_.super_res() ? " (a super-resolution model: x_t concatenated with its " +
                                                       std::to_string(cfg_.low_res_size) +
                                                       "-pixel low-res condition upsampled" +
                                                       (cfg_.cond_augmented() ? " and its augmentation level plane" : "") +
                                                       ", super_res.h)"
                                                 : std::string())
                            << (cfg_.first_frame_condition
                                    ? " (an image-conditioned video model: x_t concatenated with "
                                      "first_frame_condition(), unet.h)"
                                    : std::string()));
  DDPM_CHECK(static_cast<std::int64_t>(t.size()) == n, "UNet: " << t.size() << " timesteps for a batch of " << n);
  if (cfg_.num_classes > 0) {
    DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
               "UNet: the model is class-conditional and needs one label per sample (" << labels.size()
                                                                                      << " labels for " << n << ")");
  } else {
    DDPM_CHECK(labels.empty(), "UNet: labels were given but the model is unconditional (num_classes = 0)");
  }
  if (cfg_.guidance_embedding) {
    DDPM_CHECK(guidance_w != nullptr,
               "UNet: the model is guidance-distilled (it has a guidance_embedding) and needs one guidance weight w "
               "per sample; the call gave none");
    DDPM_CHECK(static_cast<std::int64_t>(guidance_w->size()) == n,
               "UNet: " << guidance_w->size() << " guidance weights for a batch of " << n);
  } else {
    DDPM_CHECK(guidance_w == nullptr, "UNet: guidance weights were given but the model has no guidance_embedding "
                                      "(it is not guidance-distilled), so it cannot take them");
  }

  if (cfg_.cross_attention()) {
    DDPM_CHECK(context.defined(), "UNet: the model cross-attends to a context (context_dim = "
                                      << cfg_.context_dim
                                      << ") and needs a context [N, L, D]; call the forward that takes one");
    DDPM_CHECK(context.ndim() == 3 && context.dim(0) == n && context.dim(1) >= 1 && context.dim(2) == cfg_.context_dim,
               "UNet: context " << shape_str(context.shape()) << " does not match the model's [" << n << ", L, "
                                << cfg_.context_dim << "] (batch, tokens, context_dim)");
    DDPM_CHECK(context.dtype() == x.dtype() && context.device() == x.device(),
               "UNet: the context's dtype or device differs from the input's");
  }

  // Timestep embedding -> MLP (+ class embedding), in x's dtype (f64 for the CPU reference
  // checks).   emb [N, 4 * model_channels]
  Tensor emb = embed(Tensor::from_vector(t, {n}, x.dtype(), x.device()), labels);
  // The pooled context (context_pool.h), as diffusers' get_aug_embed: emb += add_embedding(c).
  if (cfg_.context_pooled()) emb = add(emb, add_embedding_->forward(context));  // [N, 4 mc]
  Tensor net_in = x;
  if (cfg_.cond_augmented()) {
    // The level plane (super_res.h): the last channel, constant per row; its pixel (0, 0) is
    // the augmentation level a, embedded like a timestep and added (CDM sec. 3.2).
    const std::int64_t c = cfg_.input_channels();
    const Tensor level = slice(slice(slice(x, 3, c, 1), 1, 0, 1), 2, 0, 1).reshape({n});  // [N]
    const Tensor aug = timestep_embedding(level, cfg_.model_channels, cfg_.time_embedding);  // [N, mc]
    emb = add(emb, aug_2_->forward(silu(aug_1_->forward(aug))));                           // [N, 4 mc]
    net_in = slice(x, 3, 0, c);                                                             // [N, H, W, C + Cc]
  }
  if (cfg_.guidance_embedding) {
    // The guidance weight, scaled to the range of a timestep and embedded like one (unet.h).
    std::vector<double> scaled(guidance_w->size());
    for (std::size_t k = 0; k < scaled.size(); ++k) scaled[k] = 1000.0 * (*guidance_w)[k];
    const Tensor w = Tensor::from_vector(scaled, {n}, x.dtype(), x.device());                // [N]
    const Tensor g = timestep_embedding(w, cfg_.model_channels, cfg_.time_embedding);      // [N, mc]
    emb = add(emb, guide_2_->forward(silu(guide_1_->forward(g))));                         // [N, 4 mc]
  }
  DDPM_CHECK(!residuals || !cfg_.video(),
             "UNet: ControlNet residuals were given to a video model (num_frames " << cfg_.num_frames
                                                                                   << "); ControlNet supports image "
                                                                                      "models only");
  Tensor frame_context = context;
  if (cfg_.video()) {
    // Per-clip conditioning, repeated for each of the clip's F frames (consecutive rows).
    const std::int64_t d = emb.dim(1);
    emb = expand_to(emb.reshape({n, 1, d}), {n, frames, d}).reshape({n * frames, d});  // [N*F, 4 mc]
    if (context.defined()) {
      const std::int64_t l = context.dim(1), cd = context.dim(2);
      frame_context = expand_to(context.reshape({n, 1, l, cd}), {n, frames, l, cd}).reshape({n * frames, l, cd});
    }
    net_in = x4;  // [N*F, H, W, C]
  }
  if (cfg_.fourier())  // VDM's Fourier features of x_t after the input channels (fourier_features.h)
    net_in = concat({net_in, base2_fourier_features(slice(net_in, 3, 0, cfg_.in_channels), cfg_.fourier_features[0],
                                                    cfg_.fourier_features[1])},
                    -1);  // [N(*F), H, W, conv_in_channels()]
  std::vector<Tensor> skips;
  Tensor h = encode(net_in, emb, ctx, &skips, Tensor(), frame_context, frames);  // down path and middle block
  if (residuals) {
    DDPM_CHECK(residuals->down.size() == skips.size() && residuals->mid.defined() &&
                   residuals->mid.shape() == h.shape(),
               "UNet: the ControlNet residuals (" << residuals->down.size() << " down, mid "
                                                  << (residuals->mid.defined() ? shape_str(residuals->mid.shape())
                                                                               : std::string("none"))
                                                  << ") do not fit the network's " << skips.size()
                                                  << " skips and middle output " << shape_str(h.shape()));
    for (std::size_t k = 0; k < skips.size(); ++k) {
      DDPM_CHECK(residuals->down[k].shape() == skips[k].shape(),
                 "UNet: ControlNet residual " << k << " is " << shape_str(residuals->down[k].shape())
                                              << "; skip " << k << " is " << shape_str(skips[k].shape()));
      skips[k] = add(skips[k], residuals->down[k]);
    }
    h = add(h, residuals->mid);
  }
  for (const auto& level : up_) {
    for (std::size_t j = 0; j < level->resnets.size(); ++j) {
      h = concat({h, skips.back()}, -1);
      skips.pop_back();
      h = level->resnets[j]->forward(h, emb, ctx);
      h = level->conv_frames(j, h, frames, ctx);  // temporal_conv video models: frames f-1, f, f+1
      if (level->has_attention()) h = level->attend(j, h, frame_context, ctx);
      h = level->attend_frames(j, h, frames, ctx);  // video models: over the frames of each clip
    }
    if (level->has_resampler()) h = level->resample(h, emb, ctx);
  }
  Tensor out = conv_out_->forward(norm_out_->forward(h, /*silu=*/true));  // [N(*F), H, W, out]
  if (cfg_.video()) out = out.reshape({n, frames, cfg_.image_size, cfg_.image_size, cfg_.out_channels()});
  return out;
}

}  // namespace ddpm::unet
