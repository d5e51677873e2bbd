// engine/ops/dropout.h: inverted dropout (Srivastava et al. 2014, scaled at training time
// so evaluation is the identity), as in the UNet's residual blocks.
//
//   training and p > 0:  y = x * mask / (1 - p),  mask_i = [u_i >= p],  P(mask_i = 1) = 1 - p
//   otherwise:           y = x (the same tensor; the generator is not advanced)
//   backward:            dL/dx = g * mask / (1 - p), with the same mask
//
// u_i is element (offset + i) of the Philox uniform stream of `gen`, with offset =
// gen.advance(numel): CPU and CUDA drop the same elements for the same generator state,
// and a run resumed from a saved (seed, offset) drops the same elements again.
// p must be in [0, 1); p = 1 would drop everything and divide by zero.
#pragma once

#include "engine/rng.h"
#include "engine/tensor.h"

namespace ddpm {

Tensor dropout(const Tensor& x, double p, Generator& gen, bool training);

}  // namespace ddpm
