// models/unet/down_half.cpp: see down_half.h.
#include "models/unet/down_half.h"

#include "engine/ops/elementwise.h"

namespace ddpm::unet {

// --- ResolutionLevel ---------------------------------------------------------------------------

void ResolutionLevel::add_resnet(std::unique_ptr<ResnetBlock> r) {
  register_module("resnets." + std::to_string(resnets.size()), r.get());
  resnets.push_back(std::move(r));
}

void ResolutionLevel::add_attention(std::unique_ptr<AttentionBlock> a) {
  register_module("attentions." + std::to_string(attentions.size()), a.get());
  attentions.push_back(std::move(a));
}

void ResolutionLevel::add_transformer(std::unique_ptr<SpatialTransformer> t) {
  register_module("attentions." + std::to_string(transformers.size()), t.get());
  transformers.push_back(std::move(t));
}

Tensor ResolutionLevel::attend(std::size_t j, const Tensor& h, const Tensor& context, const nn::Context& ctx) const {
  if (!transformers.empty()) return transformers[j]->forward(h, context, ctx);
  return attentions[j]->forward(h, ctx);
}

void ResolutionLevel::add_temporal(std::unique_ptr<TemporalAttention> t) {
  register_module("temp_attentions." + std::to_string(temporals.size()), t.get());
  temporals.push_back(std::move(t));
}

Tensor ResolutionLevel::attend_frames(std::size_t j, const Tensor& h, std::int64_t frames,
                                      const nn::Context& ctx) const {
  if (frames <= 0 || temporals.empty()) return h;
  return temporals[j]->forward(h, frames, ctx);
}

void ResolutionLevel::add_temporal_conv(std::unique_ptr<TemporalConv> c) {
  register_module("temp_convs." + std::to_string(temporal_convs.size()), c.get());
  temporal_convs.push_back(std::move(c));
}

Tensor ResolutionLevel::conv_frames(std::size_t j, const Tensor& h, std::int64_t frames,
                                    const nn::Context& ctx) const {
  if (frames <= 0 || temporal_convs.empty()) return h;
  return temporal_convs[j]->forward(h, frames, ctx);
}

void ResolutionLevel::set_resampler(const char* name, std::unique_ptr<Downsample> d, std::unique_ptr<Upsample> u,
                                    std::unique_ptr<ResnetBlock> r) {
  down = std::move(d);
  up = std::move(u);
  res_resample = std::move(r);
  nn::Module* m = down ? static_cast<nn::Module*>(down.get())
                  : up ? static_cast<nn::Module*>(up.get())
                       : static_cast<nn::Module*>(res_resample.get());
  register_module(name, m);
}

Tensor ResolutionLevel::resample(const Tensor& h, const Tensor& emb, const nn::Context& ctx) const {
  if (down) return down->forward(h);
  if (up) return up->forward(h);
  return res_resample->forward(h, emb, ctx);
}

BlockOptions level_block_options(const LevelConfig& c, double output_scale) {
  BlockOptions opt;
  opt.norm_groups = c.norm_groups;
  opt.norm_eps = c.norm_eps;
  opt.dropout = c.dropout;
  opt.scale_shift = c.use_scale_shift_norm;
  opt.output_scale = output_scale;
  return opt;
}

// --- DownHalf -----------------------------------------------------------------------------------

DownHalf::DownHalf(const LevelConfig& cfg, std::int64_t input_channels, int num_class_embeds,
                   const BlockOptions& opt, Generator& gen, Device device, int context_dim,
                   int transformer_depth)
    : model_channels_(cfg.model_channels),
      time_embedding_(cfg.time_embedding),
      opt_(opt),
      context_dim_(context_dim),
      transformer_depth_(transformer_depth) {
  const std::int64_t c0 = cfg.model_channels, emb_dim = cfg.time_embed_dim();
  // Construction order is the order the initial weights are drawn in; keep it.
  conv_in_ = std::make_unique<nn::Conv2d>(input_channels, c0, 3, 1, 1, gen, device);
  register_module("conv_in", conv_in_.get());
  time_1_ = std::make_unique<nn::Linear>(c0, emb_dim, gen, device);
  register_module("time_embedding.linear_1", time_1_.get());
  time_2_ = std::make_unique<nn::Linear>(emb_dim, emb_dim, gen, device);
  register_module("time_embedding.linear_2", time_2_.get());
  if (num_class_embeds > 0) {
    class_emb_ = std::make_unique<nn::Embedding>(num_class_embeds, emb_dim, gen, device);
    register_module("class_embedding", class_emb_.get());
  }

  // skip_channels_ records the channels of every tensor encode() pushes for the UNet's skip
  // connections (a stack the up path pops during its construction).
  std::int64_t ch = c0;
  skip_channels_.push_back(ch);
  for (int i = 0; i < cfg.levels(); ++i) {
    auto level = std::make_unique<ResolutionLevel>();
    const std::int64_t out = cfg.level_channels(i);
    for (int j = 0; j < cfg.num_res_blocks; ++j) {
      level->add_resnet(std::make_unique<ResnetBlock>(ch, out, emb_dim, opt, Resample::none, gen, device));
      ch = out;
      if (cfg.wants_attention(i)) add_attention_layer(*level, cfg, ch, gen, device);
      skip_channels_.push_back(ch);
    }
    if (i + 1 < cfg.levels()) {
      if (cfg.resblock_updown)
        level->set_resampler("downsamplers.0", nullptr, nullptr,
                             std::make_unique<ResnetBlock>(ch, ch, emb_dim, opt, Resample::down, gen, device));
      else
        level->set_resampler("downsamplers.0", std::make_unique<Downsample>(ch, gen, device), nullptr, nullptr);
      skip_channels_.push_back(ch);
    }
    register_module("down_blocks." + std::to_string(i), level.get());
    down_.push_back(std::move(level));
  }

  mid_res1_ = std::make_unique<ResnetBlock>(ch, ch, emb_dim, opt, Resample::none, gen, device);
  register_module("mid_block.resnets.0", mid_res1_.get());
  if (context_dim_ > 0) {
    mid_transformer_ = std::make_unique<SpatialTransformer>(ch, context_dim_, cfg.heads_for(ch), transformer_depth_,
                                                            cfg.norm_groups, gen, device);
    register_module("mid_block.attentions.0", mid_transformer_.get());
  } else {
    mid_attn_ = std::make_unique<AttentionBlock>(ch, cfg.heads_for(ch), cfg.norm_groups, cfg.norm_eps, gen, device);
    register_module("mid_block.attentions.0", mid_attn_.get());
  }
  mid_res2_ = std::make_unique<ResnetBlock>(ch, ch, emb_dim, opt, Resample::none, gen, device);
  register_module("mid_block.resnets.1", mid_res2_.get());
  deepest_channels_ = ch;
}

DownHalf::~DownHalf() = default;

void DownHalf::add_attention_layer(ResolutionLevel& level, const LevelConfig& cfg, std::int64_t channels,
                                   Generator& gen, Device device) const {
  const int heads = cfg.heads_for(channels);
  if (context_dim_ > 0)
    level.add_transformer(std::make_unique<SpatialTransformer>(channels, context_dim_, heads, transformer_depth_,
                                                               cfg.norm_groups, gen, device));
  else
    level.add_attention(std::make_unique<AttentionBlock>(channels, heads, cfg.norm_groups, cfg.norm_eps, gen, device));
}

void DownHalf::add_temporal_layers(const LevelConfig& cfg, Generator& gen, Device device, std::int64_t max_distance) {
  for (int i = 0; i < static_cast<int>(down_.size()); ++i) {
    const std::int64_t ch = cfg.level_channels(i);  // every resnet of level i outputs this width
    for (std::size_t j = 0; j < down_[i]->resnets.size(); ++j)
      down_[i]->add_temporal(std::make_unique<TemporalAttention>(ch, cfg.heads_for(ch), cfg.norm_groups,
                                                                 cfg.norm_eps, gen, device, max_distance));
  }
  mid_temporal_ = std::make_unique<TemporalAttention>(deepest_channels_, cfg.heads_for(deepest_channels_),
                                                      cfg.norm_groups, cfg.norm_eps, gen, device, max_distance);
  register_module("mid_block.temp_attentions.0", mid_temporal_.get());
}

void DownHalf::add_temporal_conv_layers(const LevelConfig& cfg, Generator& gen, Device device) {
  for (int i = 0; i < static_cast<int>(down_.size()); ++i) {
    const std::int64_t ch = cfg.level_channels(i);
    for (std::size_t j = 0; j < down_[i]->resnets.size(); ++j)
      down_[i]->add_temporal_conv(std::make_unique<TemporalConv>(ch, cfg.norm_groups, cfg.norm_eps, gen, device));
  }
  mid_conv1_ = std::make_unique<TemporalConv>(deepest_channels_, cfg.norm_groups, cfg.norm_eps, gen, device);
  register_module("mid_block.temp_convs.0", mid_conv1_.get());
  mid_conv2_ = std::make_unique<TemporalConv>(deepest_channels_, cfg.norm_groups, cfg.norm_eps, gen, device);
  register_module("mid_block.temp_convs.1", mid_conv2_.get());
}

Tensor DownHalf::embed(const Tensor& t, const std::vector<std::int64_t>& labels) const {
  Tensor emb = timestep_embedding(t, model_channels_, time_embedding_);  // [N, mc]
  emb = time_2_->forward(silu(time_1_->forward(emb)));                  // [N, 4 mc]
  if (class_emb_) emb = add(emb, class_emb_->forward(labels));
  return emb;
}

Tensor DownHalf::encode(const Tensor& x, const Tensor& emb, const nn::Context& ctx,
                        std::vector<Tensor>* skips, const Tensor& after_conv_in, const Tensor& context,
                        std::int64_t frames) const {
  Tensor h = conv_in_->forward(x);  // [N, H, W, mc]
  if (after_conv_in.defined()) h = add(h, after_conv_in);
  if (skips) skips->push_back(h);
  for (const auto& level : down_) {
    for (std::size_t j = 0; j < level->resnets.size(); ++j) {
      h = level->resnets[j]->forward(h, emb, ctx);
      h = level->conv_frames(j, h, frames, ctx);  // temporal_conv video models: frames f-1, f, f+1
      if (level->has_attention()) h = level->attend(j, h, context, ctx);
      h = level->attend_frames(j, h, frames, ctx);  // video models: over the frames of each clip
      if (skips) skips->push_back(h);
    }
    if (level->has_resampler()) {
      h = level->resample(h, emb, ctx);
      if (skips) skips->push_back(h);
    }
  }
  h = mid_res1_->forward(h, emb, ctx);
  if (frames > 0 && mid_conv1_) h = mid_conv1_->forward(h, frames, ctx);
  h = mid_transformer_ ? mid_transformer_->forward(h, context, ctx) : mid_attn_->forward(h, ctx);
  if (frames > 0 && mid_temporal_) h = mid_temporal_->forward(h, frames, ctx);
  h = mid_res2_->forward(h, emb, ctx);
  if (frames > 0 && mid_conv2_) h = mid_conv2_->forward(h, frames, ctx);
  return h;  // [N, H', W', C']
}

}  // namespace ddpm::unet
