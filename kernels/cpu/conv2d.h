// kernels/cpu/conv2d.h: the reference 2-D convolution (NHWC, KRSC filter) through
// im2col + GEMM (OpenBLAS). T is float or double. Plain pointers; no engine types.
//
// For one sample, im2col lays the receptive field of every output pixel out as a row:
//   cols [ho*wo, kh*kw*cin],  cols[(oy*wo + ox), (ky*kw + kx)*cin + c] = x[oy*s - p + ky, ox*s - p + kx, c]
// (zero where the tap falls in the padding). A patch row is ordered exactly like one
// filter row W[co, :, :, :], so with W viewed as a matrix [cout, kh*kw*cin]:
//   forward          y    = cols W^T + b          [ho*wo, cout]
//   filter gradient  gW  += gy^T cols             [cout, kh*kw*cin], summed over samples
//   data gradient    gcols = gy W                 [ho*wo, kh*kw*cin], then col2im
//   bias gradient    gb   = sum over n, oy, ox of gy
// The fused epilogue (engine/ops/conv.h) adds per-sample biases and a residual after the
// GEMM, and its backward reduces gy per sample:
//   epilogue         y[n, p, c] = ((y[n, p, c] + bias[c]) + sample_bias[n, c]) + residual[n, p, c]
//   sample-bias grad gsb[n, c]  = sum over p of gy[n, p, c];   gb[c] = sum over n of gsb[n, c]
// (p = oy*wo + ox). The additions run in exactly that order, which is also the order of the
// separate adds they replace, so fused and unfused results agree bit for bit.
// col2im is the adjoint of im2col: every column entry is added back onto the input pixel
// it was copied from (pixels shared by overlapping windows receive several terms).
// Outputs are overwritten (not accumulated). Sizes are in kernels/common/conv2d_geometry.h.
#pragma once

#include "kernels/common/conv2d_geometry.h"

namespace ddpm::cpu {

// x: one sample [h, w, cin]; cols: [ho*wo, kh*kw*cin].
template <class T>
void im2col(const T* x, T* cols, const Conv2dGeometry& g);
// cols: [ho*wo, kh*kw*cin]; x: one sample [h, w, cin], overwritten with the scatter-add.
template <class T>
void col2im(const T* cols, T* x, const Conv2dGeometry& g);

// y = conv(x, w) + bias [+ sample_bias] [+ residual]; bias [cout], sample_bias [n, cout]
// and residual [n, ho, wo, cout] may each be nullptr (none).
template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g,
                    const T* sample_bias = nullptr, const T* residual = nullptr);
// gx = dL/dx from gy = dL/dy.
template <class T>
void conv2d_backward_data(const T* gy, const T* w, T* gx, const Conv2dGeometry& g);
// gw = dL/dW, summed over the batch.
template <class T>
void conv2d_backward_filter(const T* x, const T* gy, T* gw, const Conv2dGeometry& g);
// gb[co] = sum over n, oy, ox of gy[n, oy, ox, co].
template <class T>
void conv2d_backward_bias(const T* gy, T* gb, const Conv2dGeometry& g);

// y [n, pixels, c] in place: y = ((y + bias[c]) + sample_bias[n, c]) + residual[n, pixels, c];
// each of bias [c], sample_bias [n, c] and residual [n, pixels, c] may be nullptr (skipped).
// The reference of kernels/cuda/conv_epilogue.h.
template <class T>
void conv2d_epilogue(T* y, const T* bias, const T* sample_bias, const T* residual, std::int64_t n,
                     std::int64_t pixels, std::int64_t c);
// gsb [n, c] = sum over pixels of gy [n, pixels, c]; when gb is not nullptr also
// gb [c] = sum over n of gsb[n, c] (the bias gradient, from the small [n, c] array).
template <class T>
void conv2d_backward_sample_bias(const T* gy, T* gsb, T* gb, std::int64_t n, std::int64_t pixels, std::int64_t c);

}  // namespace ddpm::cpu
