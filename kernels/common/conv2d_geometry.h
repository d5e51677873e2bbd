// kernels/common/conv2d_geometry.h: the sizes of one 2-D convolution, shared by the CPU
// reference (kernels/cpu/conv2d.h) and the cuDNN path (kernels/cuda/conv2d.h).
//
// Layouts (all contiguous, row-major):
//   x      [n, h, w, cin]       NHWC input
//   weight [cout, kh, kw, cin]  KRSC, the filter layout cuDNN uses with NHWC tensors
//   bias   [cout]
//   y      [n, ho, wo, cout]    NHWC output
// Output size (cross-correlation, zero padding `pad` on every side):
//   ho = (h + 2 pad - kh) / stride + 1,   wo = (w + 2 pad - kw) / stride + 1
#pragma once

#include <cstdint>

namespace ddpm {

struct Conv2dGeometry {
  std::int64_t n = 0, h = 0, w = 0, cin = 0;  // input
  std::int64_t cout = 0, kh = 0, kw = 0;      // filter
  std::int64_t stride = 1, pad = 0;
  std::int64_t ho = 0, wo = 0;  // output

  // Columns of the im2col matrix: one patch = kh*kw*cin values, ordered like a filter row.
  std::int64_t patch_size() const { return kh * kw * cin; }
  std::int64_t out_pixels() const { return ho * wo; }
  // A 1x1 convolution with stride 1 and no padding: the patches are x itself.
  bool is_pointwise() const { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }
};

// Fills ho and wo from the other fields. The caller has checked kh <= h + 2 pad,
// kw <= w + 2 pad and stride >= 1.
inline Conv2dGeometry make_conv2d_geometry(std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t cin,
                                           std::int64_t cout, std::int64_t kh, std::int64_t kw, std::int64_t stride,
                                           std::int64_t pad) {
  Conv2dGeometry g;
  g.n = n, g.h = h, g.w = w, g.cin = cin;
  g.cout = cout, g.kh = kh, g.kw = kw;
  g.stride = stride, g.pad = pad;
  g.ho = (h + 2 * pad - kh) / stride + 1;
  g.wo = (w + 2 * pad - kw) / stride + 1;
  return g;
}

}  // namespace ddpm
