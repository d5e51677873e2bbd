// kernels/cpu/transpose.cpp: the loop of kernels/cpu/transpose.h. The output is written in
// order; each innermost run of `inner` elements is one contiguous copy.
#include "kernels/cpu/transpose.h"

namespace ddpm::cpu {

template <class T>
void transpose_axes(const T* x, T* y, std::int64_t outer, std::int64_t d0, std::int64_t mid, std::int64_t d1,
                    std::int64_t inner) {
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t j = 0; j < d1; ++j)
      for (std::int64_t m = 0; m < mid; ++m)
        for (std::int64_t i = 0; i < d0; ++i) {
          const T* src = x + (((o * d0 + i) * mid + m) * d1 + j) * inner;  // x[o, i, m, j, :]
          T* dst = y + (((o * d1 + j) * mid + m) * d0 + i) * inner;        // y[o, j, m, i, :]
          for (std::int64_t r = 0; r < inner; ++r) dst[r] = src[r];
        }
}

template void transpose_axes<float>(const float*, float*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                                    std::int64_t);
template void transpose_axes<double>(const double*, double*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                                     std::int64_t);

}  // namespace ddpm::cpu
