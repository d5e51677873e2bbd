// Philox4x32-10 against the published known-answer vectors, and the statistics and
// accuracy of the uniform and normal transforms.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/rng.h"
#include "kernels/common/philox.h"

namespace ddpm {
namespace {

// Known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds).
TEST(Philox, KnownAnswerVectors) {
  struct Kat {
    std::uint32_t ctr[4], key[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
       {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& k : kats) {
    philox::U32x4 r = philox::philox4x32_10(k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], k.out[i]) << "word " << i;
  }
}

TEST(Philox, ExactLogAndSinCosMatchTheMathLibrary) {
  for (double u = 1.0 / 2097152.0; u <= 1.0; u *= 1.37)
    EXPECT_NEAR(philox::log_exact(u), std::log(u), 1e-14 * std::max(1.0, std::fabs(std::log(u)))) << u;
  EXPECT_EQ(philox::log_exact(1.0), 0.0);
  for (int i = 0; i < 4096; ++i) {
    double v = i / 4096.0, s, c;
    philox::sincos_2pi_exact(v, s, c);
    EXPECT_NEAR(s, std::sin(2 * M_PI * v), 1e-15) << v;
    EXPECT_NEAR(c, std::cos(2 * M_PI * v), 1e-15) << v;
  }
}

TEST(Philox, UniformIsInRangeWithTheRightMoments) {
  Generator gen(123);
  std::vector<float> u = rand({1 << 20}, gen).to_vector();
  double mean = 0, m2 = 0;
  for (float x : u) {
    ASSERT_GE(x, 0.f);
    ASSERT_LT(x, 1.f);
    mean += x;
    m2 += x * x;
  }
  mean /= u.size();
  double var = m2 / u.size() - mean * mean;
  EXPECT_NEAR(mean, 0.5, 1e-3);         // sd of the mean: 0.29/1024
  EXPECT_NEAR(var, 1.0 / 12.0, 5e-4);
}

TEST(Philox, NormalHasStandardMomentsAndTails) {
  Generator gen(7);
  std::vector<float> z = randn({1 << 20}, gen).to_vector();
  double mean = 0, m2 = 0, m4 = 0;
  int beyond3 = 0;
  for (float x : z) {
    ASSERT_TRUE(std::isfinite(x));
    mean += x;
    m2 += double(x) * x;
    m4 += double(x) * x * x * x;
    beyond3 += std::fabs(x) > 3;
  }
  double n = z.size();
  mean /= n;
  EXPECT_NEAR(mean, 0.0, 5e-3);       // sd of the mean: 1/1024
  EXPECT_NEAR(m2 / n, 1.0, 5e-3);
  EXPECT_NEAR(m4 / n, 3.0, 3e-2);     // kurtosis of a Gaussian
  EXPECT_NEAR(beyond3 / n, 0.0026998, 3e-4);  // P(|Z| > 3)
}

TEST(Philox, StreamsAreAddressedByOffsetAndDrawsDoNotOverlap) {
  Generator a(42);
  std::vector<float> first = randn({10}, a).to_vector();   // elements 0..9, offset -> 12
  EXPECT_EQ(a.offset(), 12u);
  std::vector<float> second = randn({5}, a).to_vector();   // elements 12..16
  Generator b(42);
  std::vector<float> all = randn({17}, b).to_vector();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(first[i], all[i]);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(second[i], all[12 + i]);
  // Restoring (seed, offset) replays the same numbers.
  Generator c(42, 12);
  EXPECT_EQ(randn({5}, c).to_vector(), second);
  // A different seed gives different numbers.
  Generator d(43);
  EXPECT_NE(randn({10}, d).to_vector(), first);
}

}  // namespace
}  // namespace ddpm
