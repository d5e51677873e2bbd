// engine/seed_streams.h: independent generator seeds derived from one run seed.
//
// A run has several random streams (weight initialisation, data order, per-step draws,
// dropout per rank, ...), each a Philox Generator (engine/rng.h) of its own key. Philox
// with two different keys gives unrelated sequences, but keys that are simple functions of
// each other (seed, seed + 1, ...) invite trouble: a user's --seed 1 would share its
// "stream 1" key with --seed 2's stream 0, and two runs meant to be independent would
// replay each other's numbers. Deriving each key through a strong 64-bit mixer makes every
// (seed, stream) pair land on an unrelated key, so no two streams of any two seeds overlap
// except by a 2^-64 accident.
//
// The mixer is SplitMix64 (Steele, Lea, Flood 2014, "Fast Splittable Pseudorandom Number
// Generators", OOPSLA; the constants of Vigna's public reference splitmix64.c). Its state
// advances by the "golden gamma" G = 0x9E3779B97F4A7C15 (2^64 / phi, odd) and each output is
// the state passed through a finaliser (Stafford's "Mix13" variant of MurmurHash3's fmix64):
//   state_n = seed + n G                                      (mod 2^64)
//   z = (state_n ^ (state_n >> 30)) * 0xBF58476D1CE4E5B9
//   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//   out_n = z ^ (z >> 31)
// The finaliser is a bijection of 64-bit words, so distinct states give distinct outputs.
// Stream s of seed `seed` is output n = s + 1 of SplitMix64 seeded with `seed` (the first
// output is stream 0): the convention every run of this project has recorded seeds with, so
// it must not change (resumed runs re-derive their keys from the stored --seed).
#pragma once

#include <cstdint>

namespace ddpm {

// The Philox key of stream `stream` of run seed `seed`: output stream + 1 of SplitMix64
// started at state `seed` (the formula above, all arithmetic mod 2^64).
constexpr std::uint64_t splitmix64_stream(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace ddpm
