// models/unet/encoder.cpp: see encoder.h for the architecture.
#include "models/unet/encoder.h"

#include "engine/error.h"
#include "engine/ops/reduce.h"
#include "models/unet/model_io.h"

namespace ddpm::unet {

using nlohmann::json;

void EncoderConfig::validate() const {
  validate_levels("encoder config");
  DDPM_CHECK(num_classes >= 2, "encoder config: a classifier needs num_classes >= 2, got " << num_classes);
}

json encoder_config_to_json(const EncoderConfig& c) {
  json j = level_config_to_json(c);
  j["num_classes"] = c.num_classes;
  return j;
}

EncoderConfig encoder_config_from_json(const json& j) {
  DDPM_CHECK_AS(j.is_object(), IoError, "encoder config: expected a JSON object");
  check_config_keys(j, encoder_config_to_json(EncoderConfig{}), "encoder config");
  EncoderConfig c;
  try {
    require_json_ints(j.at("num_classes"), "encoder config: num_classes");
    read_level_config(j, c, "encoder config");
    c.num_classes = j.at("num_classes").get<int>();
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, "encoder config: a value has the wrong type: " << e.what());
  }
  c.validate();
  return c;
}

NoisyClassifier::NoisyClassifier(const EncoderConfig& cfg, Generator& gen, Device device)
    : DownHalf(validated_config(cfg), cfg.in_channels, /*num_class_embeds=*/0, level_block_options(cfg), gen, device),
      cfg_(cfg),
      device_(device) {
  const std::int64_t ch = deepest_channels();
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
  const Tensor emb = embed(Tensor::from_vector(t, {n}, x.dtype(), x.device()), {});
  const Tensor h = encode(x, emb, ctx, /*skips=*/nullptr);  // [N, H', W', C']
  // Head: GroupNorm + SiLU (one fused op), global average pool, linear.
  const Tensor pooled = mean(norm_out_->forward(h, /*silu=*/true), {1, 2});  // [N, C']
  return out_proj_->forward(pooled);                                          // [N, K]
}

}  // namespace ddpm::unet
