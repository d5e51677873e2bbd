// Philox on CUDA gives the same bits as on the CPU for the same (seed, offset).
#include <cstring>

#include <gtest/gtest.h>

#include "engine/rng.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

void expect_bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  std::size_t mismatches = 0, first = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && mismatches++ == 0) first = i;
  EXPECT_EQ(mismatches, 0u) << "first mismatch at " << first << ": " << a[first] << " vs " << b[first];
}

TEST(PhiloxGpu, UniformAndNormalAreBitIdenticalToTheCpu) {
  DDPM_REQUIRE_CUDA();
  for (std::uint64_t seed : {0ull, 1ull, 0xdeadbeefcafef00dull}) {
    for (std::uint64_t offset : {0ull, 4ull, 1ull << 33}) {
      Generator gc(seed, offset), gg(seed, offset);
      expect_bit_equal(randn({1 << 20}, gc).to_vector(), randn({1 << 20}, gg, Device::cuda()).to_vector());
      expect_bit_equal(rand({12345}, gc).to_vector(), rand({12345}, gg, Device::cuda()).to_vector());
      EXPECT_EQ(gc.offset(), gg.offset());
    }
  }
}

}  // namespace
}  // namespace ddpm
