// kernels/cpu/dropout.cpp: the loop of kernels/cpu/dropout.h.
#include "kernels/cpu/dropout.h"

#include "kernels/common/philox.h"

namespace ddpm::cpu {

template <class T>
void dropout_apply(const T* x, T* y, std::int64_t n, std::uint64_t seed, std::uint64_t offset, double p, T scale) {
  for (std::int64_t i = 0; i < n; ++i) {
    // u is exact in float and in double, so comparing in double is exact on both devices.
    double u = static_cast<double>(philox::uniform_at(seed, offset + static_cast<std::uint64_t>(i)));
    y[i] = u < p ? T(0) : x[i] * scale;
  }
}

template void dropout_apply<float>(const float*, float*, std::int64_t, std::uint64_t, std::uint64_t, double, float);
template void dropout_apply<double>(const double*, double*, std::int64_t, std::uint64_t, std::uint64_t, double,
                                    double);

}  // namespace ddpm::cpu
