// kernels/cpu/random.cpp: the Philox stream fills of random.h, a counter block (four
// elements) at a time.
#include "kernels/cpu/random.h"

namespace ddpm::cpu {

void philox_uniform(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset) {
  for_each_stream_element(
      n, offset, [seed](std::uint64_t b, float (&v)[4]) { philox::uniform_block(seed, b, v); },
      [out](std::int64_t i, float u) { out[i] = u; });
}

void philox_normal(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset) {
  for_each_stream_element(
      n, offset, [seed](std::uint64_t b, float (&v)[4]) { philox::normal_block(seed, b, v); },
      [out](std::int64_t i, float z) { out[i] = z; });
}

}  // namespace ddpm::cpu
