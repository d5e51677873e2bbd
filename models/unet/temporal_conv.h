// models/unet/temporal_conv.h: a temporal convolution, the local companion of temporal
// attention in a space-time factorised video UNet. Tran et al. 2018 ("A Closer Look at
// Spatiotemporal Convolutions") factorise a 3D convolution into a 2D spatial one followed by
// a 1D one over time, "(2+1)D"; Make-A-Video (Singer et al. 2022, sec. 3.2) puts such a 1D
// "pseudo-3D" convolution after each spatial convolution of a pretrained image UNet, and Video
// LDM (Blattmann et al. 2023, sec. 3.1) mixes frames with 3D convolutions beside temporal
// attention. Attention sees every frame but must learn locality; a kernel of 3 over frames
// gives every frame its two neighbours directly, at every resolution of the network.
//
// Layout: as TemporalAttention (temporal.h), x [N*F, H, W, C], the F consecutive rows of a
// clip its frames in order. The block:
//   h = SiLU(group_norm(x viewed as [N, F*H, W, C]))   statistics over all frames of a clip
//   h viewed as [N, F, H*W, C]
//   u[f] = concat(h[f-1], h[f], h[f+1]) on channels     [N, F, H*W, 3C], h[-1] = h[F] = 0
//   y = proj_out(conv(u))                                conv: Linear(3C -> C), proj_out: C -> C
//   out = x + y (viewed back to [N*F, H, W, C])
// conv(u) is the 1D convolution over frames with kernel 3 and zero padding, applied at every
// spatial position with the same weights:
//   conv(u)[n, f, p, o] = b[o] + sum_{k=0..2} sum_c W[o, k C + c] h[n, f + k - 1, p, c]
// (W [C, 3C]: column block k multiplies frame f + k - 1; that is the [C_out, C_in, 3] kernel
// of torch.nn.Conv1d with its tap axis moved in front of the input channels). The shifted
// frames are slices of h with a zero frame concatenated at the clip's start or end, so each
// clip is padded on its own: no frame sees another clip. One-frame clips (the stills of joint
// image-video training) see zeros on both sides: the layer then acts on the frame alone.
// The receptive field of one layer is 3 frames: frame f sees f-1, f, f+1 and nothing further.
// proj_out starts at zero, so a fresh layer is exactly the identity (y = 0), like
// TemporalAttention's to_out: a video UNet with new temporal convolutions still computes the
// image UNet frame by frame. conv keeps its random draw, so proj_out's first gradients are
// not zero (d loss / d proj_out = g conv(u)^T), and conv learns once proj_out has moved.
// Built from group_norm, slice, concat, linear and add only: it runs wherever those run (CPU
// and CUDA), with no kernel of its own, and ddpm-profile reports it as those ops.
// Parameter names: norm.{weight,bias}, conv.{weight,bias}, proj_out.{weight,bias}.
// With nn::Context::recompute on, the block runs under activation checkpointing, as
// TemporalAttention does.
#pragma once

#include <memory>

#include "models/nn/layers.h"

namespace ddpm::unet {

class TemporalConv : public nn::Module {
 public:
  TemporalConv(std::int64_t channels, int norm_groups, double norm_eps, Generator& gen, Device device);
  // x [N*F, H, W, C] with `frames` = F >= 1 consecutive rows per clip -> the same shape.
  Tensor forward(const Tensor& x, std::int64_t frames, const nn::Context& ctx = nn::Context{}) const;

 private:
  Tensor compute(const Tensor& x, std::int64_t frames) const;  // the block itself

  std::unique_ptr<nn::GroupNorm> norm_;
  std::unique_ptr<nn::Linear> conv_;  // [C, 3C]: the kernel-3 convolution over frames
  std::unique_ptr<nn::Linear> out_;   // proj_out [C, C], zero at construction
  std::int64_t channels_;
};

}  // namespace ddpm::unet
