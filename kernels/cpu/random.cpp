#include "kernels/cpu/random.h"

#include "kernels/common/philox.h"

namespace ddpm::cpu {

void philox_uniform(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = philox::uniform_at(seed, offset + static_cast<std::uint64_t>(i));
}

void philox_normal(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = philox::normal_at(seed, offset + static_cast<std::uint64_t>(i));
}

}  // namespace ddpm::cpu
