// kernels/cpu/random.h: fill buffers from the Philox streams (kernels/common/philox.h).
// out[i] is element (offset + i) of the stream for `seed`, identical to kernels/cuda/random.
#pragma once

#include <cstdint>

#include "kernels/common/philox.h"

namespace ddpm::cpu {

void philox_uniform(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset);
void philox_normal(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset);

// Walks elements offset .. offset + n - 1 of a stream in order, a counter block at a time:
// block(b, v) fills v with elements 4b .. 4b+3 (philox::uniform_block or normal_block), and
// f(i, value) receives element offset + i. One Philox evaluation per four elements, the same
// values as the *_at functions give one at a time.
template <class Block, class F>
void for_each_stream_element(std::int64_t n, std::uint64_t offset, Block&& block, F&& f) {
  const std::uint64_t end = offset + static_cast<std::uint64_t>(n);
  for (std::uint64_t g = offset; g < end;) {
    float v[4];
    block(g >> 2, v);
    for (std::uint64_t w = g & 3; w < 4 && g < end; ++w, ++g) f(static_cast<std::int64_t>(g - offset), v[w]);
  }
}

}  // namespace ddpm::cpu
