// kernels/cpu/embedding.cpp: the loops of kernels/cpu/embedding.h.
#include "kernels/cpu/embedding.h"

#include <cmath>

namespace ddpm::cpu {

template <class T>
void timestep_embedding(const T* t, T* out, std::int64_t N, std::int64_t dim, double log_max_period,
                        std::int64_t freq_denominator, bool sin_first) {
  std::int64_t half = dim / 2;
  for (std::int64_t n = 0; n < N; ++n) {
    T* row = out + n * dim;
    for (std::int64_t i = 0; i < half; ++i) {
      double freq = std::exp(-log_max_period * static_cast<double>(i) / static_cast<double>(freq_denominator));
      double arg = static_cast<double>(t[n]) * freq;
      double s = std::sin(arg), c = std::cos(arg);
      row[i] = static_cast<T>(sin_first ? s : c);
      row[half + i] = static_cast<T>(sin_first ? c : s);
    }
    if (dim % 2 == 1) row[dim - 1] = T(0);
  }
}

template <class T>
void embedding_forward(const T* table, const std::int64_t* ids, T* out, std::int64_t n, std::int64_t dim) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T* src = table + ids[i] * dim;
    for (std::int64_t d = 0; d < dim; ++d) out[i * dim + d] = src[d];
  }
}

template <class T>
void embedding_backward(const T* g, const std::int64_t* ids, T* gtable, std::int64_t n, std::int64_t num_classes,
                        std::int64_t dim) {
  for (std::int64_t k = 0; k < num_classes * dim; ++k) gtable[k] = T(0);
  for (std::int64_t i = 0; i < n; ++i) {
    T* dst = gtable + ids[i] * dim;
    for (std::int64_t d = 0; d < dim; ++d) dst[d] += g[i * dim + d];
  }
}

#define DDPM_INSTANTIATE(T)                                                                                        \
  template void timestep_embedding<T>(const T*, T*, std::int64_t, std::int64_t, double, std::int64_t, bool);       \
  template void embedding_forward<T>(const T*, const std::int64_t*, T*, std::int64_t, std::int64_t);               \
  template void embedding_backward<T>(const T*, const std::int64_t*, T*, std::int64_t, std::int64_t, std::int64_t);
DDPM_INSTANTIATE(float)
DDPM_INSTANTIATE(double)
#undef DDPM_INSTANTIATE

}  // namespace ddpm::cpu
