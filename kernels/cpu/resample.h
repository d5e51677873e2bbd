// kernels/cpu/resample.h: reference loops for the UNet's 2x resampling, NHWC.
//
// Sizes (N, H, W, C) are always those of the LOW-resolution side:
//   upsample_nearest2x: x [N, H, W, C] -> y [N, 2H, 2W, C],  y[n, 2h+a, 2w+b, c] = x[n, h, w, c]
//     backward: gx[n, h, w, c] = sum over a, b in {0, 1} of g[n, 2h+a, 2w+b, c]
//   avg_pool2x: x [N, 2H, 2W, C] -> y [N, H, W, C],  y[n, h, w, c] = 1/4 sum_{a,b} x[n, 2h+a, 2w+b, c]
//     backward: gx[n, 2h+a, 2w+b, c] = g[n, h, w, c] / 4
// T is float or double. Plain pointers; no engine types.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

template <class T>
void upsample_nearest2x_forward(const T* x, T* y, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C);
template <class T>
void upsample_nearest2x_backward(const T* g, T* gx, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C);

template <class T>
void avg_pool2x_forward(const T* x, T* y, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C);
template <class T>
void avg_pool2x_backward(const T* g, T* gx, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C);

}  // namespace ddpm::cpu
