// models/text/text_encoder.h: the context encoder tau_theta of latent diffusion (Rombach et
// al. 2022, sec. 3.3 and App. E.2: a transformer over the caption's tokens, trained jointly
// with the UNet from scratch), giving the context [N, L, width] the UNet's spatial
// transformers cross-attend to (models/unet/transformer.h).
//
// A small pre-LN transformer, non-causal (every token sees every token, as LDM's BERT-style
// encoder; no padding mask: <pad> tokens are ordinary inputs the network learns to read):
//   x = token_embedding[ids] + position_embedding[0..L)            [N, L, width]
//   per layer i < layers:
//     x += out_proj( attention(q_proj(u), k_proj(u), v_proj(u)) ),  u = layer_norm1(x)
//     x += fc2( gelu( fc1( layer_norm2(x) ) ) )                     fc1: width -> 4 width
//   context = final_layer_norm(x)                                   [N, L, width]
// gelu is the exact (erf) GELU; the attention splits width into `heads` heads of width /
// heads channels with the 1/sqrt(d) scale of engine/ops/attention.h.
// Parameter names are transformers' CLIPTextModel's, so a reader recognises them:
//   text_model.embeddings.{token_embedding,position_embedding}.weight,
//   text_model.encoder.layers.i.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2,
//   layer_norm2}.{weight,bias}, text_model.final_layer_norm.{weight,bias}.
// The differences from CLIP's text tower: no causal mask, exact GELU instead of quick_gelu,
// and no pooled output or projection (the UNet reads the whole sequence).
// Initialisation as CLIP's (transformers' CLIPPreTrainedModel._init_weights with factor 1):
// token embeddings N(0, 0.02^2), position embeddings N(0, 0.01^2); the linear layers have
// PyTorch's default uniform fan-in init (nn::Linear), LayerNorms weight 1 and bias 0.
// The parameters are ordinary nn::Module parameters, so a trainer packs them into its
// ParameterSlab beside the UNet's (engine/parameters.h).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/nn/layers.h"

namespace ddpm::text {

struct TextEncoderConfig {
  int vocab_size = 0;        // rows of token_embedding: the tokenizer's vocab_size()
  int context_length = 16;   // L, tokens per caption: the tokenizer's context_length()
  int width = 128;           // the context's channels (the UNet's context_dim)
  int layers = 2;
  int heads = 4;
  // ValueError naming the first field out of range (all positive, heads divide width).
  void validate() const;
};

// {"vocab_size", "context_length", "width", "layers", "heads"}; from_json reads strictly
// (IoError for an unknown, missing or non-integer key) and validates.
nlohmann::json text_encoder_config_to_json(const TextEncoderConfig& c);
TextEncoderConfig text_encoder_config_from_json(const nlohmann::json& j);

// One pre-LN transformer layer (CLIPEncoderLayer's names).
class TextEncoderLayer : public nn::Module {
 public:
  TextEncoderLayer(std::int64_t width, int heads, Generator& gen, Device device);
  Tensor forward(const Tensor& x) const;  // [N, L, width] -> [N, L, width]

 private:
  std::unique_ptr<nn::Linear> q_, k_, v_, out_, fc1_, fc2_;
  std::unique_ptr<nn::LayerNorm> norm1_, norm2_;
  int heads_;
};

class TextEncoder : public nn::Module {
 public:
  TextEncoder(const TextEncoderConfig& cfg, Generator& gen, Device device);
  ~TextEncoder() override;

  // ids: n rows of context_length token ids each, row-major; every id in [0, vocab_size).
  // Returns the context [n, context_length, width]. With ctx.recompute (and grad mode) each
  // layer runs under activation checkpointing (engine/recompute.h). ValueError naming the
  // first bad id or the size mismatch.
  Tensor forward(const std::vector<std::int64_t>& ids, std::int64_t n, const nn::Context& ctx) const;

  const TextEncoderConfig& config() const { return cfg_; }

 private:
  TextEncoderConfig cfg_;
  std::unique_ptr<nn::Embedding> token_, position_;
  std::vector<std::unique_ptr<TextEncoderLayer>> layers_;
  std::unique_ptr<nn::LayerNorm> final_norm_;
};

}  // namespace ddpm::text
