// kernels/cpu/conv2d.cpp: im2col, col2im and the three GEMMs of a convolution (see
// conv2d.h for the equations). One sample at a time, so the column buffer stays at
// ho*wo*kh*kw*cin values whatever the batch size.
#include "kernels/cpu/conv2d.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

namespace ddpm::cpu {

namespace {

// Row-major C[m, n] = alpha op(A) op(B) + beta C, op(A) [m, k], op(B) [k, n].
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
          std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const double* a,
          std::int64_t lda, const double* b, std::int64_t ldb, double beta, double* c, std::int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

// Visits every (output pixel, filter tap): f(patch_entry, input_pixel) where patch_entry
// is the offset of the tap's cin values in cols and input_pixel the offset of the input
// pixel's cin values in one sample, or -1 when the tap falls in the zero padding.
template <class F>
void for_each_tap(const Conv2dGeometry& g, F&& f) {
  const std::int64_t k = g.patch_size();
  for (std::int64_t oy = 0; oy < g.ho; ++oy)
    for (std::int64_t ox = 0; ox < g.wo; ++ox) {
      const std::int64_t row = (oy * g.wo + ox) * k;
      for (std::int64_t ky = 0; ky < g.kh; ++ky) {
        const std::int64_t iy = oy * g.stride - g.pad + ky;
        for (std::int64_t kx = 0; kx < g.kw; ++kx) {
          const std::int64_t ix = ox * g.stride - g.pad + kx;
          const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
          f(row + (ky * g.kw + kx) * g.cin, inside ? (iy * g.w + ix) * g.cin : -1);
        }
      }
    }
}

}  // namespace

template <class T>
void im2col(const T* x, T* cols, const Conv2dGeometry& g) {
  for_each_tap(g, [&](std::int64_t entry, std::int64_t pixel) {
    if (pixel < 0)
      std::fill(cols + entry, cols + entry + g.cin, T(0));
    else
      std::copy(x + pixel, x + pixel + g.cin, cols + entry);
  });
}

template <class T>
void col2im(const T* cols, T* x, const Conv2dGeometry& g) {
  std::fill(x, x + g.h * g.w * g.cin, T(0));
  for_each_tap(g, [&](std::int64_t entry, std::int64_t pixel) {
    if (pixel < 0) return;
    for (std::int64_t c = 0; c < g.cin; ++c) x[pixel + c] += cols[entry + c];
  });
}

template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g, const T* sample_bias,
                    const T* residual) {
  const std::int64_t k = g.patch_size(), p = g.out_pixels();
  std::vector<T> cols(g.is_pointwise() ? 0 : static_cast<std::size_t>(p * k));
  for (std::int64_t n = 0; n < g.n; ++n) {
    const T* xn = x + n * g.h * g.w * g.cin;
    T* yn = y + n * p * g.cout;  // [ho*wo, cout]
    const T* a = xn;             // a 1x1 convolution's patches are the pixels themselves
    if (!g.is_pointwise()) {
      im2col(xn, cols.data(), g);
      a = cols.data();
    }
    if (bias)
      for (std::int64_t i = 0; i < p; ++i) std::copy(bias, bias + g.cout, yn + i * g.cout);
    // y_n [p, cout] = cols [p, k] W^T [k, cout] (+ the bias rows already in y_n)
    gemm(false, true, p, g.cout, k, T(1), a, k, w, k, bias ? T(1) : T(0), yn, g.cout);
  }
  // The bias went in with the GEMM (as before the epilogue existed); the rest is added after.
  if (sample_bias || residual) conv2d_epilogue<T>(y, nullptr, sample_bias, residual, g.n, p, g.cout);
}

template <class T>
void conv2d_backward_data(const T* gy, const T* w, T* gx, const Conv2dGeometry& g) {
  const std::int64_t k = g.patch_size(), p = g.out_pixels();
  std::vector<T> gcols(g.is_pointwise() ? 0 : static_cast<std::size_t>(p * k));
  for (std::int64_t n = 0; n < g.n; ++n) {
    const T* gyn = gy + n * p * g.cout;
    T* gxn = gx + n * g.h * g.w * g.cin;
    // gcols [p, k] = gy_n [p, cout] W [cout, k]; for a 1x1 convolution gcols is gx_n.
    T* c = g.is_pointwise() ? gxn : gcols.data();
    gemm(false, false, p, k, g.cout, T(1), gyn, g.cout, w, k, T(0), c, k);
    if (!g.is_pointwise()) col2im(gcols.data(), gxn, g);
  }
}

template <class T>
void conv2d_backward_filter(const T* x, const T* gy, T* gw, const Conv2dGeometry& g) {
  const std::int64_t k = g.patch_size(), p = g.out_pixels();
  std::vector<T> cols(g.is_pointwise() ? 0 : static_cast<std::size_t>(p * k));
  for (std::int64_t n = 0; n < g.n; ++n) {
    const T* xn = x + n * g.h * g.w * g.cin;
    const T* a = xn;
    if (!g.is_pointwise()) {
      im2col(xn, cols.data(), g);
      a = cols.data();
    }
    // gW [cout, k] (+)= gy_n^T [cout, p] cols [p, k]; the first sample overwrites.
    gemm(true, false, g.cout, k, p, T(1), gy + n * p * g.cout, g.cout, a, k, n == 0 ? T(0) : T(1), gw, k);
  }
  if (g.n == 0) std::fill(gw, gw + g.cout * k, T(0));
}

template <class T>
void conv2d_backward_bias(const T* gy, T* gb, const Conv2dGeometry& g) {
  std::fill(gb, gb + g.cout, T(0));
  const std::int64_t rows = g.n * g.out_pixels();
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t co = 0; co < g.cout; ++co) gb[co] += gy[r * g.cout + co];
}

template <class T>
void conv2d_epilogue(T* y, const T* bias, const T* sample_bias, const T* residual, std::int64_t n,
                     std::int64_t pixels, std::int64_t c) {
  for (std::int64_t s = 0; s < n; ++s)
    for (std::int64_t p = 0; p < pixels; ++p) {
      const std::int64_t row = (s * pixels + p) * c;
      for (std::int64_t ch = 0; ch < c; ++ch) {
        T v = y[row + ch];
        if (bias) v += bias[ch];
        if (sample_bias) v += sample_bias[s * c + ch];
        if (residual) v += residual[row + ch];
        y[row + ch] = v;
      }
    }
}

template <class T>
void conv2d_backward_sample_bias(const T* gy, T* gsb, T* gb, std::int64_t n, std::int64_t pixels, std::int64_t c) {
  for (std::int64_t s = 0; s < n; ++s) {
    T* out = gsb + s * c;
    std::fill(out, out + c, T(0));
    for (std::int64_t p = 0; p < pixels; ++p)
      for (std::int64_t ch = 0; ch < c; ++ch) out[ch] += gy[(s * pixels + p) * c + ch];
  }
  if (!gb) return;
  std::fill(gb, gb + c, T(0));
  for (std::int64_t s = 0; s < n; ++s)
    for (std::int64_t ch = 0; ch < c; ++ch) gb[ch] += gsb[s * c + ch];
}

#define DDPM_INSTANTIATE_CONV2D(T)                                                              \
  template void im2col<T>(const T*, T*, const Conv2dGeometry&);                                 \
  template void col2im<T>(const T*, T*, const Conv2dGeometry&);                                 \
  template void conv2d_forward<T>(const T*, const T*, const T*, T*, const Conv2dGeometry&, const T*, const T*); \
  template void conv2d_backward_data<T>(const T*, const T*, T*, const Conv2dGeometry&);         \
  template void conv2d_backward_filter<T>(const T*, const T*, T*, const Conv2dGeometry&);       \
  template void conv2d_backward_bias<T>(const T*, T*, const Conv2dGeometry&);                   \
  template void conv2d_epilogue<T>(T*, const T*, const T*, const T*, std::int64_t, std::int64_t, std::int64_t); \
  template void conv2d_backward_sample_bias<T>(const T*, T*, T*, std::int64_t, std::int64_t, std::int64_t);
DDPM_INSTANTIATE_CONV2D(float)
DDPM_INSTANTIATE_CONV2D(double)
#undef DDPM_INSTANTIATE_CONV2D

}  // namespace ddpm::cpu
