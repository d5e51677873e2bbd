// kernels/cpu/random.h: fill buffers from the Philox streams (kernels/common/philox.h).
// out[i] is element (offset + i) of the stream for `seed`, identical to kernels/cuda/random.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

void philox_uniform(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset);
void philox_normal(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset);

}  // namespace ddpm::cpu
