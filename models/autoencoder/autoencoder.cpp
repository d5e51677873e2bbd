// models/autoencoder/autoencoder.cpp: see autoencoder.h for the architecture and the loss.
#include "models/autoencoder/autoencoder.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/recompute.h"
#include "models/unet/model_io.h"
#include "models/unet/temporal_conv.h"

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
  DDPM_CHECK(temporal_frames == 0 || temporal_frames >= 2,
             what << ": temporal_frames must be 0 (an image decoder) or at least 2 (clips), got " << temporal_frames);
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
  json j{{"in_channels", c.in_channels},       {"base_channels", c.base_channels},
              {"channel_mult", c.channel_mult},     {"num_res_blocks", c.num_res_blocks},
              {"z_channels", c.z_channels},         {"norm_groups", c.norm_groups},
              {"norm_eps", c.norm_eps},             {"scale_factor", c.scale_factor},
              {"downsampling_factor", c.downsampling_factor()}};
  if (c.temporal_frames > 0) j["temporal_frames"] = c.temporal_frames;  // a temporal decoder only
  return j;
}

AutoencoderConfig autoencoder_config_from_json(const json& j) {
  DDPM_CHECK_AS(j.is_object(), IoError, "autoencoder config: expected a JSON object");
  json reference = autoencoder_config_to_json(AutoencoderConfig{});
  if (j.contains("temporal_frames")) reference["temporal_frames"] = nullptr;  // optional: temporal decoders
  unet::check_config_keys(j, reference, "autoencoder config");
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
    if (j.contains("temporal_frames")) {
      DDPM_CHECK_AS(j.at("temporal_frames").is_number_integer(), IoError,
                    "autoencoder config: temporal_frames must be an integer, got " << j.at("temporal_frames").dump());
      c.temporal_frames = j.at("temporal_frames").get<int>();
    }
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
    std::vector<std::unique_ptr<unet::TemporalConv>> temporal;  // one after each resnet (temporal decoder)
    void name_child(const std::string& name, nn::Module* m) { register_module(name, m); }
  };
  bool is_encoder;
  std::unique_ptr<nn::Conv2d> conv_in, conv_out;
  std::vector<std::unique_ptr<Level>> levels;
  std::unique_ptr<ResBlock> mid_res1, mid_res2;
  std::unique_ptr<unet::AttentionBlock> mid_attn;
  std::unique_ptr<nn::GroupNorm> norm_out;
  std::vector<std::unique_ptr<unet::TemporalConv>> mid_temporal;  // after mid_res1 and mid_res2

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
    // The temporal layers last (autoencoder.h): the image part has drawn its weights already.
    if (!encoder && c.temporal_frames > 0) {
      auto temporal = [&](std::int64_t channels) {
        return std::make_unique<unet::TemporalConv>(channels, c.norm_groups, c.norm_eps, gen, device);
      };
      for (int j = 0; j < 2; ++j) {
        mid_temporal.push_back(temporal(deepest));
        register_module("mid_block.temporal_convs." + std::to_string(j), mid_temporal.back().get());
      }
      for (int k = 0; k < L; ++k) {
        Level& level = *levels[static_cast<std::size_t>(k)];
        const std::int64_t out = level_ch(L - 1 - k);
        for (std::size_t j = 0; j < level.resnets.size(); ++j) {
          level.temporal.push_back(temporal(out));
          level.name_child("temporal_convs." + std::to_string(j), level.temporal.back().get());
        }
      }
    }
  }

  // `frames` > 0: h holds clips of that many frames ([N F, ...]) and the temporal layers run.
  Tensor mid(const Tensor& h, const nn::Context& ctx, std::int64_t frames) const {
    Tensor y = mid_res1->forward(h, ctx);
    if (frames > 0) y = mid_temporal[0]->forward(y, frames, ctx);
    y = mid_res2->forward(mid_attn->forward(y, ctx), ctx);
    if (frames > 0) y = mid_temporal[1]->forward(y, frames, ctx);
    return y;
  }

  Tensor forward(const Tensor& x, const nn::Context& ctx, std::int64_t frames = 0) const {
    Tensor h = conv_in->forward(x);
    if (!is_encoder) h = mid(h, ctx, frames);
    for (const auto& level : levels) {
      for (std::size_t j = 0; j < level->resnets.size(); ++j) {
        h = level->resnets[j]->forward(h, ctx);
        if (frames > 0) h = level->temporal[j]->forward(h, frames, ctx);  // [N F, H, W, ch]
      }
      if (level->down) h = level->down->forward(h);  // [N, H/2, W/2, ch]
      if (level->up) h = level->up->forward(h);      // [N, 2H, 2W, ch]
    }
    if (is_encoder) h = mid(h, ctx, 0);
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
  DDPM_CHECK(cfg_.temporal_frames == 0, "Autoencoder::decode: this autoencoder has a temporal decoder of clips of "
                                            << cfg_.temporal_frames
                                            << " frames; it decodes clips [N, F, h, w, z] (decode_clips), not images");
  return decoder_->forward(post_quant_conv_->forward(z), ctx);
}

Tensor Autoencoder::decode_clips(const Tensor& z, const nn::Context& ctx) const {
  DDPM_CHECK(z.ndim() == 5 && z.dim(4) == cfg_.z_channels, "Autoencoder::decode_clips: latent clips "
                                                               << shape_str(z.shape()) << " must be [N, F, h, w, "
                                                               << cfg_.z_channels << "]");
  const std::int64_t N = z.dim(0), F = z.dim(1);
  DDPM_CHECK(cfg_.temporal_frames == 0 || F == cfg_.temporal_frames,
             "Autoencoder::decode_clips: the temporal decoder was fine-tuned on clips of "
                 << cfg_.temporal_frames << " frames (temporal_frames); these latent clips have " << F);
  const Tensor frames = z.reshape({N * F, z.dim(2), z.dim(3), z.dim(4)});  // [N F, h, w, z]
  const Tensor x = decoder_->forward(post_quant_conv_->forward(frames), ctx, cfg_.temporal_frames > 0 ? F : 0);
  return x.reshape({N, F, x.dim(1), x.dim(2), x.dim(3)});  // [N, F, H, W, C]
}

bool is_temporal_parameter(const std::string& name) { return name.find("temporal_convs.") != std::string::npos; }

bool is_decoder_parameter(const std::string& name) {
  return name.rfind("decoder.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0;
}

std::unique_ptr<Autoencoder> with_temporal_decoder(const Autoencoder& image, int frames, Generator& gen) {
  DDPM_CHECK(image.config().temporal_frames == 0,
             "with_temporal_decoder: the autoencoder already has a temporal decoder (temporal_frames "
                 << image.config().temporal_frames << ")");
  AutoencoderConfig cfg = image.config();
  cfg.temporal_frames = frames;  // validated by the constructor
  auto video = std::make_unique<Autoencoder>(cfg, gen, image.device());
  std::vector<nn::NamedTensor> target = video->named_parameters();
  std::size_t t = 0;
  for (const auto& [name, value] : image.named_parameters()) {
    // The image parameters come in the same order in both, the temporal layers among them.
    while (t < target.size() && target[t].first != name) ++t;
    DDPM_CHECK(t < target.size(), "with_temporal_decoder: no parameter " << name << " in the temporal autoencoder");
    target[t].second.copy_from(value);
  }
  return video;
}

TemporalDecoderLossTerms temporal_decoder_loss(const Autoencoder& ae, const Tensor& x, const Tensor& eps,
                                               ReconstructionLoss rec, const nn::Context& ctx) {
  const AutoencoderConfig& c = ae.config();
  DDPM_CHECK(c.temporal_frames > 0, "temporal_decoder_loss: the autoencoder has an image decoder (temporal_frames 0)");
  DDPM_CHECK(x.ndim() == 5, "temporal_decoder_loss: clips " << shape_str(x.shape()) << " must be [N, F, H, W, C]");
  const std::int64_t N = x.dim(0), F = x.dim(1);
  Tensor z;  // [N F, h, w, z]: the frozen encoder's posterior sample of each frame, off the tape
  {
    NoGradGuard no_grad;
    z = ae.encode(x.reshape({N * F, x.dim(2), x.dim(3), x.dim(4)})).sample(eps).detach();
  }
  TemporalDecoderLossTerms t;
  t.reconstruction_clips = ae.decode_clips(z.reshape({N, F, z.dim(1), z.dim(2), z.dim(3)}), ctx);
  const Tensor d = sub(t.reconstruction_clips, x);
  // As autoencoder_loss: |d| = d sign(d) (the L1 subgradient) or d^2; summed over the clip.
  const Tensor per_pixel =
      rec == ReconstructionLoss::l2 ? square(d) : mul(d, sub(greater_than(d, 0.0), less_than(d, 0.0)));
  t.reconstruction = mean_over_batch(per_pixel);
  return t;
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
