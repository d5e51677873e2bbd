#include "models/unet/blocks.h"

#include "models/nn/lora.h"

#include "engine/error.h"
#include "engine/ops/attention.h"
#include "engine/ops/concat.h"
#include "engine/ops/dropout.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/resample.h"
#include "engine/recompute.h"

namespace ddpm::unet {

namespace {
template <class M, class... Args>
std::unique_ptr<M> make(Args&&... args) {
  return std::make_unique<M>(std::forward<Args>(args)...);
}
}  // namespace

ResnetBlock::ResnetBlock(std::int64_t in, std::int64_t out, std::int64_t emb_dim, const BlockOptions& opt,
                         Resample resample, Generator& gen, Device device)
    : opt_(opt), resample_(resample), out_(out) {
  norm1_ = make<nn::GroupNorm>(opt.norm_groups, in, device, opt.norm_eps);
  register_module("norm1", norm1_.get());
  conv1_ = make<nn::Conv2d>(in, out, 3, 1, 1, gen, device);
  register_module("conv1", conv1_.get());
  emb_proj_ = make<nn::Linear>(emb_dim, opt.scale_shift ? 2 * out : out, gen, device);
  register_module("time_emb_proj", emb_proj_.get());
  norm2_ = make<nn::GroupNorm>(opt.norm_groups, out, device, opt.norm_eps);
  register_module("norm2", norm2_.get());
  conv2_ = make<nn::Conv2d>(out, out, 3, 1, 1, gen, device);
  conv2_->zero_();
  register_module("conv2", conv2_.get());
  if (in != out) {
    shortcut_ = make<nn::Conv2d>(in, out, 1, 1, 0, gen, device);
    register_module("conv_shortcut", shortcut_.get());
  }
}

Tensor ResnetBlock::forward(const Tensor& x, const Tensor& emb, const nn::Context& ctx) const {
  if (!ctx.recompute) return compute(x, emb, ctx);
  const nn::Context inner{ctx.training, nullptr, false};
  return recompute(
      "resnet_block",
      [this, inner](const std::vector<Tensor>& in, Generator* gen) {
        nn::Context c = inner;
        c.gen = gen;
        return compute(in[0], in[1], c);
      },
      {x, emb}, any_parameter_requires_grad(), ctx.gen);
}

Tensor ResnetBlock::compute(const Tensor& x, const Tensor& emb, const nn::Context& ctx) const {
  // x [N, H, W, Cin], emb [N, E]
  Tensor h = norm1_->forward(x, /*silu=*/true);
  Tensor skip = x;
  if (resample_ == Resample::up) {
    h = upsample_nearest2x(h);
    skip = upsample_nearest2x(x);
  } else if (resample_ == Resample::down) {
    h = avg_pool2x(h);
    skip = avg_pool2x(x);
  }
  Tensor e = emb_proj_->forward(silu(emb));  // [N, Cout] or [N, 2 Cout]
  if (opt_.scale_shift) {
    h = conv1_->forward(h);                   // [N, H', W', Cout]
    Tensor ada_scale = slice(e, 1, 0, out_);  // [N, Cout]
    Tensor ada_shift = slice(e, 1, out_, out_);
    h = norm2_->forward(h, /*silu=*/true, ada_scale, ada_shift);
  } else {
    // conv1(h) + e broadcast over pixels, with e added in conv1's epilogue (one pass over
    // the activation instead of two).
    h = norm2_->forward(conv1_->forward(h, /*sample_bias=*/e, Tensor()), /*silu=*/true);  // [N, H', W', Cout]
  }
  if (ctx.training && opt_.dropout > 0) {
    DDPM_CHECK(ctx.gen != nullptr, "ResnetBlock: training with dropout needs a generator in the context");
    h = dropout(h, opt_.dropout, *ctx.gen, true);
  }
  if (shortcut_) skip = shortcut_->forward(skip);
  // conv2(h) + skip, the residual added in conv2's epilogue (equal to skip + conv2(h):
  // floating-point addition is commutative).
  Tensor out = conv2_->forward(h, Tensor(), /*residual=*/skip);
  return opt_.output_scale == 1.0 ? out : scale(out, opt_.output_scale);
}

AttentionBlock::AttentionBlock(std::int64_t channels, int num_heads, int norm_groups, double norm_eps, Generator& gen,
                               Device device)
    : heads_(num_heads) {
  DDPM_CHECK(num_heads > 0 && channels % num_heads == 0,
             "AttentionBlock: " << num_heads << " heads do not divide " << channels << " channels");
  norm_ = make<nn::GroupNorm>(norm_groups, channels, device, norm_eps);
  register_module("group_norm", norm_.get());
  q_ = make<nn::Linear>(channels, channels, gen, device);
  register_module("to_q", q_.get());
  k_ = make<nn::Linear>(channels, channels, gen, device);
  register_module("to_k", k_.get());
  v_ = make<nn::Linear>(channels, channels, gen, device);
  register_module("to_v", v_.get());
  out_ = make<nn::Linear>(channels, channels, gen, device);
  out_->weight.zero_();
  out_->bias.zero_();
  register_module("to_out.0", out_.get());
}

Tensor AttentionBlock::forward(const Tensor& x, const nn::Context& ctx) const {
  if (!ctx.recompute) return compute(x);
  return recompute(
      "attention_block", [this](const std::vector<Tensor>& in, Generator*) { return compute(in[0]); }, {x},
      any_parameter_requires_grad() || nn::adapters_need_grad(*this), nullptr);  // LoRA: frozen weights, trained adapters
}

Tensor AttentionBlock::compute(const Tensor& x) const {
  const Shape& s = x.shape();  // [N, H, W, C]
  Tensor tokens = norm_->forward(x).reshape({s[0], s[1] * s[2], s[3]});  // [N, HW, C]
  // With a LoRA set on the model each projection adds its adapter (models/nn/lora.h).
  Tensor a = attention(q_->forward(tokens), k_->forward(tokens), v_->forward(tokens), heads_);
  return add(x, out_->forward(a).reshape(s));
}

Downsample::Downsample(std::int64_t channels, Generator& gen, Device device) {
  conv_ = make<nn::Conv2d>(channels, channels, 3, 2, 1, gen, device);
  register_module("conv", conv_.get());
}

Tensor Downsample::forward(const Tensor& x) const { return conv_->forward(x); }

Upsample::Upsample(std::int64_t channels, Generator& gen, Device device) {
  conv_ = make<nn::Conv2d>(channels, channels, 3, 1, 1, gen, device);
  register_module("conv", conv_.get());
}

Tensor Upsample::forward(const Tensor& x) const { return conv_->forward(upsample_nearest2x(x)); }

}  // namespace ddpm::unet
