// models/autoencoder/autoencoder.cpp: see autoencoder.h for the architecture and the loss.
#include "models/autoencoder/autoencoder.h"

#include <cmath>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/recompute.h"
#include "models/unet/model_io.h"

namespace ddpm::autoencoder {

using nlohmann::json;

namespace {
// LDM's DiagonalGaussianDistribution clamps the log-variance to this range.
constexpr double kLogvarMin = -30.0, kLogvarMax = 20.0;
}  // namespace

void AutoencoderConfig::validate() const {
  const char* what = "autoencoder config";
  DDPM_CHECK(!channel_mult.empty(), what << ": channel_mult is empty");
  DDPM_CHECK(in_channels > 0 && base_channels > 0 && z_channels > 0,
             what << ": in_channels, base_channels and z_channels must be positive, got " << in_channels << ", "
                  << base_channels << " and " << z_channels);
  DDPM_CHECK(num_res_blocks >= 1, what << ": num_res_blocks must be at least 1, got " << num_res_blocks);
  DDPM_CHECK(norm_groups > 0, what << ": norm_groups must be positive, got " << norm_groups);
  DDPM_CHECK(norm_eps > 0, what << ": norm_eps must be positive, got " << norm_eps);
  DDPM_CHECK(scale_factor > 0 && std::isfinite(scale_factor),
             what << ": scale_factor must be a positive number, got " << scale_factor);
  for (int m : channel_mult) {
    const long ch = static_cast<long>(base_channels) * m;
    DDPM_CHECK(m > 0 && ch % norm_groups == 0, what << ": level channels " << ch << " (base_channels "
                                                    << base_channels << " x " << m << ") are not divisible by "
                                                    << norm_groups << " groups");
  }
}

json autoencoder_config_to_json(const AutoencoderConfig& c) {
  return json{{"in_channels", c.in_channels},       {"base_channels", c.base_channels},
              {"channel_mult", c.channel_mult},     {"num_res_blocks", c.num_res_blocks},
              {"z_channels", c.z_channels},         {"norm_groups", c.norm_groups},
              {"norm_eps", c.norm_eps},             {"scale_factor", c.scale_factor},
              {"downsampling_factor", c.downsampling_factor()}};
}

AutoencoderConfig autoencoder_config_from_json(const json& j) {
  DDPM_CHECK_AS(j.is_object(), IoError, "autoencoder config: expected a JSON object");
  unet::check_config_keys(j, autoencoder_config_to_json(AutoencoderConfig{}), "autoencoder config");
  AutoencoderConfig c;
  try {
    c.in_channels = j.at("in_channels").get<int>();
    c.base_channels = j.at("base_channels").get<int>();
    c.channel_mult = j.at("channel_mult").get<std::vector<int>>();
    c.num_res_blocks = j.at("num_res_blocks").get<int>();
    c.z_channels = j.at("z_channels").get<int>();
    c.norm_groups = j.at("norm_groups").get<int>();
    c.norm_eps = j.at("norm_eps").get<double>();
    c.scale_factor = j.at("scale_factor").get<double>();
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, "autoencoder config: a value has the wrong type: " << e.what());
  }
  c.validate();
  // Derived, stored for readers of the file: it must agree with channel_mult.
  DDPM_CHECK_AS(j.at("downsampling_factor").is_number_integer() &&
                    j.at("downsampling_factor").get<int>() == c.downsampling_factor(),
                IoError,
                "autoencoder config: downsampling_factor " << j.at("downsampling_factor").dump() << " disagrees with the "
                                                           << c.channel_mult.size() << " levels of channel_mult (f = "
                                                           << c.downsampling_factor() << ")");
  return c;
}

// LDM's ResnetBlock without a timestep: GN+SiLU, conv, GN+SiLU, conv, plus the shortcut
// (added in conv2's epilogue, engine/ops/conv.h).
struct Autoencoder::ResBlock : nn::Module {
  std::unique_ptr<nn::GroupNorm> norm1, norm2;
  std::unique_ptr<nn::Conv2d> conv1, conv2, shortcut;
  ResBlock(std::int64_t in, std::int64_t out, const AutoencoderConfig& c, Generator& gen, Device device) {
    norm1 = std::make_unique<nn::GroupNorm>(c.norm_groups, in, device, c.norm_eps);
    register_module("norm1", norm1.get());
    conv1 = std::make_unique<nn::Conv2d>(in, out, 3, 1, 1, gen, device);
    register_module("conv1", conv1.get());
    norm2 = std::make_unique<nn::GroupNorm>(c.norm_groups, out, device, c.norm_eps);
    register_module("norm2", norm2.get());
    conv2 = std::make_unique<nn::Conv2d>(out, out, 3, 1, 1, gen, device);
    register_module("conv2", conv2.get());
    if (in != out) {
      shortcut = std::make_unique<nn::Conv2d>(in, out, 1, 1, 0, gen, device);
      register_module("conv_shortcut", shortcut.get());
    }
  }
  // With ctx.recompute the tape keeps x alone and the backward reruns compute (no dropout
  // here, so no generator to replay).
  Tensor forward(const Tensor& x, const nn::Context& ctx) const {
    if (!ctx.recompute) return compute(x);
    return recompute(
        "autoencoder_resnet_block", [this](const std::vector<Tensor>& in, Generator*) { return compute(in[0]); },
        {x}, any_parameter_requires_grad(), nullptr);
  }
  Tensor compute(const Tensor& x) const {  // [N, H, W, in] -> [N, H, W, out]
    const Tensor h = norm2->forward(conv1->forward(norm1->forward(x, /*silu=*/true)), /*silu=*/true);
    return conv2->forward(h, Tensor(), /*residual=*/shortcut ? shortcut->forward(x) : x);
  }
};

// One half of the autoencoder: the levels, the middle block and the output head. The
// encoder walks the levels down (strided convs between them), the decoder up (nearest 2x
// upsampling + conv between them, one extra residual block per level).
struct Autoencoder::Half : nn::Module {
  struct Level : nn::Module {
    std::vector<std::unique_ptr<ResBlock>> resnets;
    std::unique_ptr<unet::Downsample> down;
    std::unique_ptr<unet::Upsample> up;
    void name_child(const std::string& name, nn::Module* m) { register_module(name, m); }
  };
  bool is_encoder;
  std::unique_ptr<nn::Conv2d> conv_in, conv_out;
  std::vector<std::unique_ptr<Level>> levels;
  std::unique_ptr<ResBlock> mid_res1, mid_res2;
  std::unique_ptr<unet::AttentionBlock> mid_attn;
  std::unique_ptr<nn::GroupNorm> norm_out;

  Half(bool encoder, const AutoencoderConfig& c, Generator& gen, Device device) : is_encoder(encoder) {
    const int L = static_cast<int>(c.channel_mult.size());
    auto level_ch = [&](int i) { return static_cast<std::int64_t>(c.base_channels) * c.channel_mult[static_cast<std::size_t>(i)]; };
    const std::int64_t deepest = level_ch(L - 1);
    std::int64_t ch = encoder ? c.base_channels : deepest;
    conv_in = std::make_unique<nn::Conv2d>(encoder ? c.in_channels : c.z_channels, ch, 3, 1, 1, gen, device);
    register_module("conv_in", conv_in.get());
    auto make_mid = [&] {
      mid_res1 = std::make_unique<ResBlock>(deepest, deepest, c, gen, device);
      register_module("mid_block.resnets.0", mid_res1.get());
      mid_attn = std::make_unique<unet::AttentionBlock>(deepest, 1, c.norm_groups, c.norm_eps, gen, device);
      register_module("mid_block.attentions.0", mid_attn.get());
      mid_res2 = std::make_unique<ResBlock>(deepest, deepest, c, gen, device);
      register_module("mid_block.resnets.1", mid_res2.get());
    };
    if (!encoder) make_mid();
    for (int k = 0; k < L; ++k) {
      const int i = encoder ? k : L - 1 - k;  // the level's resolution index (0 = full size)
      auto level = std::make_unique<Level>();
      const std::int64_t out = level_ch(i);
      const int blocks = encoder ? c.num_res_blocks : c.num_res_blocks + 1;
      for (int j = 0; j < blocks; ++j) {
        level->resnets.push_back(std::make_unique<ResBlock>(ch, out, c, gen, device));
        level->name_child("resnets." + std::to_string(j), level->resnets.back().get());
        ch = out;
      }
      if (encoder && i + 1 < L) {
        level->down = std::make_unique<unet::Downsample>(ch, gen, device);
        level->name_child("downsamplers.0", level->down.get());
      }
      if (!encoder && i > 0) {
        level->up = std::make_unique<unet::Upsample>(ch, gen, device);
        level->name_child("upsamplers.0", level->up.get());
      }
      register_module((encoder ? "down_blocks." : "up_blocks.") + std::to_string(k), level.get());
      levels.push_back(std::move(level));
    }
    if (encoder) make_mid();
    norm_out = std::make_unique<nn::GroupNorm>(c.norm_groups, ch, device, c.norm_eps);
    register_module("conv_norm_out", norm_out.get());
    conv_out = std::make_unique<nn::Conv2d>(ch, encoder ? 2 * c.z_channels : c.in_channels, 3, 1, 1, gen, device);
    register_module("conv_out", conv_out.get());
  }

  Tensor mid(const Tensor& h, const nn::Context& ctx) const {
    return mid_res2->forward(mid_attn->forward(mid_res1->forward(h, ctx), ctx), ctx);
  }

  Tensor forward(const Tensor& x, const nn::Context& ctx) const {
    Tensor h = conv_in->forward(x);
    if (!is_encoder) h = mid(h, ctx);
    for (const auto& level : levels) {
      for (const auto& r : level->resnets) h = r->forward(h, ctx);
      if (level->down) h = level->down->forward(h);  // [N, H/2, W/2, ch]
      if (level->up) h = level->up->forward(h);      // [N, 2H, 2W, ch]
    }
    if (is_encoder) h = mid(h, ctx);
    return conv_out->forward(norm_out->forward(h, /*silu=*/true));
  }
};

Autoencoder::Autoencoder(const AutoencoderConfig& cfg, Generator& gen, Device device) : cfg_(cfg), device_(device) {
  cfg.validate();
  encoder_ = std::make_unique<Half>(true, cfg, gen, device);
  register_module("encoder", encoder_.get());
  quant_conv_ = std::make_unique<nn::Conv2d>(2 * cfg.z_channels, 2 * cfg.z_channels, 1, 1, 0, gen, device);
  register_module("quant_conv", quant_conv_.get());
  post_quant_conv_ = std::make_unique<nn::Conv2d>(cfg.z_channels, cfg.z_channels, 1, 1, 0, gen, device);
  register_module("post_quant_conv", post_quant_conv_.get());
  decoder_ = std::make_unique<Half>(false, cfg, gen, device);
  register_module("decoder", decoder_.get());
}

Autoencoder::~Autoencoder() = default;

Tensor Autoencoder::encode_moments(const Tensor& x, const nn::Context& ctx) const {
  const int f = cfg_.downsampling_factor();
  DDPM_CHECK(x.ndim() == 4 && x.dim(3) == cfg_.in_channels && x.dim(1) % f == 0 && x.dim(2) % f == 0,
             "Autoencoder::encode: input " << shape_str(x.shape()) << " must be [N, H, W, " << cfg_.in_channels
                                           << "] with H and W divisible by the downsampling factor " << f);
  return quant_conv_->forward(encoder_->forward(x, ctx));  // [N, H/f, W/f, 2z]
}

DiagonalGaussian Autoencoder::encode(const Tensor& x, const nn::Context& ctx) const {
  const Tensor moments = encode_moments(x, ctx);
  const std::int64_t z = cfg_.z_channels;
  return {slice(moments, 3, 0, z), clamp(slice(moments, 3, z, z), kLogvarMin, kLogvarMax)};
}

Tensor Autoencoder::decode(const Tensor& z, const nn::Context& ctx) const {
  DDPM_CHECK(z.ndim() == 4 && z.dim(3) == cfg_.z_channels,
             "Autoencoder::decode: latent " << shape_str(z.shape()) << " must be [N, h, w, " << cfg_.z_channels << "]");
  return decoder_->forward(post_quant_conv_->forward(z), ctx);
}

Tensor DiagonalGaussian::sample(const Tensor& eps) const {
  DDPM_CHECK(eps.shape() == mean.shape(), "DiagonalGaussian::sample: noise " << shape_str(eps.shape())
                                                                            << " does not match the latent "
                                                                            << shape_str(mean.shape()));
  return add(mean, mul(exp(scale(logvar, 0.5)), eps));  // mean + sigma * eps
}

Tensor DiagonalGaussian::kl() const {
  // 1/2 sum (mean^2 + var - 1 - logvar) per sample, then the batch mean.
  const Tensor per_dim = scale(add_scalar(sub(add(square(mean), exp(logvar)), logvar), -1.0), 0.5);
  return mean_over_batch(per_dim);
}

ReconstructionLoss parse_reconstruction_loss(const std::string& name) {
  if (name == "l1") return ReconstructionLoss::l1;
  if (name == "l2") return ReconstructionLoss::l2;
  DDPM_THROW(ValueError, "reconstruction loss must be l1 or l2, got '" << name << "'");
}

Tensor mean_over_batch(const Tensor& per_element) {
  std::vector<int> axes;
  for (int a = 1; a < per_element.ndim(); ++a) axes.push_back(a);
  return mean(sum(per_element, axes));
}

AutoencoderLossTerms autoencoder_loss(const Autoencoder& ae, const Tensor& x, const Tensor& eps,
                                      ReconstructionLoss rec, double kl_weight, const nn::Context& ctx) {
  DDPM_CHECK(kl_weight >= 0, "autoencoder_loss: kl_weight must be >= 0, got " << kl_weight);
  const DiagonalGaussian q = ae.encode(x, ctx);
  AutoencoderLossTerms t;
  t.reconstruction_image = ae.decode(q.sample(eps), ctx);
  const Tensor d = sub(t.reconstruction_image, x);
  // |d| = d * sign(d), the sign a constant (not on the tape): the L1 subgradient.
  const Tensor per_pixel =
      rec == ReconstructionLoss::l2 ? square(d) : mul(d, sub(greater_than(d, 0.0), less_than(d, 0.0)));
  t.reconstruction = mean_over_batch(per_pixel);
  t.kl = q.kl();
  t.total = add(t.reconstruction, scale(t.kl, kl_weight));
  return t;
}

}  // namespace ddpm::autoencoder
