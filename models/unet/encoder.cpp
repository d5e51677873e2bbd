// models/unet/encoder.cpp: see encoder.h for the architecture.
#include "models/unet/encoder.h"

#include <algorithm>
#include <sstream>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/unet/model_io.h"

namespace ddpm::unet {

using nlohmann::json;

void EncoderConfig::validate() const {
  check_level_layout("encoder config", {image_size, in_channels, model_channels, channel_mult, num_res_blocks,
                                        dropout, norm_groups, norm_eps, num_heads, num_head_channels,
                                        attention_resolutions});
  DDPM_CHECK(num_classes >= 2, "encoder config: a classifier needs num_classes >= 2, got " << num_classes);
}

json encoder_config_to_json(const EncoderConfig& c) {
  return json{{"image_size", c.image_size},
              {"in_channels", c.in_channels},
              {"model_channels", c.model_channels},
              {"channel_mult", c.channel_mult},
              {"num_res_blocks", c.num_res_blocks},
              {"attention_resolutions", c.attention_resolutions},
              {"num_heads", c.num_heads},
              {"num_head_channels", c.num_head_channels},
              {"norm_groups", c.norm_groups},
              {"norm_eps", c.norm_eps},
              {"dropout", c.dropout},
              {"use_scale_shift_norm", c.use_scale_shift_norm},
              {"resblock_updown", c.resblock_updown},
              {"time_embedding", timestep_embedding_style_name(c.time_embedding)},
              {"num_classes", c.num_classes}};
}

EncoderConfig encoder_config_from_json(const json& j) {
  DDPM_CHECK_AS(j.is_object(), IoError, "encoder config: expected a JSON object");
  check_config_keys(j, encoder_config_to_json(EncoderConfig{}), "encoder config");
  EncoderConfig c;
  try {
    c.image_size = j.at("image_size").get<int>();
    c.in_channels = j.at("in_channels").get<int>();
    c.model_channels = j.at("model_channels").get<int>();
    c.channel_mult = j.at("channel_mult").get<std::vector<int>>();
    c.num_res_blocks = j.at("num_res_blocks").get<int>();
    c.attention_resolutions = j.at("attention_resolutions").get<std::vector<int>>();
    c.num_heads = j.at("num_heads").get<int>();
    c.num_head_channels = j.at("num_head_channels").get<int>();
    c.norm_groups = j.at("norm_groups").get<int>();
    c.norm_eps = j.at("norm_eps").get<double>();
    c.dropout = j.at("dropout").get<double>();
    c.use_scale_shift_norm = j.at("use_scale_shift_norm").get<bool>();
    c.resblock_updown = j.at("resblock_updown").get<bool>();
    c.time_embedding = parse_timestep_embedding_style(j.at("time_embedding").get<std::string>());
    c.num_classes = j.at("num_classes").get<int>();
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, "encoder config: a value has the wrong type: " << e.what());
  }
  c.validate();
  return c;
}

// One resolution level of the down path: resnets.j, attentions.j and an optional
// downsamplers.0 (a strided conv, or a resampling residual block with resblock_updown).
struct NoisyClassifier::Level : nn::Module {
  std::vector<std::unique_ptr<ResnetBlock>> resnets;
  std::vector<std::unique_ptr<AttentionBlock>> attentions;
  std::unique_ptr<Downsample> down_conv;
  std::unique_ptr<ResnetBlock> down_res;

  void name_child(const std::string& name, nn::Module* m) { register_module(name, m); }

  Tensor forward(Tensor h, const Tensor& emb, const nn::Context& ctx) const {
    for (std::size_t j = 0; j < resnets.size(); ++j) {
      h = resnets[j]->forward(h, emb, ctx);
      if (!attentions.empty()) h = attentions[j]->forward(h);
    }
    if (down_conv) return down_conv->forward(h);
    if (down_res) return down_res->forward(h, emb, ctx);
    return h;
  }
};

NoisyClassifier::NoisyClassifier(const EncoderConfig& cfg, Generator& gen, Device device)
    : cfg_(cfg), device_(device) {
  cfg.validate();
  const int levels = static_cast<int>(cfg.channel_mult.size());
  const std::int64_t c0 = cfg.model_channels, emb_dim = cfg.time_embed_dim();
  BlockOptions opt;
  opt.norm_groups = cfg.norm_groups;
  opt.norm_eps = cfg.norm_eps;
  opt.dropout = cfg.dropout;
  opt.scale_shift = cfg.use_scale_shift_norm;
  auto heads_for = [&](std::int64_t ch) {
    return cfg.num_head_channels > 0 ? static_cast<int>(ch / cfg.num_head_channels) : cfg.num_heads;
  };
  auto wants_attention = [&](int level) {
    const int res = cfg.image_size >> level;
    return std::find(cfg.attention_resolutions.begin(), cfg.attention_resolutions.end(), res) !=
           cfg.attention_resolutions.end();
  };

  conv_in_ = std::make_unique<nn::Conv2d>(cfg.in_channels, c0, 3, 1, 1, gen, device);
  register_module("conv_in", conv_in_.get());
  time_1_ = std::make_unique<nn::Linear>(c0, emb_dim, gen, device);
  register_module("time_embedding.linear_1", time_1_.get());
  time_2_ = std::make_unique<nn::Linear>(emb_dim, emb_dim, gen, device);
  register_module("time_embedding.linear_2", time_2_.get());

  std::int64_t ch = c0;
  for (int i = 0; i < levels; ++i) {
    auto level = std::make_unique<Level>();
    const std::int64_t out = c0 * cfg.channel_mult[static_cast<std::size_t>(i)];
    for (int j = 0; j < cfg.num_res_blocks; ++j) {
      auto r = std::make_unique<ResnetBlock>(ch, out, emb_dim, opt, Resample::none, gen, device);
      level->name_child("resnets." + std::to_string(j), r.get());
      level->resnets.push_back(std::move(r));
      ch = out;
      if (wants_attention(i)) {
        auto a = std::make_unique<AttentionBlock>(ch, heads_for(ch), cfg.norm_groups, cfg.norm_eps, gen, device);
        level->name_child("attentions." + std::to_string(j), a.get());
        level->attentions.push_back(std::move(a));
      }
    }
    if (i + 1 < levels) {
      if (cfg.resblock_updown) {
        level->down_res = std::make_unique<ResnetBlock>(ch, ch, emb_dim, opt, Resample::down, gen, device);
        level->name_child("downsamplers.0", level->down_res.get());
      } else {
        level->down_conv = std::make_unique<Downsample>(ch, gen, device);
        level->name_child("downsamplers.0", level->down_conv.get());
      }
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

  norm_out_ = std::make_unique<nn::GroupNorm>(cfg.norm_groups, ch, device, cfg.norm_eps);
  register_module("conv_norm_out", norm_out_.get());
  out_proj_ = std::make_unique<nn::Linear>(ch, cfg.num_classes, gen, device);
  out_proj_->weight.zero_();  // ADM zero-initializes the head's last layer
  out_proj_->bias.zero_();
  register_module("out_proj", out_proj_.get());
}

NoisyClassifier::~NoisyClassifier() = default;

Tensor NoisyClassifier::forward(const Tensor& x, const std::vector<double>& t, const nn::Context& ctx) const {
  const std::int64_t n = x.ndim() == 4 ? x.dim(0) : -1;
  DDPM_CHECK(x.ndim() == 4 && x.dim(1) == cfg_.image_size && x.dim(2) == cfg_.image_size &&
                 x.dim(3) == cfg_.in_channels,
             "NoisyClassifier: input " << shape_str(x.shape()) << " does not match the classifier's [N, "
                                       << cfg_.image_size << ", " << cfg_.image_size << ", " << cfg_.in_channels
                                       << "]");
  DDPM_CHECK(static_cast<std::int64_t>(t.size()) == n,
             "NoisyClassifier: " << t.size() << " timesteps for a batch of " << n);

  // The timestep embedding in x's dtype (f64 for the CPU reference checks).   emb [N, 4 mc]
  const Tensor t_tensor = Tensor::from_vector(t, {n}, x.dtype(), x.device());
  Tensor emb = timestep_embedding(t_tensor, cfg_.model_channels, cfg_.time_embedding);
  emb = time_2_->forward(silu(time_1_->forward(emb)));

  Tensor h = conv_in_->forward(x);  // [N, H, W, mc]
  for (const auto& level : down_) h = level->forward(h, emb, ctx);
  h = mid_res2_->forward(mid_attn_->forward(mid_res1_->forward(h, emb, ctx)), emb, ctx);  // [N, H', W', C']
  // Head: GroupNorm + SiLU (one fused op), global average pool, linear.
  const Tensor pooled = mean(norm_out_->forward(h, /*silu=*/true), {1, 2});  // [N, C']
  return out_proj_->forward(pooled);                                          // [N, K]
}

}  // namespace ddpm::unet
