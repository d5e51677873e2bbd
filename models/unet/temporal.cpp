// models/unet/temporal.cpp: see temporal.h.
#include "models/unet/temporal.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/error.h"
#include "engine/ops/attention.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/embedding.h"
#include "engine/ops/transpose.h"
#include "engine/recompute.h"
#include "models/nn/lora.h"

namespace ddpm::unet {

Tensor frame_position_embedding(std::int64_t frames, std::int64_t channels, DType dtype, Device device) {
  std::vector<double> p(static_cast<std::size_t>(frames * channels));
  for (std::int64_t f = 0; f < frames; ++f)
    for (std::int64_t c = 0; c < channels; ++c) {
      // Channels 2i and 2i+1 share the frequency 1 / 10000^(2i/C) (Vaswani et al. sec. 3.5).
      const double two_i = static_cast<double>(c - c % 2);
      const double angle = static_cast<double>(f) / std::pow(10000.0, two_i / static_cast<double>(channels));
      p[static_cast<std::size_t>(f * channels + c)] = c % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  return Tensor::from_vector(p, {frames, channels}, dtype, device);  // [F, C]
}

Tensor relative_position_bias(const Tensor& table, std::int64_t frames) {
  DDPM_CHECK(table.ndim() == 2 && table.dim(0) % 2 == 1,
             "relative_position_bias: the table must be [2R+1, heads] (one row per signed distance), got "
                 << shape_str(table.shape()));
  DDPM_CHECK(frames >= 1, "relative_position_bias: frames must be at least 1, got " << frames);
  const std::int64_t R = (table.dim(0) - 1) / 2, heads = table.dim(1);
  // Pair (i, j), query frame i and key frame j, reads row clip(j - i, -R, R) + R.
  std::vector<std::int64_t> ids(static_cast<std::size_t>(frames * frames));
  for (std::int64_t i = 0; i < frames; ++i)
    for (std::int64_t j = 0; j < frames; ++j)
      ids[static_cast<std::size_t>(i * frames + j)] = std::clamp(j - i, -R, R) + R;
  Tensor rows = embedding(table, ids);                                 // [F*F, heads]
  return transpose(rows, 0, 1).reshape({heads, frames, frames});       // [heads, F, F]
}

TemporalAttention::TemporalAttention(std::int64_t channels, int num_heads, int norm_groups, double norm_eps,
                                     Generator& gen, Device device, std::int64_t max_distance)
    : heads_(num_heads), channels_(channels) {
  DDPM_CHECK(num_heads > 0 && channels % num_heads == 0,
             "TemporalAttention: " << num_heads << " heads do not divide " << channels << " channels");
  DDPM_CHECK(max_distance >= 0, "TemporalAttention: max_distance must be 0 (sinusoidal positions) or at least 1 "
                                "(relative positions), got "
                                    << max_distance);
  norm_ = std::make_unique<nn::GroupNorm>(norm_groups, channels, device, norm_eps);
  register_module("norm", norm_.get());
  q_ = std::make_unique<nn::Linear>(channels, channels, gen, device);
  register_module("to_q", q_.get());
  k_ = std::make_unique<nn::Linear>(channels, channels, gen, device);
  register_module("to_k", k_.get());
  v_ = std::make_unique<nn::Linear>(channels, channels, gen, device);
  register_module("to_v", v_.get());
  out_ = std::make_unique<nn::Linear>(channels, channels, gen, device);
  out_->weight.zero_();  // a new block is the identity (temporal.h)
  out_->bias.zero_();
  register_module("to_out.0", out_.get());
  if (max_distance > 0)  // B = 0: no position preference until training gives one (temporal.h)
    relative_bias_ =
        add_parameter("relative_bias", Tensor::zeros({2 * max_distance + 1, num_heads}, DType::f32, device));
}

Tensor TemporalAttention::forward(const Tensor& x, std::int64_t frames, const nn::Context& ctx) const {
  DDPM_CHECK(x.ndim() == 4 && x.dim(3) == channels_,
             "TemporalAttention: input " << shape_str(x.shape()) << " is not [N*F, H, W, " << channels_ << "]");
  DDPM_CHECK(frames >= 1 && x.dim(0) % frames == 0,
             "TemporalAttention: " << x.dim(0) << " rows of " << shape_str(x.shape()) << " are not whole clips of "
                                   << frames << " frames");
  if (!ctx.recompute) return compute(x, frames);
  return recompute(
      "temporal_attention", [this, frames](const std::vector<Tensor>& in, Generator*) { return compute(in[0], frames); },
      {x}, any_parameter_requires_grad() || nn::adapters_need_grad(*this), nullptr);
}

Tensor TemporalAttention::compute(const Tensor& x, std::int64_t frames) const {
  const Shape& s = x.shape();  // [N*F, H, W, C]
  const std::int64_t N = s[0] / frames, F = frames, HW = s[1] * s[2], C = s[3];
  // Group norm per clip: its statistics cover all F frames of the clip.
  Tensor n = norm_->forward(x.reshape({N, F * s[1], s[2], C}));                  // [N, F*H, W, C]
  Tensor tokens = transpose(n.reshape({N, F, HW, C}), 1, 2).reshape({N * HW, F, C});  // [N*H*W, F, C]
  Tensor bias;  // relative positions: the logit bias [heads, F, F], shared by all N*H*W sequences
  if (relative()) {
    bias = relative_position_bias(relative_bias_, F);
  } else {
    if (!position_.defined() || position_.dim(0) < F || position_.dtype() != x.dtype() ||
        position_.device() != x.device())
      position_ = frame_position_embedding(F, C, x.dtype(), x.device());
    // Row f of the table does not depend on how many rows it has, so fewer frames (a joint
    // step's one-frame stills) take the first F rows of the cached one.
    const Tensor p = position_.dim(0) == F ? position_ : slice(position_, 0, 0, F);
    tokens = add(tokens, p);                                                    // + p [F, C]
  }
  // With a LoRA set on the model each projection adds its adapter (models/nn/lora.h).
  // (The projections are written inside the calls, as before the option: the sinusoid
  // path records its tape exactly as it always did.)
  Tensor a = bias.defined()
                 ? attention(q_->forward(tokens), k_->forward(tokens), v_->forward(tokens), bias, heads_)
                 : attention(q_->forward(tokens), k_->forward(tokens), v_->forward(tokens), heads_);  // [N*H*W, F, C]
  Tensor out = transpose(out_->forward(a).reshape({N, HW, F, C}), 1, 2).reshape(s);        // [N*F, H, W, C]
  return add(x, out);
}

}  // namespace ddpm::unet
