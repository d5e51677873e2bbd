// engine/ops/transpose.h: swapping two axes of a tensor, materialised.
//
//   transpose(x, a0, a1)   y has x's shape with sizes a0 and a1 exchanged, and
//                          y[..., j, ..., i, ...] = x[..., i, ..., j, ...]
// Axes may be negative (counted from the end). Tensors are always contiguous here, so the
// result is a copy (unlike torch.transpose, which returns a strided view). The op is
// recorded on the tape; its backward is the same transpose of the gradient (a permutation
// matrix's transpose is its inverse). f32 and f64 on the CPU, f32 on CUDA.
//
// The video UNet uses it to move the frame axis next to the channels for temporal
// attention: [N, F, H*W, C] -> [N, H*W, F, C] (Ho et al. 2022, "Video Diffusion Models").
#pragma once

#include "engine/tensor.h"

namespace ddpm {

Tensor transpose(const Tensor& x, int axis0, int axis1);

}  // namespace ddpm
