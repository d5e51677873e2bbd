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
//
// Fused epilogue (optional, both default to none): two more addends of the output, done in
// the same pass over it as the bias instead of as separate adds (a full read and write each):
//   sample_bias [N, Cout]          out[n, oy, ox, co] += sample_bias[n, co]   (broadcast over pixels)
//   residual    [N, Ho, Wo, Cout]  out[n, oy, ox, co] += residual[n, oy, ox, co]
// The sum is formed as ((conv + bias) + sample_bias) + residual, the order of the separate
// adds it replaces, so conv2d(x, W, b, s, p, e, r) equals add(add(conv2d(x, W, b, s, p),
// e.reshape({N, 1, 1, Cout})), r) bit for bit. Gradients:
//   dL/dsample_bias[n, co] = sum_{oy, ox} g[n, oy, ox, co]
//   dL/dresidual           = g   (handed on as is, no copy)
//   dL/db[co]              = sum_n dL/dsample_bias[n, co] when both are wanted (a small
//                            [N, Cout] reduction instead of a second pass over g)
// The UNet's ResnetBlock passes its timestep-embedding projection as conv1's sample_bias
// and its skip connection as conv2's residual.
// The UNet uses 3x3 padding 1 (same size), 1x1 (skip projections) and 3x3 stride 2
// padding 1 (downsampling); any kernel size, stride >= 1 and padding >= 0 work.
// CPU: im2col + GEMM in f32 or f64 (kernels/cpu/conv2d.h). CUDA: cuDNN in f32 (kernels/cuda/conv2d.h).
#pragma once

#include "engine/tensor.h"

namespace ddpm {

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride = 1, int padding = 0,
              const Tensor& sample_bias = Tensor(), const Tensor& residual = Tensor());

}  // namespace ddpm
