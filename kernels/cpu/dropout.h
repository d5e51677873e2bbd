// kernels/cpu/dropout.h: inverted dropout with a mask drawn from the Philox uniform stream.
//
//   u_i = philox::uniform_at(seed, offset + i)        (kernels/common/philox.h)
//   y_i = (u_i < p) ? 0 : x_i * scale,   scale = 1 / (1 - p)
// Element i is kept with probability 1 - p (u is uniform on the grid k * 2^-24). The same
// function is the backward (x = incoming gradient, same seed and offset), since
// dy_i/dx_i = mask_i * scale. The CUDA kernel computes the same u and the same single
// float multiply, so for fp32 both devices give identical bits.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

template <class T>
void dropout_apply(const T* x, T* y, std::int64_t n, std::uint64_t seed, std::uint64_t offset, double p, T scale);

}  // namespace ddpm::cpu
