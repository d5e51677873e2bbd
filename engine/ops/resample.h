// engine/ops/resample.h: the UNet's 2x resampling of NHWC images.
//
//   upsample_nearest2x  [N, H, W, C] -> [N, 2H, 2W, C]   every pixel copied to a 2x2 block
//                       backward: each input pixel's gradient is the sum of its 2x2 block
//   avg_pool2x          [N, H, W, C] -> [N, H/2, W/2, C] the mean of each 2x2 block
//                       (H and W must be even); backward: g/4 to each pixel of the block
//
// These are the non-learned resamplers of the DDPM UNet (Upsample without conv, and the
// Downsample variant without conv); the convolutions around them live in the conv ops.
#pragma once

#include "engine/tensor.h"

namespace ddpm {

Tensor upsample_nearest2x(const Tensor& x);
Tensor avg_pool2x(const Tensor& x);

}  // namespace ddpm
