// engine/rng.h: the generator. State is (seed, offset): each draw of n numbers reads
// elements [offset, offset + n) of the Philox stream and advances offset by n rounded up
// to a multiple of 4 (one Philox block), so draws never share a block. The same seed gives
// the same numbers on the CPU and on CUDA; saving and restoring (seed, offset) resumes a
// run exactly.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace ddpm {

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0, std::uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  std::uint64_t seed() const { return seed_; }
  std::uint64_t offset() const { return offset_; }
  void set_state(std::uint64_t seed, std::uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves n elements of the stream; returns the offset of the first.
  std::uint64_t advance(std::uint64_t n) {
    std::uint64_t start = offset_;
    offset_ += (n + 3) / 4 * 4;
    return start;
  }

 private:
  std::uint64_t seed_;
  std::uint64_t offset_;
};

// Standard normal N(0, 1) and uniform [0, 1) tensors (f32, or f64 on the CPU: the f32
// values widened). Not recorded on the tape.
Tensor randn(const Shape& shape, Generator& gen, Device device = Device::cpu(), DType dtype = DType::f32);
Tensor rand(const Shape& shape, Generator& gen, Device device = Device::cpu(), DType dtype = DType::f32);

}  // namespace ddpm
