// models/unet/temporal_conv.cpp: see temporal_conv.h.
#include "models/unet/temporal_conv.h"

#include <vector>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/recompute.h"
#include "models/nn/lora.h"

namespace ddpm::unet {

TemporalConv::TemporalConv(std::int64_t channels, int norm_groups, double norm_eps, Generator& gen, Device device)
    : channels_(channels) {
  DDPM_CHECK(channels > 0, "TemporalConv: channels must be positive, got " << channels);
  norm_ = std::make_unique<nn::GroupNorm>(norm_groups, channels, device, norm_eps);
  register_module("norm", norm_.get());
  conv_ = std::make_unique<nn::Linear>(3 * channels, channels, gen, device);  // taps f-1, f, f+1
  register_module("conv", conv_.get());
  out_ = std::make_unique<nn::Linear>(channels, channels, gen, device);
  out_->weight.zero_();  // a new block is the identity (temporal_conv.h)
  out_->bias.zero_();
  register_module("proj_out", out_.get());
}

Tensor TemporalConv::forward(const Tensor& x, std::int64_t frames, const nn::Context& ctx) const {
  DDPM_CHECK(x.ndim() == 4 && x.dim(3) == channels_,
             "TemporalConv: input " << shape_str(x.shape()) << " is not [N*F, H, W, " << channels_ << "]");
  DDPM_CHECK(frames >= 1 && x.dim(0) % frames == 0,
             "TemporalConv: " << x.dim(0) << " rows of " << shape_str(x.shape()) << " are not whole clips of "
                              << frames << " frames");
  if (!ctx.recompute) return compute(x, frames);
  return recompute(
      "temporal_conv", [this, frames](const std::vector<Tensor>& in, Generator*) { return compute(in[0], frames); },
      {x}, any_parameter_requires_grad() || nn::adapters_need_grad(*this), nullptr);
}

Tensor TemporalConv::compute(const Tensor& x, std::int64_t frames) const {
  const Shape& s = x.shape();  // [N*F, H, W, C]
  const std::int64_t N = s[0] / frames, F = frames, HW = s[1] * s[2], C = s[3];
  // Group norm per clip (statistics over all F frames), then SiLU, as TemporalAttention's norm.
  Tensor h = norm_->forward(x.reshape({N, F * s[1], s[2], C}), /*silu=*/true).reshape({N, F, HW, C});  // [N, F, HW, C]
  // The neighbours of frame f, zero past the clip's ends (the convolution's zero padding):
  //   prev[f] = h[f-1] (prev[0] = 0),  next[f] = h[f+1] (next[F-1] = 0).
  const Tensor zero = Tensor::zeros({N, 1, HW, C}, x.dtype(), x.device());  // [N, 1, HW, C]
  Tensor prev = zero, next = zero;                                          // F = 1: both sides are padding
  if (F > 1) {
    prev = concat({zero, slice(h, 1, 0, F - 1)}, 1);  // [N, F, HW, C]
    next = concat({slice(h, 1, 1, F - 1), zero}, 1);  // [N, F, HW, C]
  }
  const Tensor taps = concat({prev, h, next}, 3);         // u [N, F, HW, 3C]: tap k is frame f + k - 1
  const Tensor y = out_->forward(conv_->forward(taps));  // proj_out(conv(u)) [N, F, HW, C]
  return add(x, y.reshape(s));                            // [N*F, H, W, C]
}

}  // namespace ddpm::unet
