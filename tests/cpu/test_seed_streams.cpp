// tests/cpu/test_seed_streams.cpp: engine/seed_streams.h's splitmix64_stream against
// SplitMix64 run as the stateful generator of its reference (state += G, then mix), against
// published outputs, and against the formula each former call site wrote out by hand (kept
// here verbatim in meaning so a change of the derivation, which would silently change every
// recorded run's numbers, fails loudly).
#include <algorithm>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "engine/seed_streams.h"
#include "models/run/toy_run.h"

namespace ddpm {
namespace {

// SplitMix64 as a generator, written from the published constants: each call advances the
// state by the golden gamma and returns the finalised state.
class ReferenceSplitMix64 {
 public:
  explicit ReferenceSplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ull;
    std::uint64_t z = state_;
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z;
  }

 private:
  std::uint64_t state_;
};

// The finaliser alone, for the old call-site expressions below.
std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

const std::vector<std::uint64_t>& sweep_seeds() {
  static const std::vector<std::uint64_t> seeds = {0,
                                                   1,
                                                   2,
                                                   42,
                                                   1234,
                                                   0x5D,
                                                   0x9E3779B97F4A7C15ull,
                                                   0x7FFFFFFFFFFFFFFFull,
                                                   0x8000000000000000ull,
                                                   0xFFFFFFFFFFFFFFFFull,
                                                   0xDEADBEEFCAFEF00Dull,
                                                   0x0123456789ABCDEFull};
  return seeds;
}

TEST(SeedStreamsTest, MatchesTheReferenceGeneratorsOutputs) {
  for (std::uint64_t seed : sweep_seeds()) {
    ReferenceSplitMix64 g(seed);
    for (std::uint64_t stream = 0; stream < 100; ++stream)
      ASSERT_EQ(splitmix64_stream(seed, stream), g.next()) << "seed " << seed << ", stream " << stream;
  }
}

TEST(SeedStreamsTest, MatchesPublishedOutputs) {
  // The first outputs of SplitMix64 seeded with 0 and with 1234567, as published with the
  // reference implementation's users (e.g. the Rosetta Code SplitMix64 task).
  const std::uint64_t seed0[] = {0xE220A8397B1DCDAFull, 0x6E789E6AA1B965F4ull, 0x06C45D188009454Full};
  for (std::uint64_t k = 0; k < 3; ++k) EXPECT_EQ(splitmix64_stream(0, k), seed0[k]) << "stream " << k;
  const std::uint64_t seed1234567[] = {6457827717110365317ull, 3203168211198807973ull, 9817491932198370423ull,
                                       4593380528125082431ull, 16408922859458223821ull};
  for (std::uint64_t k = 0; k < 5; ++k) EXPECT_EQ(splitmix64_stream(1234567, k), seed1234567[k]) << "stream " << k;
}

TEST(SeedStreamsTest, IsAConstantExpression) {
  static_assert(splitmix64_stream(0, 0) == 0xE220A8397B1DCDAFull, "usable at compile time");
  SUCCEED();
}

TEST(SeedStreamsTest, StreamsOfNearbySeedsDoNotCollide) {
  // The point of the mixer: seed s stream k and seed s' stream k' differ for all small
  // (s, k) != (s', k') (a plain seed + k would collide at s + k = s' + k').
  std::vector<std::uint64_t> keys;
  for (std::uint64_t s = 0; s < 64; ++s)
    for (std::uint64_t k = 0; k < 64; ++k) keys.push_back(splitmix64_stream(s, k));
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(std::adjacent_find(keys.begin(), keys.end()), keys.end());
}

// Each former call site's own expression, against the call that replaced it.
TEST(SeedStreamsTest, ReproducesEveryFormerCallSite) {
  const std::uint64_t G = 0x9E3779B97F4A7C15ull;
  for (std::uint64_t seed : sweep_seeds()) {
    for (std::uint64_t stream = 0; stream < 8; ++stream) {
      // models/run/train_run.cpp derive_seed (and distill_run.cpp stream_seed): seed + G (stream + 1).
      EXPECT_EQ(splitmix64_stream(seed, stream), mix(seed + G * (stream + 1)));
      // models/run/classifier_run.cpp stream_seed, models/run/toy_pictures.cpp derived_seed:
      // seed + (stream + 1) G; derived_seed stays public (toy_run.h) and now forwards.
      EXPECT_EQ(splitmix64_stream(seed, stream), mix(seed + (stream + 1) * G));
      EXPECT_EQ(run::derived_seed(seed, stream), mix(seed + (stream + 1) * G));
    }
    // models/run/toy_run.cpp trainer_seed, models/run/autoencoder_run.cpp noise_seed: seed + G.
    EXPECT_EQ(splitmix64_stream(seed, 0), mix(seed + G));
    // models/train/trainer.cpp dropout_key(seed, rank): seed + G (rank + 0x5D), now stream
    // rank + 0x5C; negative ranks never occur but wrap identically mod 2^64.
    for (int rank : {0, 1, 2, 3, 7, 63, -1}) {
      const std::uint64_t old_key = mix(seed + G * (static_cast<std::uint64_t>(rank) + 0x5D));
      EXPECT_EQ(splitmix64_stream(seed, static_cast<std::uint64_t>(rank) + 0x5C), old_key) << "rank " << rank;
    }
  }
}

}  // namespace
}  // namespace ddpm
