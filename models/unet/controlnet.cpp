// models/unet/controlnet.cpp: see controlnet.h.
#include "models/unet/controlnet.h"

#include <cmath>
#include <map>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/unet/model_io.h"

namespace ddpm::unet {

void ControlNetConfig::validate() const {
  base.validate();
  DDPM_CHECK(!base.super_res() && !base.cond_augmented(),
             "ControlNet config: the base is a super-resolution model (low_res_size "
                 << base.low_res_size << "); a ControlNet copies a plain UNet's encoder, whose input is x_t alone");
  DDPM_CHECK(!base.cross_attention(),
             "ControlNet config: the base cross-attends to a context (context_dim "
                 << base.context_dim
                 << "); a ControlNet of a text-conditioned UNet is not supported (its copy would need the context too)");
  DDPM_CHECK(!base.video(), "ControlNet config: the base is a video model (num_frames "
                                << base.num_frames
                                << "); a ControlNet copies an image UNet's encoder and has no temporal layers");
  DDPM_CHECK(conditioning_channels >= 1,
             "ControlNet config: conditioning_channels (the hint's channels) must be >= 1, got "
                 << conditioning_channels);
  DDPM_CHECK(!conditioning_embedding_out_channels.empty(),
             "ControlNet config: conditioning_embedding_out_channels must list at least one width");
  for (int c : conditioning_embedding_out_channels)
    DDPM_CHECK(c >= 1, "ControlNet config: conditioning_embedding_out_channels must be positive, got " << c);
  const int f = hint_downsampling_factor;
  DDPM_CHECK(f >= 1 && (f & (f - 1)) == 0,
             "ControlNet config: hint_downsampling_factor must be a power of two (1 = pixel space), got " << f);
  DDPM_CHECK(hint_stride2_pairs() <= static_cast<int>(conditioning_embedding_out_channels.size()) - 1,
             "ControlNet config: hint_downsampling_factor " << f << " needs " << hint_stride2_pairs()
                 << " stride-2 pairs in the hint embedding, i.e. at least " << hint_stride2_pairs() + 1
                 << " conditioning_embedding_out_channels; got " << conditioning_embedding_out_channels.size());
}

int ControlNetConfig::hint_stride2_pairs() const {
  int k = 0;
  while ((1 << k) < hint_downsampling_factor) ++k;
  return k;
}

nlohmann::json controlnet_config_to_json(const ControlNetConfig& c) {
  nlohmann::json j = {{"base_model", config_to_json(c.base)},
                      {"conditioning_channels", c.conditioning_channels},
                      {"conditioning_embedding_out_channels", c.conditioning_embedding_out_channels}};
  if (c.hint_downsampling_factor != 1) j["hint_downsampling_factor"] = c.hint_downsampling_factor;  // see the header
  return j;
}

ControlNetConfig controlnet_config_from_json(const nlohmann::json& j) {
  nlohmann::json keys = j;  // an older config (pixel space) has no factor: it reads as 1
  if (keys.is_object() && !keys.contains("hint_downsampling_factor")) keys["hint_downsampling_factor"] = 1;
  ControlNetConfig with_factor;
  with_factor.hint_downsampling_factor = 2;  // so the expected keys include the factor
  with_factor.conditioning_embedding_out_channels = {16, 32};
  check_config_keys(keys, controlnet_config_to_json(with_factor), "ControlNet config");
  ControlNetConfig c;
  c.base = config_from_json(j.at("base_model"));
  c.conditioning_channels = j.at("conditioning_channels").get<int>();
  c.conditioning_embedding_out_channels = j.at("conditioning_embedding_out_channels").get<std::vector<int>>();
  c.hint_downsampling_factor = keys.at("hint_downsampling_factor").get<int>();
  c.validate();
  return c;
}

ControlNet::ControlNet(const ControlNetConfig& cfg, Generator& gen, Device device)
    : DownHalf(validated_config(cfg).base, cfg.base.in_channels,
               cfg.base.num_classes > 0 ? cfg.base.num_classes + 1 : 0,  // + null label, as the base
               level_block_options(cfg.base, cfg.base.rescale_residual ? 1.0 / std::sqrt(2.0) : 1.0), gen, device),
      cfg_(cfg) {
  // controlnet_cond_embedding: hint [N, f h, f w, Ch] -> [N, h, w, mc]: pair i is a 3x3 conv
  // w_i -> w_i and a 3x3 conv w_i -> w_{i+1}, the latter with stride 2 in the first log2 f
  // pairs (padding 1: each halves the size), stride 1 otherwise (see the header).
  const std::vector<int>& widths = cfg.conditioning_embedding_out_channels;
  hint_in_ = std::make_unique<nn::Conv2d>(cfg.conditioning_channels, widths.front(), 3, 1, 1, gen, device);
  register_module("controlnet_cond_embedding.conv_in", hint_in_.get());
  for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
    for (int out : {widths[i], widths[i + 1]}) {
      const bool second = hint_blocks_.size() % 2 == 1;  // blocks.(2i + 1): w_i -> w_{i+1}
      const int stride = second && static_cast<int>(i) < cfg.hint_stride2_pairs() ? 2 : 1;
      auto conv = std::make_unique<nn::Conv2d>(widths[i], out, 3, stride, 1, gen, device);
      register_module("controlnet_cond_embedding.blocks." + std::to_string(hint_blocks_.size()), conv.get());
      hint_blocks_.push_back(std::move(conv));
    }
  }
  hint_out_ = std::make_unique<nn::Conv2d>(widths.back(), cfg.base.model_channels, 3, 1, 1, gen, device);
  hint_out_->zero_();  // zero convolution Z(c; Theta_z1)
  register_module("controlnet_cond_embedding.conv_out", hint_out_.get());

  // One zero 1x1 conv per skip tensor, then the middle block's (Z(.; Theta_z2)).
  for (std::int64_t ch : skip_channels()) {
    auto conv = std::make_unique<nn::Conv2d>(ch, ch, 1, 1, 0, gen, device);
    conv->zero_();
    register_module("controlnet_down_blocks." + std::to_string(zero_down_.size()), conv.get());
    zero_down_.push_back(std::move(conv));
  }
  zero_mid_ = std::make_unique<nn::Conv2d>(deepest_channels(), deepest_channels(), 1, 1, 0, gen, device);
  zero_mid_->zero_();
  register_module("controlnet_mid_block", zero_mid_.get());
}

ControlNet::~ControlNet() = default;

void ControlNet::copy_encoder_from(const UNet& base) {
  const nlohmann::json mine = config_to_json(cfg_.base), theirs = config_to_json(base.config());
  DDPM_CHECK(mine == theirs, "ControlNet: the base UNet's config differs from the one this ControlNet was built for: "
                                 << theirs.dump() << " vs " << mine.dump());
  std::map<std::string, Tensor> from;
  for (auto& [name, value] : base.named_parameters()) from.emplace(name, value);
  for (auto& [name, value] : named_parameters()) {
    if (name.compare(0, 11, "controlnet_") == 0) continue;  // the ControlNet's own layers
    auto it = from.find(name);
    DDPM_CHECK(it != from.end() && it->second.shape() == value.shape(),
               "ControlNet: the base UNet has no parameter " << name << " of shape " << shape_str(value.shape()));
    value.copy_from(it->second);
  }
}

Tensor ControlNet::encode_copy(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                               std::vector<Tensor>* skips) const {
  const Tensor emb = embed(Tensor::from_vector(t, {x.dim(0)}, x.dtype(), x.device()), labels);
  return encode(x, emb, nn::Context{}, skips);
}

ControlResiduals ControlNet::forward(const Tensor& x, const std::vector<double>& t,
                                     const std::vector<std::int64_t>& labels, const Tensor& hint,
                                     const nn::Context& ctx, double scale) const {
  const UNetConfig& b = cfg_.base;
  DDPM_CHECK(x.ndim() == 4 && x.dim(1) == b.image_size && x.dim(2) == b.image_size && x.dim(3) == b.in_channels,
             "ControlNet: x_t " << shape_str(x.shape()) << " does not match the base's [N, " << b.image_size << ", "
                                << b.image_size << ", " << b.in_channels << "]");
  const std::int64_t n = x.dim(0);
  const std::int64_t hs = static_cast<std::int64_t>(b.image_size) * cfg_.hint_downsampling_factor;  // f h
  DDPM_CHECK(hint.defined() && hint.ndim() == 4 && hint.dim(0) == n && hint.dim(1) == hs && hint.dim(2) == hs &&
                 hint.dim(3) == cfg_.conditioning_channels,
             "ControlNet: the hint " << (hint.defined() ? shape_str(hint.shape()) : std::string("(none)"))
                                     << " does not match [" << n << ", " << hs << ", " << hs << ", "
                                     << cfg_.conditioning_channels << "]");
  DDPM_CHECK(static_cast<std::int64_t>(t.size()) == n, "ControlNet: " << t.size() << " timesteps for a batch of " << n);
  DDPM_CHECK(b.num_classes > 0 ? static_cast<std::int64_t>(labels.size()) == n : labels.empty(),
             "ControlNet: " << labels.size() << " labels for a batch of " << n << " (the base has " << b.num_classes
                            << " classes)");
  DDPM_CHECK(std::isfinite(scale), "ControlNet: the conditioning scale must be finite, got " << scale);

  const Tensor emb = embed(Tensor::from_vector(t, {n}, x.dtype(), x.device()), labels);  // [N, 4 mc]
  Tensor e = silu(hint_in_->forward(hint.dtype() == x.dtype() ? hint : hint.to(x.dtype())));  // [N, f h, f w, w0]
  for (const auto& conv : hint_blocks_) e = silu(conv->forward(e));
  e = hint_out_->forward(e);  // [N, h, w, mc], zero at initialisation
  std::vector<Tensor> skips;
  const Tensor h = encode(x, emb, ctx, &skips, e);  // the trainable copy, hint added after conv_in
  ControlResiduals r;
  for (std::size_t k = 0; k < skips.size(); ++k) {
    Tensor d = zero_down_[k]->forward(skips[k]);  // [N, H_k, W_k, C_k]
    r.down.push_back(scale == 1.0 ? d : ddpm::scale(d, scale));
  }
  const Tensor m = zero_mid_->forward(h);  // [N, H', W', C']
  r.mid = scale == 1.0 ? m : ddpm::scale(m, scale);
  return r;
}

Tensor controlled_forward(const UNet& base, const ControlNet& control, const Tensor& x, const std::vector<double>& t,
                          const std::vector<std::int64_t>& labels, const Tensor& hint, const nn::Context& ctx,
                          double scale) {
  const ControlResiduals r = control.forward(x, t, labels, hint, ctx, scale);
  return base.forward(x, t, labels, ctx, &r);
}

}  // namespace ddpm::unet
