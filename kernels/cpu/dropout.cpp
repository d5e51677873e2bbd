// kernels/cpu/dropout.cpp: the loop of kernels/cpu/dropout.h.
#include "kernels/cpu/dropout.h"

#include "kernels/cpu/random.h"

namespace ddpm::cpu {

template <class T>
void dropout_apply(const T* x, T* y, std::int64_t n, std::uint64_t seed, std::uint64_t offset, double p, T scale) {
  // The uniforms of elements offset + i, a Philox block per four elements (random.h).
  for_each_stream_element(
      n, offset, [seed](std::uint64_t b, float (&v)[4]) { philox::uniform_block(seed, b, v); },
      [&](std::int64_t i, float u) {
        // u is exact in float and in double, so comparing in double is exact on both devices.
        y[i] = static_cast<double>(u) < p ? T(0) : x[i] * scale;
      });
}

template void dropout_apply<float>(const float*, float*, std::int64_t, std::uint64_t, std::uint64_t, double, float);
template void dropout_apply<double>(const double*, double*, std::int64_t, std::uint64_t, std::uint64_t, double,
                                    double);

}  // namespace ddpm::cpu
