// models/unet/transformer.h: the UNet's "spatial transformer", the block through which a
// latent-diffusion UNet reads a token sequence (Rombach et al. 2022, sec. 3.3: the
// conditioning tau_theta(y) [N, L, d_ctx] enters by cross-attention). Named as diffusers'
// Transformer2DModel and BasicTransformerBlock (diffusers/models/transformers/
// transformer_2d.py, attention.py) so parameter names line up with UNet2DConditionModel.
//
// SpatialTransformer (Transformer2DModel, continuous input, 1x1-conv projections as SD 1.x):
//   h = proj_in( GroupNorm(x) )              GroupNorm eps 1e-6 (diffusers' fixed value)
//   h : [N, H, W, C] -> [N, H*W, C] tokens
//   h = transformer_blocks.d(h, context)    for d < depth
//   out = x + proj_out(h)                    proj_out ZERO-initialised: a fresh block is x
// BasicTransformerBlock (pre-LN; Vaswani et al. 2017 blocks with Q from the image tokens):
//   h += attn1(norm1(h))                     self-attention, q, k, v from h
//   h += attn2(norm2(h), context)            cross-attention: q from h [N, S, C], k and v
//                                            from context [N, L, D]; softmax over the L tokens
//   h += ff(norm3(h))                        GEGLU feed-forward (Shazeer 2020):
//        (a, g) = split(net.0.proj(u)),  u [.., C] -> [.., 8C], a and g [.., 4C] each
//        ff(u)  = net.2( a * gelu(g) )       [.., 4C] -> [.., C]; gelu exact (erf)
// Attention (diffusers' Attention): to_q, to_k, to_v without bias (attention_bias = False
// in Transformer2DModel), to_out.0 with bias; heads split C as engine/ops/attention.h.
// The LayerNorms (norm1/2/3) have eps 1e-5, nn.LayerNorm's default.
//
// With nn::Context::recompute (and grad mode) the whole SpatialTransformer runs under
// activation checkpointing (engine/recompute.h), as the UNet's AttentionBlock does: the
// tape keeps x and the context, and the backward reruns the block.
// Tensors: x NHWC [N, H, W, C]; tokens [N, S, C]; context [N, L, context_dim].
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/nn/layers.h"

namespace ddpm::unet {

class AttentionController;  // attention_control.h

// diffusers' Attention: out = to_out.0( attention(to_q(x), to_k(c), to_v(c)) ), c = x for
// self-attention (an undefined context) or the context for cross-attention.
class CrossAttention : public nn::Module {
 public:
  CrossAttention(std::int64_t query_dim, std::int64_t context_dim, int num_heads, Generator& gen, Device device);
  // x [N, S, query_dim], context [N, L, context_dim] or undefined -> [N, S, query_dim]
  Tensor forward(const Tensor& x, const Tensor& context = Tensor()) const;

  // Prompt-to-Prompt's hook (attention_control.h set_attention_controller): with a controller
  // the attention probabilities are formed explicitly and edited before they meet v; null
  // (the default) runs the fused op as without the hook. `site` names this module in the
  // controller's calls. A sampling-time switch, not part of the weights: hence const.
  void set_controller(AttentionController* controller, const std::string& site) const {
    controller_ = controller;
    site_ = site;
  }

 private:
  std::unique_ptr<nn::Linear> q_, k_, v_, out_;
  int heads_;
  mutable AttentionController* controller_ = nullptr;
  mutable std::string site_;
};

// diffusers' FeedForward with the GEGLU activation: net.0.proj, net.2 (net.1 is dropout).
class GegluFeedForward : public nn::Module {
 public:
  GegluFeedForward(std::int64_t dim, Generator& gen, Device device, int mult = 4);
  Tensor forward(const Tensor& x) const;  // [..., dim] -> [..., dim]

 private:
  std::unique_ptr<nn::Linear> proj_, out_;
  std::int64_t inner_;
};

class BasicTransformerBlock : public nn::Module {
 public:
  BasicTransformerBlock(std::int64_t dim, std::int64_t context_dim, int num_heads, Generator& gen, Device device);
  Tensor forward(const Tensor& h, const Tensor& context) const;  // h [N, S, dim] -> [N, S, dim]

 private:
  std::unique_ptr<nn::LayerNorm> norm1_, norm2_, norm3_;
  std::unique_ptr<CrossAttention> attn1_, attn2_;
  std::unique_ptr<GegluFeedForward> ff_;
};

class SpatialTransformer : public nn::Module {
 public:
  SpatialTransformer(std::int64_t channels, std::int64_t context_dim, int num_heads, int depth, int norm_groups,
                     Generator& gen, Device device);
  // x [N, H, W, C], context [N, L, context_dim] -> [N, H, W, C]. ValueError when the context
  // is missing or its batch or width does not fit.
  Tensor forward(const Tensor& x, const Tensor& context, const nn::Context& ctx = nn::Context{}) const;
  std::int64_t context_dim() const { return context_dim_; }

 private:
  Tensor compute(const Tensor& x, const Tensor& context) const;  // the block itself

  std::unique_ptr<nn::GroupNorm> norm_;
  std::unique_ptr<nn::Conv2d> proj_in_, proj_out_;
  std::vector<std::unique_ptr<BasicTransformerBlock>> blocks_;
  std::int64_t context_dim_;
};

}  // namespace ddpm::unet
