#include "models/unet/unet.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"

namespace ddpm::unet {

UNetConfig UNetConfig::ddpm_cifar10() { return UNetConfig{}; }

void check_level_layout(const char* what, const LevelLayout& l) {
  const int levels = static_cast<int>(l.channel_mult.size());
  DDPM_CHECK(levels >= 1, what << ": channel_mult is empty");
  DDPM_CHECK(l.image_size > 0 && l.in_channels > 0 && l.model_channels > 0,
             what << ": image_size, in_channels and model_channels must be positive, got " << l.image_size << ", "
                  << l.in_channels << " and " << l.model_channels);
  DDPM_CHECK(l.image_size % (1 << (levels - 1)) == 0,
             what << ": image size " << l.image_size << " cannot be halved " << levels - 1 << " times for " << levels
                  << " levels; pad the images (28 -> 32) or use fewer levels");
  DDPM_CHECK(l.num_res_blocks >= 1, what << ": num_res_blocks must be at least 1, got " << l.num_res_blocks);
  DDPM_CHECK(l.dropout >= 0 && l.dropout < 1, what << ": dropout must be in [0, 1), got " << l.dropout);
  DDPM_CHECK(l.norm_groups > 0, what << ": norm_groups must be positive, got " << l.norm_groups);
  DDPM_CHECK(l.norm_eps > 0, what << ": norm_eps must be positive, got " << l.norm_eps);
  for (int m : l.channel_mult) {
    const std::int64_t ch = static_cast<std::int64_t>(l.model_channels) * m;
    DDPM_CHECK(m > 0 && ch % l.norm_groups == 0, what << ": level channels " << ch << " (model_channels "
                                                      << l.model_channels << " x " << m << ") are not divisible by "
                                                      << l.norm_groups << " groups");
    if (l.num_head_channels > 0)
      DDPM_CHECK(ch % l.num_head_channels == 0,
                 what << ": " << l.num_head_channels << " channels per head do not divide " << ch << " channels");
    else
      DDPM_CHECK(l.num_heads > 0 && ch % l.num_heads == 0,
                 what << ": " << l.num_heads << " heads do not divide " << ch << " channels");
  }
  for (int r : l.attention_resolutions) {
    bool found = false;
    std::ostringstream sizes;
    for (int i = 0; i < levels; ++i) {
      found = found || (l.image_size >> i) == r;
      sizes << (i ? ", " : "") << (l.image_size >> i);
    }
    DDPM_CHECK(found, what << ": attention resolution " << r << " is not a level size (" << sizes.str() << ")");
  }
}

void UNetConfig::validate() const {
  check_level_layout("UNet config", {image_size, in_channels, model_channels, channel_mult, num_res_blocks, dropout,
                                     norm_groups, norm_eps, num_heads, num_head_channels, attention_resolutions});
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
}

// One resolution level: resnets.j, attentions.j, and an optional resampler
// (downsamplers.0 / upsamplers.0), which is a conv or a resampling residual block.
struct UNet::Level : nn::Module {
  std::vector<std::unique_ptr<ResnetBlock>> resnets;
  std::vector<std::unique_ptr<AttentionBlock>> attentions;
  std::unique_ptr<Downsample> down;
  std::unique_ptr<Upsample> up;
  std::unique_ptr<ResnetBlock> res_resample;

  void add_resnet(std::unique_ptr<ResnetBlock> r) {
    register_module("resnets." + std::to_string(resnets.size()), r.get());
    resnets.push_back(std::move(r));
  }
  void add_attention(std::unique_ptr<AttentionBlock> a) {
    register_module("attentions." + std::to_string(attentions.size()), a.get());
    attentions.push_back(std::move(a));
  }
  void set_resampler(const char* name, std::unique_ptr<Downsample> d, std::unique_ptr<Upsample> u,
                     std::unique_ptr<ResnetBlock> r) {
    down = std::move(d);
    up = std::move(u);
    res_resample = std::move(r);
    nn::Module* m = down ? static_cast<nn::Module*>(down.get())
                    : up ? static_cast<nn::Module*>(up.get())
                         : static_cast<nn::Module*>(res_resample.get());
    register_module(name, m);
  }
  bool has_resampler() const { return down || up || res_resample; }
  Tensor resample(const Tensor& h, const Tensor& emb, const nn::Context& ctx) const {
    if (down) return down->forward(h);
    if (up) return up->forward(h);
    return res_resample->forward(h, emb, ctx);
  }
};

UNet::UNet(const UNetConfig& cfg, Generator& gen, Device device) : cfg_(cfg), device_(device) {
  cfg.validate();
  const int levels = static_cast<int>(cfg.channel_mult.size());
  const std::int64_t c0 = cfg.model_channels, emb_dim = cfg.time_embed_dim();
  BlockOptions opt;
  opt.norm_groups = cfg.norm_groups;
  opt.norm_eps = cfg.norm_eps;
  opt.dropout = cfg.dropout;
  opt.scale_shift = cfg.use_scale_shift_norm;
  opt.output_scale = cfg.rescale_residual ? 1.0 / std::sqrt(2.0) : 1.0;
  auto heads_for = [&](std::int64_t ch) {
    return cfg.num_head_channels > 0 ? static_cast<int>(ch / cfg.num_head_channels) : cfg.num_heads;
  };
  auto wants_attention = [&](int level) {
    int res = cfg.image_size >> level;
    return std::find(cfg.attention_resolutions.begin(), cfg.attention_resolutions.end(), res) !=
           cfg.attention_resolutions.end();
  };

  conv_in_ = std::make_unique<nn::Conv2d>(cfg.input_channels(), c0, 3, 1, 1, gen, device);
  register_module("conv_in", conv_in_.get());
  time_1_ = std::make_unique<nn::Linear>(c0, emb_dim, gen, device);
  register_module("time_embedding.linear_1", time_1_.get());
  time_2_ = std::make_unique<nn::Linear>(emb_dim, emb_dim, gen, device);
  register_module("time_embedding.linear_2", time_2_.get());
  if (cfg.num_classes > 0) {
    class_emb_ = std::make_unique<nn::Embedding>(cfg.num_classes + 1, emb_dim, gen, device);  // + null label
    register_module("class_embedding", class_emb_.get());
  }

  // Down path. `skips` tracks the channels of every tensor pushed for the skip connections.
  std::vector<std::int64_t> skips{c0};
  std::int64_t ch = c0;
  for (int i = 0; i < levels; ++i) {
    auto level = std::make_unique<Level>();
    std::int64_t out = c0 * cfg.channel_mult[static_cast<std::size_t>(i)];
    for (int j = 0; j < cfg.num_res_blocks; ++j) {
      level->add_resnet(std::make_unique<ResnetBlock>(ch, out, emb_dim, opt, Resample::none, gen, device));
      ch = out;
      if (wants_attention(i)) level->add_attention(std::make_unique<AttentionBlock>(ch, heads_for(ch), cfg.norm_groups, cfg.norm_eps, gen, device));
      skips.push_back(ch);
    }
    if (i + 1 < levels) {
      if (cfg.resblock_updown)
        level->set_resampler("downsamplers.0", nullptr, nullptr,
                             std::make_unique<ResnetBlock>(ch, ch, emb_dim, opt, Resample::down, gen, device));
      else
        level->set_resampler("downsamplers.0", std::make_unique<Downsample>(ch, gen, device), nullptr, nullptr);
      skips.push_back(ch);
    }
    register_module("down_blocks." + std::to_string(i), level.get());
    down_.push_back(std::move(level));
  }

  mid_res1_ = std::make_unique<ResnetBlock>(ch, ch, emb_dim, opt, Resample::none, gen, device);
  register_module("mid_block.resnets.0", mid_res1_.get());
  mid_attn_ = std::make_unique<AttentionBlock>(ch, heads_for(ch), cfg.norm_groups, cfg.norm_eps, gen, device);
  register_module("mid_block.attentions.0", mid_attn_.get());
  mid_res2_ = std::make_unique<ResnetBlock>(ch, ch, emb_dim, opt, Resample::none, gen, device);
  register_module("mid_block.resnets.1", mid_res2_.get());

  // Up path: num_res_blocks + 1 blocks per level, each consuming one skip (concatenated
  // after the running features, as diffusers does: cat([h, skip], channels)).
  for (int i = 0; i < levels; ++i) {
    int level_index = levels - 1 - i;
    auto level = std::make_unique<Level>();
    std::int64_t out = c0 * cfg.channel_mult[static_cast<std::size_t>(level_index)];
    for (int j = 0; j <= cfg.num_res_blocks; ++j) {
      std::int64_t skip = skips.back();
      skips.pop_back();
      level->add_resnet(std::make_unique<ResnetBlock>(ch + skip, out, emb_dim, opt, Resample::none, gen, device));
      ch = out;
      if (wants_attention(level_index))
        level->add_attention(std::make_unique<AttentionBlock>(ch, heads_for(ch), cfg.norm_groups, cfg.norm_eps, gen, device));
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
}

UNet::~UNet() = default;

Tensor UNet::forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                     const nn::Context& ctx) const {
  const std::int64_t n = x.ndim() == 4 ? x.dim(0) : -1;
  DDPM_CHECK(x.ndim() == 4 && x.dim(1) == cfg_.image_size && x.dim(2) == cfg_.image_size &&
                 x.dim(3) == cfg_.input_channels(),
             "UNet: input " << shape_str(x.shape()) << " does not match the model's [N, " << cfg_.image_size << ", "
                            << cfg_.image_size << ", " << cfg_.input_channels() << "]"
                            << (cfg_.super_res() ? " (a super-resolution model: x_t concatenated with its " +
                                                       std::to_string(cfg_.low_res_size) +
                                                       "-pixel low-res condition upsampled, super_res.h)"
                                                 : std::string()));
  DDPM_CHECK(static_cast<std::int64_t>(t.size()) == n, "UNet: " << t.size() << " timesteps for a batch of " << n);
  if (cfg_.num_classes > 0) {
    DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
               "UNet: the model is class-conditional and needs one label per sample (" << labels.size()
                                                                                      << " labels for " << n << ")");
  } else {
    DDPM_CHECK(labels.empty(), "UNet: labels were given but the model is unconditional (num_classes = 0)");
  }

  // Timestep embedding -> MLP (+ class embedding).   emb [N, 4 * model_channels]
  Tensor t_tensor = Tensor::from_vector(t, {n}, DType::f32, x.device());
  Tensor emb = timestep_embedding(t_tensor, cfg_.model_channels, cfg_.time_embedding);
  emb = time_2_->forward(silu(time_1_->forward(emb)));
  if (class_emb_) emb = add(emb, class_emb_->forward(labels));

  Tensor h = conv_in_->forward(x);
  std::vector<Tensor> skips{h};
  for (const auto& level : down_) {
    for (std::size_t j = 0; j < level->resnets.size(); ++j) {
      h = level->resnets[j]->forward(h, emb, ctx);
      if (!level->attentions.empty()) h = level->attentions[j]->forward(h);
      skips.push_back(h);
    }
    if (level->has_resampler()) {
      h = level->resample(h, emb, ctx);
      skips.push_back(h);
    }
  }
  h = mid_res2_->forward(mid_attn_->forward(mid_res1_->forward(h, emb, ctx)), emb, ctx);
  for (const auto& level : up_) {
    for (std::size_t j = 0; j < level->resnets.size(); ++j) {
      h = concat({h, skips.back()}, -1);
      skips.pop_back();
      h = level->resnets[j]->forward(h, emb, ctx);
      if (!level->attentions.empty()) h = level->attentions[j]->forward(h);
    }
    if (level->has_resampler()) h = level->resample(h, emb, ctx);
  }
  return conv_out_->forward(norm_out_->forward(h, /*silu=*/true));
}

}  // namespace ddpm::unet
