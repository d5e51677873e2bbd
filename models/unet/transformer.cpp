// models/unet/transformer.cpp: see transformer.h.
#include "models/unet/transformer.h"

#include "models/nn/lora.h"
#include "models/unet/attention_control.h"

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/attention.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/recompute.h"

namespace ddpm::unet {

CrossAttention::CrossAttention(std::int64_t query_dim, std::int64_t context_dim, int num_heads, Generator& gen,
                               Device device)
    : heads_(num_heads) {
  DDPM_CHECK(num_heads > 0 && query_dim % num_heads == 0,
             "CrossAttention: " << num_heads << " heads do not divide " << query_dim << " channels");
  q_ = std::make_unique<nn::Linear>(query_dim, query_dim, gen, device, /*bias=*/false);
  register_module("to_q", q_.get());
  k_ = std::make_unique<nn::Linear>(context_dim, query_dim, gen, device, /*bias=*/false);
  register_module("to_k", k_.get());
  v_ = std::make_unique<nn::Linear>(context_dim, query_dim, gen, device, /*bias=*/false);
  register_module("to_v", v_.get());
  out_ = std::make_unique<nn::Linear>(query_dim, query_dim, gen, device);
  register_module("to_out.0", out_.get());
}

Tensor CrossAttention::forward(const Tensor& x, const Tensor& context) const {
  const Tensor& c = context.defined() ? context : x;  // self-attention reads x itself
  // q [N, S, C]; k, v [N, L, C]; the op's softmax runs over the L keys of each query.
  // With a LoRA set on the model each projection adds its adapter (models/nn/lora.h).
  if (controller_ == nullptr)
    return out_->forward(attention(q_->forward(x), k_->forward(c), v_->forward(c), heads_, context.defined()));
  // Controlled (attention_control.h): P [N, heads, S, L] formed explicitly, edited, applied to v.
  DDPM_CHECK(!grad_enabled(), "CrossAttention " << site_ << ": an attention controller is for sampling only (no "
                                                                "backward through edited maps); run under NoGradGuard");
  const Tensor v = v_->forward(c);
  const Tensor p = attention_probabilities(q_->forward(x), k_->forward(c), heads_);
  const Tensor edited = controller_->edit(p, AttentionSite{site_, context.defined(), heads_});
  DDPM_CHECK(edited.shape() == p.shape(), "CrossAttention " << site_ << ": the attention controller returned maps "
                                                            << shape_str(edited.shape()) << " for "
                                                            << shape_str(p.shape()));
  return out_->forward(apply_attention_probabilities(edited, v, heads_));
}

GegluFeedForward::GegluFeedForward(std::int64_t dim, Generator& gen, Device device, int mult) : inner_(mult * dim) {
  proj_ = std::make_unique<nn::Linear>(dim, 2 * inner_, gen, device);
  register_module("net.0.proj", proj_.get());
  out_ = std::make_unique<nn::Linear>(inner_, dim, gen, device);
  register_module("net.2", out_.get());
}

Tensor GegluFeedForward::forward(const Tensor& x) const {
  const Tensor p = proj_->forward(x);  // [..., 2 inner]: the value half, then the gate half
  const int last = p.ndim() - 1;
  const Tensor a = slice(p, last, 0, inner_);
  const Tensor gate = slice(p, last, inner_, inner_);
  return out_->forward(mul(a, gelu(gate)));  // [..., dim]
}

BasicTransformerBlock::BasicTransformerBlock(std::int64_t dim, std::int64_t context_dim, int num_heads, Generator& gen,
                                             Device device) {
  norm1_ = std::make_unique<nn::LayerNorm>(dim, device);
  register_module("norm1", norm1_.get());
  attn1_ = std::make_unique<CrossAttention>(dim, dim, num_heads, gen, device);
  register_module("attn1", attn1_.get());
  norm2_ = std::make_unique<nn::LayerNorm>(dim, device);
  register_module("norm2", norm2_.get());
  attn2_ = std::make_unique<CrossAttention>(dim, context_dim, num_heads, gen, device);
  register_module("attn2", attn2_.get());
  norm3_ = std::make_unique<nn::LayerNorm>(dim, device);
  register_module("norm3", norm3_.get());
  ff_ = std::make_unique<GegluFeedForward>(dim, gen, device);
  register_module("ff", ff_.get());
}

Tensor BasicTransformerBlock::forward(const Tensor& h, const Tensor& context) const {
  Tensor out = add(h, attn1_->forward(norm1_->forward(h)));       // self-attention over the S tokens
  out = add(out, attn2_->forward(norm2_->forward(out), context));  // cross-attention to the L context tokens
  return add(out, ff_->forward(norm3_->forward(out)));
}

SpatialTransformer::SpatialTransformer(std::int64_t channels, std::int64_t context_dim, int num_heads, int depth,
                                       int norm_groups, Generator& gen, Device device)
    : context_dim_(context_dim) {
  DDPM_CHECK(context_dim > 0, "SpatialTransformer: context_dim must be positive, got " << context_dim);
  DDPM_CHECK(depth >= 1, "SpatialTransformer: depth (transformer_depth) must be at least 1, got " << depth);
  norm_ = std::make_unique<nn::GroupNorm>(norm_groups, channels, device, 1e-6);
  register_module("norm", norm_.get());
  proj_in_ = std::make_unique<nn::Conv2d>(channels, channels, 1, 1, 0, gen, device);
  register_module("proj_in", proj_in_.get());
  for (int d = 0; d < depth; ++d) {
    blocks_.push_back(std::make_unique<BasicTransformerBlock>(channels, context_dim, num_heads, gen, device));
    register_module("transformer_blocks." + std::to_string(d), blocks_.back().get());
  }
  proj_out_ = std::make_unique<nn::Conv2d>(channels, channels, 1, 1, 0, gen, device);
  proj_out_->zero_();  // the block starts as the identity (LDM's zero_module(proj_out))
  register_module("proj_out", proj_out_.get());
}

Tensor SpatialTransformer::forward(const Tensor& x, const Tensor& context, const nn::Context& ctx) const {
  DDPM_CHECK(x.ndim() == 4, "SpatialTransformer: input " << shape_str(x.shape()) << " is not [N, H, W, C]");
  DDPM_CHECK(context.defined(), "SpatialTransformer: the block needs a context [N, L, " << context_dim_
                                                                                       << "]; none was given");
  DDPM_CHECK(context.ndim() == 3 && context.dim(0) == x.dim(0) && context.dim(2) == context_dim_,
             "SpatialTransformer: context " << shape_str(context.shape()) << " does not match [" << x.dim(0)
                                            << ", L, " << context_dim_ << "]");
  if (!ctx.recompute) return compute(x, context);
  return recompute(
      "spatial_transformer",
      [this](const std::vector<Tensor>& in, Generator*) { return compute(in[0], in[1]); }, {x, context},
      any_parameter_requires_grad() || nn::adapters_need_grad(*this), nullptr);  // LoRA: frozen weights, trained adapters
}

Tensor SpatialTransformer::compute(const Tensor& x, const Tensor& context) const {
  const Shape& s = x.shape();  // [N, H, W, C]
  Tensor h = proj_in_->forward(norm_->forward(x)).reshape({s[0], s[1] * s[2], s[3]});  // [N, HW, C]
  for (const auto& block : blocks_) h = block->forward(h, context);
  // x + proj_out(h), the residual added in the 1x1 conv's epilogue (0 + x is exactly x).
  return proj_out_->forward(h.reshape(s), Tensor(), /*residual=*/x);
}

}  // namespace ddpm::unet
