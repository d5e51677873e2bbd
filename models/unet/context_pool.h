// models/unet/context_pool.h: a pooled context vector added to the UNet's timestep
// embedding, the second road by which a text-conditioned UNet reads its caption (GLIDE,
// Nichol et al. 2021 sec. 2.3; Imagen, Saharia et al. 2022; DeepFloyd IF). The spatial
// transformers (transformer.h) let the image tokens attend to the L text tokens at a few
// resolutions; this module squeezes the L tokens into ONE vector and adds it to emb, which
// every residual block reads (as a class embedding is), so the caption steers the whole
// network from the first step of training.
//
// Named as diffusers' TextTimeEmbedding and AttentionPooling (diffusers/models/embeddings.py;
// UNet2DConditionModel with addition_embed_type = "text" calls it add_embedding), so the
// parameters line up with that checkpoint. With c the context [N, L, D], H heads of
// d = D / H channels:
//   u      = norm1(c)                               LayerNorm over D, eps 1e-5     [N, L, D]
//   cls    = mean_L(u) + pool.positional_embedding  a "class token" [1, D] added   [N, 1, D]
//   keys   = concat([cls, u], tokens)               the token and the L tokens     [N, L+1, D]
//   pooled = attention(pool.q_proj(cls), pool.k_proj(keys), pool.v_proj(keys), H)  [N, 1, D]
//            softmax(q_h k_h^T / sqrt(d)) v_h per head h (channels [h d, (h+1) d), the
//            split of engine/ops/attention.h and of diffusers' reshape to [N, L, H, d]);
//            q/k/v_proj are Linear(D, D) with bias, and there is no output projection
//   aug    = norm2(proj(pooled))                    Linear(D, E), LayerNorm(E)     [N, E]
// where E is the UNet's time_embed_dim; the UNet does emb = emb + aug. The query is the
// class token only, so the output is one attention-weighted average of the tokens (and the
// token itself). Nothing here knows the tokens' order: permuting the L context tokens leaves
// aug unchanged (the mean, the keys' set and the softmax-weighted sum are all symmetric).
//
// Initialisation as PyTorch's: the Linears uniform in +-1/sqrt(fan_in), the LayerNorms at
// weight 1, bias 0, and positional_embedding ~ N(0, 1) / sqrt(D).
// Built from engine ops that all have CUDA paths (layer_norm, mean, add, concat, linear,
// attention); gradients flow to the context and to every parameter.
#pragma once

#include <memory>

#include "models/nn/layers.h"

namespace ddpm::unet {

// diffusers' AttentionPooling (from DeepFloyd IF): x [N, L, D] -> [N, D], the attention
// output of a mean-plus-position class token over itself and the L tokens.
class AttentionPooling : public nn::Module {
 public:
  AttentionPooling(int num_heads, std::int64_t dim, Generator& gen, Device device);
  Tensor forward(const Tensor& x) const;  // [N, L, D] -> [N, D]
  Tensor positional_embedding;           // [1, D]

 private:
  std::unique_ptr<nn::Linear> k_, q_, v_;
  int heads_;
  std::int64_t dim_;
};

// diffusers' TextTimeEmbedding: context [N, L, D] -> [N, time_embed_dim], the term the UNet
// adds to its timestep embedding.
class TextTimeEmbedding : public nn::Module {
 public:
  TextTimeEmbedding(std::int64_t context_dim, std::int64_t time_embed_dim, int num_heads, Generator& gen,
                    Device device);
  // ValueError when the context is not [N, L >= 1, context_dim].
  Tensor forward(const Tensor& context) const;

 private:
  std::unique_ptr<nn::LayerNorm> norm1_, norm2_;
  std::unique_ptr<AttentionPooling> pool_;
  std::unique_ptr<nn::Linear> proj_;
  std::int64_t context_dim_;
};

}  // namespace ddpm::unet
