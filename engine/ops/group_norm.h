// engine/ops/group_norm.h: GroupNorm, optionally with the AdaGN scale-shift and a fused SiLU,
// as one tape node with a hand-written backward.
//
// x is [N, H, W, C] (NHWC) or [N, S, C] (tokens); the C channels are split into num_groups
// groups of C / num_groups consecutive channels, and each (sample, group) is normalized over
// all its pixels and channels (Wu & He 2018, PyTorch GroupNorm semantics: biased variance,
// eps inside the square root):
//   y = act( ((x - mu) * rstd * gamma + beta) * (1 + scale[n]) + shift[n] )
// with gamma, beta [C]; scale, shift [N, C] (both or neither: AdaGN, the scale-shift norm of
// improved/guided diffusion); act = SiLU when fuse_silu, identity otherwise.
// The forward saves mean and rstd [N, G]; the backward recomputes the normalized values
// from x and gives gradients for x, gamma, beta, scale and shift (kernels/cpu/group_norm.h
// has the equations).
#pragma once

#include "engine/tensor.h"

namespace ddpm {

Tensor group_norm(const Tensor& x, int num_groups, const Tensor& gamma, const Tensor& beta, double eps = 1e-5,
                  bool fuse_silu = false, const Tensor& scale = Tensor(), const Tensor& shift = Tensor());

// group_norm followed by SiLU, the norm-then-activation of every UNet residual block.
inline Tensor group_norm_silu(const Tensor& x, int num_groups, const Tensor& gamma, const Tensor& beta,
                              double eps = 1e-5) {
  return group_norm(x, num_groups, gamma, beta, eps, true);
}

}  // namespace ddpm
