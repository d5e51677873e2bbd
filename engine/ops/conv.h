// engine/ops/conv.h: 2-D convolution with autograd (NHWC images, KRSC filters).
//
//   x      [N, H, W, Cin]
//   weight [Cout, kh, kw, Cin]   the layout cuDNN uses with NHWC tensors; the checkpoint
//                                writer converts it to PyTorch's [Cout, Cin, kh, kw]
//   bias   [Cout], or an undefined Tensor() for none
//   out    [N, Ho, Wo, Cout],  Ho = (H + 2 padding - kh) / stride + 1 (same for Wo)
//
// Cross-correlation as in every deep-learning library (no filter flip):
//   out[n, oy, ox, co] = bias[co] + sum_{ky, kx, ci} x[n, oy*s - p + ky, ox*s - p + kx, ci] W[co, ky, kx, ci]
// with x = 0 outside the image. Gradients, with g = dL/dout:
//   dL/dW[co, ky, kx, ci] = sum_{n, oy, ox} g[n, oy, ox, co] x[n, oy*s - p + ky, ox*s - p + kx, ci]
//   dL/dx[n, iy, ix, ci]  = sum over the (oy, ox, ky, kx) with oy*s - p + ky = iy, ox*s - p + kx = ix
//                           of g[n, oy, ox, co] W[co, ky, kx, ci]
//   dL/db[co]             = sum_{n, oy, ox} g[n, oy, ox, co]
// The UNet uses 3x3 padding 1 (same size), 1x1 (skip projections) and 3x3 stride 2
// padding 1 (downsampling); any kernel size, stride >= 1 and padding >= 0 work.
// CPU: im2col + GEMM in f32 or f64 (kernels/cpu/conv2d.h). CUDA: cuDNN in f32 (kernels/cuda/conv2d.h).
#pragma once

#include "engine/tensor.h"

namespace ddpm {

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride = 1, int padding = 0);

}  // namespace ddpm
