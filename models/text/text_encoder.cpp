// models/text/text_encoder.cpp: see text_encoder.h.
#include "models/text/text_encoder.h"

#include <string>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/attention.h"
#include "engine/ops/elementwise.h"
#include "engine/recompute.h"
#include "models/unet/level_config.h"
#include "models/unet/model_io.h"

namespace ddpm::text {

using nlohmann::json;

void TextEncoderConfig::validate() const {
  DDPM_CHECK(vocab_size > 0, "text encoder config: vocab_size must be positive (the tokenizer's vocabulary), got "
                                 << vocab_size);
  DDPM_CHECK(context_length > 0, "text encoder config: context_length must be positive, got " << context_length);
  DDPM_CHECK(width > 0 && layers > 0 && heads > 0, "text encoder config: width, layers and heads must be positive, got "
                                                       << width << ", " << layers << " and " << heads);
  DDPM_CHECK(width % heads == 0, "text encoder config: " << heads << " heads do not divide width " << width);
}

json text_encoder_config_to_json(const TextEncoderConfig& c) {
  return json{{"vocab_size", c.vocab_size},
              {"context_length", c.context_length},
              {"width", c.width},
              {"layers", c.layers},
              {"heads", c.heads}};
}

TextEncoderConfig text_encoder_config_from_json(const json& j) {
  DDPM_CHECK_AS(j.is_object(), IoError, "text encoder config: expected a JSON object");
  unet::check_config_keys(j, text_encoder_config_to_json(TextEncoderConfig{}), "text encoder config");
  TextEncoderConfig c;
  int* fields[] = {&c.vocab_size, &c.context_length, &c.width, &c.layers, &c.heads};
  const char* keys[] = {"vocab_size", "context_length", "width", "layers", "heads"};
  for (int k = 0; k < 5; ++k) {
    unet::require_json_ints(j.at(keys[k]), std::string("text encoder config: ") + keys[k]);
    *fields[k] = j.at(keys[k]).get<int>();
  }
  c.validate();
  return c;
}

// --- TextEncoderLayer -----------------------------------------------------------------------

TextEncoderLayer::TextEncoderLayer(std::int64_t width, int heads, Generator& gen, Device device) : heads_(heads) {
  q_ = std::make_unique<nn::Linear>(width, width, gen, device);
  register_module("self_attn.q_proj", q_.get());
  k_ = std::make_unique<nn::Linear>(width, width, gen, device);
  register_module("self_attn.k_proj", k_.get());
  v_ = std::make_unique<nn::Linear>(width, width, gen, device);
  register_module("self_attn.v_proj", v_.get());
  out_ = std::make_unique<nn::Linear>(width, width, gen, device);
  register_module("self_attn.out_proj", out_.get());
  norm1_ = std::make_unique<nn::LayerNorm>(width, device);
  register_module("layer_norm1", norm1_.get());
  fc1_ = std::make_unique<nn::Linear>(width, 4 * width, gen, device);
  register_module("mlp.fc1", fc1_.get());
  fc2_ = std::make_unique<nn::Linear>(4 * width, width, gen, device);
  register_module("mlp.fc2", fc2_.get());
  norm2_ = std::make_unique<nn::LayerNorm>(width, device);
  register_module("layer_norm2", norm2_.get());
}

Tensor TextEncoderLayer::forward(const Tensor& x) const {
  const Tensor u = norm1_->forward(x);  // [N, L, W]
  Tensor h = add(x, out_->forward(attention(q_->forward(u), k_->forward(u), v_->forward(u), heads_)));
  return add(h, fc2_->forward(gelu(fc1_->forward(norm2_->forward(h)))));  // MLP: W -> 4W -> W
}

// --- TextEncoder ------------------------------------------------------------------------------

namespace {
// Multiplies a freshly drawn N(0, 1) parameter by `std`, giving N(0, std^2), on any device.
// The parameter stays a leaf: the product is taken off the tape and its storage swapped in.
void scale_init(Tensor& w, double std) {
  NoGradGuard no_grad;
  const Tensor scaled = scale(w, std);
  *w.impl() = *scaled.impl();
  w.set_requires_grad(true);
}
}  // namespace

TextEncoder::TextEncoder(const TextEncoderConfig& cfg, Generator& gen, Device device) : cfg_(cfg) {
  cfg.validate();
  token_ = std::make_unique<nn::Embedding>(cfg.vocab_size, cfg.width, gen, device);
  scale_init(token_->weight, 0.02);
  position_ = std::make_unique<nn::Embedding>(cfg.context_length, cfg.width, gen, device);
  scale_init(position_->weight, 0.01);
  register_module("text_model.embeddings.token_embedding", token_.get());
  register_module("text_model.embeddings.position_embedding", position_.get());
  for (int i = 0; i < cfg.layers; ++i) {
    layers_.push_back(std::make_unique<TextEncoderLayer>(cfg.width, cfg.heads, gen, device));
    register_module("text_model.encoder.layers." + std::to_string(i), layers_.back().get());
  }
  final_norm_ = std::make_unique<nn::LayerNorm>(cfg.width, device);
  register_module("text_model.final_layer_norm", final_norm_.get());
}

TextEncoder::~TextEncoder() = default;

Tensor TextEncoder::forward(const std::vector<std::int64_t>& ids, std::int64_t n, const nn::Context& ctx) const {
  const std::int64_t L = cfg_.context_length;
  DDPM_CHECK(n >= 1 && static_cast<std::int64_t>(ids.size()) == n * L,
             "TextEncoder: " << ids.size() << " token ids for " << n << " rows of context_length " << L
                             << " (expected " << n * L << ")");
  for (std::size_t k = 0; k < ids.size(); ++k)
    DDPM_CHECK(ids[k] >= 0 && ids[k] < cfg_.vocab_size,
               "TextEncoder: token id " << ids[k] << " at row " << static_cast<std::int64_t>(k) / L << ", position "
                                        << static_cast<std::int64_t>(k) % L << " is outside the vocabulary [0, "
                                        << cfg_.vocab_size << ")");
  // [N L, W] -> [N, L, W], plus the learned position embedding [L, W] broadcast over rows.
  Tensor x = add(token_->forward(ids).reshape({n, L, cfg_.width}), position_->weight);
  for (const auto& layer : layers_) {
    if (!ctx.recompute) {
      x = layer->forward(x);
      continue;
    }
    const TextEncoderLayer* l = layer.get();
    x = recompute(
        "text_encoder_layer", [l](const std::vector<Tensor>& in, Generator*) { return l->forward(in[0]); }, {x},
        l->any_parameter_requires_grad(), nullptr);
  }
  return final_norm_->forward(x);  // [N, L, W]
}

}  // namespace ddpm::text
