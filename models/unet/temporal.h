// models/unet/temporal.h: temporal self-attention, the layer that makes a space-time
// factorised video UNet out of an image UNet (Ho et al. 2022, "Video Diffusion Models",
// sec. 3: every 2D layer runs per frame, and attention over the frame axis, with the
// spatial positions acting as the batch, follows the spatial layers).
//
// Layout: the UNet runs its 2D layers on the frames as images, x [N*F, H, W, C] where the F
// consecutive rows of one clip are its frames in order. The block:
//   n = group_norm(x viewed as [N, F*H, W, C])   statistics over all frames of a clip
//   s = transpose(n [N, F, H*W, C], 1, 2)        [N, H*W, F, C] -> tokens [N*H*W, F, C]
//   s = s + p                                    p [F, C]: the frame index, sinusoidal
//   a = to_out(attention(to_q(s), to_k(s), to_v(s), heads))     each position attends over F
//   out = x + a (transposed back to [N*F, H, W, C])
// p is the fixed sinusoidal embedding of Vaswani et al. 2017 sec. 3.5 in its interleaved
// form, frame f and channel c:
//   p[f, 2i] = sin(f / 10000^(2i/C)),  p[f, 2i+1] = cos(f / 10000^(2i/C))
// Without it attention over a set of frames could not tell their order (it is permutation
// equivariant). That is the default (UNetConfig::temporal_position "sinusoid"). p has no
// weights: a clip of any F (longer than the model was trained on, too) takes rows 0..F-1
// of the same formula.
//
// Relative positions (temporal_position "relative"; Ho et al. 2022 sec. 3 use relative
// position embeddings in the temporal attention, here in the scalar-bias form of Shaw et
// al. 2018 as T5 has it, Raffel et al. 2020 sec. 2.1): no p is added; instead a learned
// table B [2R+1, heads] (parameter relative_bias) gives each head one logit per signed
// frame distance, clipped to [-R, R], and the attention adds it to its scores:
//   scores[h, i, j] = q_i . k_j / sqrt(d) + B[clip(j - i, -R, R) + R, h]
// so the block sees how far apart and in which order two frames are, never where they sit
// in the clip. R is UNetConfig::relative_max_distance(): num_frames - 1 by default (every
// distance of a training clip has its own row, 2F - 1 rows), or ddpm-train
// --temporal-max-distance R. Distances beyond R share the rows of +-R (Shaw et al. 2018
// sec. 3.2 clip at a maximum distance k, on the premise that exact offsets matter only
// nearby), which is what lets a call take clips longer than the trained ones (length extrapolation): a
// pair farther apart than R reads the same bias as one exactly R apart. Rows of distances
// no training clip had (R > F - 1) are never trained and stay at zero.
// B starts at zero: then every frame pair gets the same bias and the block is permutation
// equivariant, as without positions; its gradient (the attention's dBias, summed over the
// pairs sharing a distance by the gather's backward) makes it non-zero when training.
// The gather is the embedding op (ids clip(j - i) + R over the F*F pairs, then a transpose
// to [heads, F, F]): differentiable on both devices, no kernel of its own.
// to_out starts at zero, so a fresh block is exactly the identity: a video UNet with new
// temporal layers computes the image UNet frame by frame.
// Parameter names: norm.{weight,bias}, to_q, to_k, to_v, to_out.0 (the projections named as
// AttentionBlock's, so LoRA's attention targets apply to them too), and relative_bias
// [2R+1, heads] with relative positions.
// With nn::Context::recompute on, the block runs under activation checkpointing, as
// AttentionBlock does.
#pragma once

#include <memory>

#include "models/nn/layers.h"

namespace ddpm::unet {

// The fixed frame-position embedding p [frames, channels] described above, in dtype on device.
Tensor frame_position_embedding(std::int64_t frames, std::int64_t channels, DType dtype, Device device);

// The attention logit bias [heads, F, F] of relative positions from the table B [2R+1, heads]
// (R = (rows - 1) / 2): out[h, i, j] = B[clip(j - i, -R, R) + R, h]. Differentiable in B.
Tensor relative_position_bias(const Tensor& table, std::int64_t frames);

class TemporalAttention : public nn::Module {
 public:
  // max_distance R = 0: the sinusoidal frame embedding p; R >= 1: relative positions, the
  // bias table relative_bias [2R+1, heads] (zeros; drawn from no generator, so the other
  // weights are the same either way).
  TemporalAttention(std::int64_t channels, int num_heads, int norm_groups, double norm_eps, Generator& gen,
                    Device device, std::int64_t max_distance = 0);
  // x [N*F, H, W, C] with `frames` = F >= 1 consecutive rows per clip -> the same shape.
  Tensor forward(const Tensor& x, std::int64_t frames, const nn::Context& ctx = nn::Context{}) const;
  int num_heads() const { return heads_; }
  bool relative() const { return relative_bias_.defined(); }

 private:
  Tensor compute(const Tensor& x, std::int64_t frames) const;  // the block itself

  std::unique_ptr<nn::GroupNorm> norm_;
  std::unique_ptr<nn::Linear> q_, k_, v_, out_;
  int heads_;
  std::int64_t channels_;
  // p [F, C] for the most frames seen, kept so a step does not rebuild it on the host and
  // upload it in every block call (a call with fewer frames slices its first rows); rebuilt
  // when F grows or the dtype or device changes. A constant: no grad.
  mutable Tensor position_;
  Tensor relative_bias_;  // B [2R+1, heads] (relative positions only; else undefined)
};

}  // namespace ddpm::unet
