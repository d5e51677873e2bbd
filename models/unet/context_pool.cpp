// models/unet/context_pool.cpp: see context_pool.h.
#include "models/unet/context_pool.h"

#include <cmath>

#include "engine/error.h"
#include "engine/ops/attention.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

namespace ddpm::unet {

AttentionPooling::AttentionPooling(int num_heads, std::int64_t dim, Generator& gen, Device device)
    : heads_(num_heads), dim_(dim) {
  DDPM_CHECK(num_heads > 0 && dim > 0 && dim % num_heads == 0,
             "AttentionPooling: " << num_heads << " heads do not divide the context width " << dim);
  // The class token's learned offset, N(0, 1) / sqrt(D) as diffusers draws it.
  positional_embedding =
      add_parameter("positional_embedding", scale(randn({1, dim}, gen, device), 1.0 / std::sqrt(double(dim))));
  k_ = std::make_unique<nn::Linear>(dim, dim, gen, device);
  register_module("k_proj", k_.get());
  q_ = std::make_unique<nn::Linear>(dim, dim, gen, device);
  register_module("q_proj", q_.get());
  v_ = std::make_unique<nn::Linear>(dim, dim, gen, device);
  register_module("v_proj", v_.get());
}

Tensor AttentionPooling::forward(const Tensor& x) const {
  const std::int64_t n = x.dim(0);
  // The class token: the mean of the L tokens plus its position.   [N, 1, D]
  const Tensor cls = add(mean(x, {1}, /*keepdim=*/true), positional_embedding);
  const Tensor keys = concat({cls, x}, 1);  // [N, L + 1, D]: the token attends to itself too
  // One query per sample; its softmax runs over the L + 1 keys.   [N, 1, D]
  const Tensor pooled = attention(q_->forward(cls), k_->forward(keys), v_->forward(keys), heads_);
  return pooled.reshape({n, dim_});
}

TextTimeEmbedding::TextTimeEmbedding(std::int64_t context_dim, std::int64_t time_embed_dim, int num_heads,
                                     Generator& gen, Device device)
    : context_dim_(context_dim) {
  norm1_ = std::make_unique<nn::LayerNorm>(context_dim, device);
  register_module("norm1", norm1_.get());
  pool_ = std::make_unique<AttentionPooling>(num_heads, context_dim, gen, device);
  register_module("pool", pool_.get());
  proj_ = std::make_unique<nn::Linear>(context_dim, time_embed_dim, gen, device);
  register_module("proj", proj_.get());
  norm2_ = std::make_unique<nn::LayerNorm>(time_embed_dim, device);
  register_module("norm2", norm2_.get());
}

Tensor TextTimeEmbedding::forward(const Tensor& context) const {
  DDPM_CHECK(context.defined() && context.ndim() == 3 && context.dim(1) >= 1 && context.dim(2) == context_dim_,
             "TextTimeEmbedding: context " << (context.defined() ? shape_str(context.shape()) : std::string("undefined"))
                                           << " is not [N, L, " << context_dim_ << "] with L >= 1");
  const Tensor pooled = pool_->forward(norm1_->forward(context));  // [N, D]
  return norm2_->forward(proj_->forward(pooled));                  // [N, time_embed_dim]
}

}  // namespace ddpm::unet
