// kernels/cpu/resample.cpp: the loops of kernels/cpu/resample.h. (N, H, W, C) are the
// low-resolution sizes; the high-resolution image is [N, 2H, 2W, C].
#include "kernels/cpu/resample.h"

namespace ddpm::cpu {

namespace {

// Offset of pixel (n, h, w) of an image with `height` x `width` pixels of C channels.
inline std::int64_t pixel(std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t height, std::int64_t width,
                          std::int64_t C) {
  return ((n * height + h) * width + w) * C;
}

}  // namespace

template <class T>
void upsample_nearest2x_forward(const T* x, T* y, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C) {
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t h = 0; h < 2 * H; ++h)
      for (std::int64_t w = 0; w < 2 * W; ++w) {
        const T* src = x + pixel(n, h / 2, w / 2, H, W, C);
        T* dst = y + pixel(n, h, w, 2 * H, 2 * W, C);
        for (std::int64_t c = 0; c < C; ++c) dst[c] = src[c];
      }
}

template <class T>
void upsample_nearest2x_backward(const T* g, T* gx, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C) {
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t w = 0; w < W; ++w) {
        const T* g00 = g + pixel(n, 2 * h, 2 * w, 2 * H, 2 * W, C);
        const T* g01 = g00 + C;
        const T* g10 = g + pixel(n, 2 * h + 1, 2 * w, 2 * H, 2 * W, C);
        const T* g11 = g10 + C;
        T* dst = gx + pixel(n, h, w, H, W, C);
        // Summed in the order (0,0), (0,1), (1,0), (1,1); the CUDA kernel uses the same.
        for (std::int64_t c = 0; c < C; ++c) dst[c] = ((g00[c] + g01[c]) + g10[c]) + g11[c];
      }
}

template <class T>
void avg_pool2x_forward(const T* x, T* y, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C) {
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t w = 0; w < W; ++w) {
        const T* x00 = x + pixel(n, 2 * h, 2 * w, 2 * H, 2 * W, C);
        const T* x01 = x00 + C;
        const T* x10 = x + pixel(n, 2 * h + 1, 2 * w, 2 * H, 2 * W, C);
        const T* x11 = x10 + C;
        T* dst = y + pixel(n, h, w, H, W, C);
        for (std::int64_t c = 0; c < C; ++c) dst[c] = (((x00[c] + x01[c]) + x10[c]) + x11[c]) * T(0.25);
      }
}

template <class T>
void avg_pool2x_backward(const T* g, T* gx, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C) {
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t h = 0; h < 2 * H; ++h)
      for (std::int64_t w = 0; w < 2 * W; ++w) {
        const T* src = g + pixel(n, h / 2, w / 2, H, W, C);
        T* dst = gx + pixel(n, h, w, 2 * H, 2 * W, C);
        for (std::int64_t c = 0; c < C; ++c) dst[c] = src[c] * T(0.25);
      }
}

#define DDPM_INSTANTIATE(T)                                                                                     \
  template void upsample_nearest2x_forward<T>(const T*, T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t); \
  template void upsample_nearest2x_backward<T>(const T*, T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t); \
  template void avg_pool2x_forward<T>(const T*, T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t);         \
  template void avg_pool2x_backward<T>(const T*, T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t);
DDPM_INSTANTIATE(float)
DDPM_INSTANTIATE(double)
#undef DDPM_INSTANTIATE

}  // namespace ddpm::cpu
