// kernels/common/philox.h: Philox4x32-10 and the uniform / normal transforms, one
// definition for host and device.
//
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011)
// maps a 128-bit counter and a 64-bit key to 128 random bits with 10 rounds of
// multiply-xor-permute. Being counter-based, element i of a stream is computed directly
// from (seed, offset + i): no state to carry between threads, and resuming a run needs
// only (seed, offset).
//
// Bit equality between CPU and CUDA: integer Philox is exact on both. The transforms use
// only operations IEEE 754 rounds identically everywhere (+, -, *, /, sqrt in double, done
// with explicit round-to-nearest intrinsics on the device so nvcc cannot fuse them into
// FMAs) and our own log/sin/cos built from those, never the math library (whose last bit
// differs between glibc and CUDA). The double result is rounded once to float.
//
// Stream layout: element g of a stream uses counter block g / 4, word g % 4.
//   uniform(g) = (word >> 8) * 2^-24 in [0, 1)  (24 random bits: exact in float)
//   normal: elements come in pairs (2k, 2k+1) from Box-Muller over words (2k, 2k+1):
//     u1 = ((w0 >> 11) + 1) * 2^-21  in (0, 1]   (never 0, so log(u1) is finite)
//     u2 = (w1 >> 8) * 2^-24         in [0, 1)
//     z0 = sqrt(-2 ln u1) cos(2 pi u2),  z1 = sqrt(-2 ln u1) sin(2 pi u2)
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/hd.h"

namespace ddpm::philox {

struct U32x4 {
  std::uint32_t v[4];
};

DDPM_HD void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

// The full 128-bit counter (c0..c3) and 64-bit key (k0, k1): ten rounds of
//   (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))
// with the key bumped by the Weyl constants after every round.
DDPM_HD U32x4 philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                            std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key schedule (golden ratio, sqrt 3)
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c0, hi0, lo0);
    mulhilo(kM1, c2, hi1, lo1);
    std::uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}

// The engine's use: counter = (block_lo, block_hi, 0, 0), key = (seed_lo, seed_hi).
DDPM_HD U32x4 philox4x32_10(std::uint64_t block, std::uint64_t seed) {
  return philox4x32_10(static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), 0u, 0u,
                       static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

// --- IEEE-exact arithmetic helpers -------------------------------------------------
#if defined(__CUDA_ARCH__)
DDPM_HD double mul(double a, double b) { return __dmul_rn(a, b); }
DDPM_HD double add(double a, double b) { return __dadd_rn(a, b); }
DDPM_HD double sub(double a, double b) { return __dsub_rn(a, b); }
DDPM_HD double div(double a, double b) { return __ddiv_rn(a, b); }
DDPM_HD double sqrt_rn(double a) { return __dsqrt_rn(a); }
#else
// volatile keeps the compiler from contracting a*b+c into an FMA on the host.
DDPM_HD double mul(double a, double b) { volatile double r = a * b; return r; }
DDPM_HD double add(double a, double b) { volatile double r = a + b; return r; }
DDPM_HD double sub(double a, double b) { volatile double r = a - b; return r; }
DDPM_HD double div(double a, double b) { volatile double r = a / b; return r; }
DDPM_HD double sqrt_rn(double a) { return std::sqrt(a); }
#endif

// ln(u) for u in (0, 1]: u = m * 2^e with m in [sqrt(1/2), sqrt(2)) found by exact
// scaling by 2; ln(m) = 2 atanh(s), s = (m - 1)/(m + 1), |s| < 0.1716, summed to s^23
// (relative error below 1e-17).
DDPM_HD double log_exact(double u) {
  constexpr double kSqrtHalf = 0.70710678118654752440;
  constexpr double kLn2 = 0.69314718055994530942;
  int e = 0;
  double m = u;
  while (m < kSqrtHalf) {  // at most 21 iterations for u >= 2^-21
    m = mul(m, 2.0);
    --e;
  }
  double s = div(sub(m, 1.0), add(m, 1.0));
  double s2 = mul(s, s);
  double sum = 0.0;
  for (int k = 23; k >= 1; k -= 2) sum = add(mul(sum, s2), 1.0 / k);  // Horner in s^2
  return add(mul(static_cast<double>(e), kLn2), mul(mul(2.0, s), sum));
}

// sin and cos of 2*pi*v for v in [0, 1) given as an exact multiple of 2^-24: the quadrant
// comes from 4v exactly, the rest x = (frac(4v)) * pi/2 in [0, pi/2) goes through Taylor
// series to x^25 (error below 1e-17).
DDPM_HD void sincos_2pi_exact(double v, double& s_out, double& c_out) {
  constexpr double kHalfPi = 1.57079632679489661923;
  double r = mul(v, 4.0);
  int q = static_cast<int>(r);
  double x = mul(sub(r, static_cast<double>(q)), kHalfPi);
  double x2 = mul(x, x);
  double s = 0.0, c = 0.0;
  // sin x = x (1 - x^2/(2*3) (1 - x^2/(4*5) (1 - ...))), cos likewise from (1*2).
  for (int k = 24; k >= 2; k -= 2) s = sub(1.0, mul(div(x2, static_cast<double>(k * (k + 1))), s));
  s = mul(x, s);
  for (int k = 24; k >= 2; k -= 2) c = sub(1.0, mul(div(x2, static_cast<double>((k - 1) * k)), c));
  switch (q & 3) {
    case 0: s_out = s; c_out = c; break;
    case 1: s_out = c; c_out = -s; break;
    case 2: s_out = -s; c_out = -c; break;
    default: s_out = -c; c_out = s; break;
  }
}

DDPM_HD float uniform_from_bits(std::uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }

// Element g of the uniform stream (seed, offset): g is the absolute index offset + i.
DDPM_HD float uniform_at(std::uint64_t seed, std::uint64_t g) {
  U32x4 r = philox4x32_10(g >> 2, seed);
  return uniform_from_bits(r.v[g & 3]);
}

// Box-Muller on two words: the normal pair (z0, z1) = (radius cos, radius sin) above,
// computed in double and each rounded once to float.
DDPM_HD void box_muller(std::uint32_t w0, std::uint32_t w1, float& z0, float& z1) {
  double u1 = mul(static_cast<double>((w0 >> 11) + 1u), 1.0 / 2097152.0);  // (0, 1]
  double u2 = mul(static_cast<double>(w1 >> 8), 1.0 / 16777216.0);        // [0, 1)
  double radius = sqrt_rn(mul(-2.0, log_exact(u1)));
  double s, c;
  sincos_2pi_exact(u2, s, c);
  z0 = static_cast<float>(mul(radius, c));
  z1 = static_cast<float>(mul(radius, s));
}

// Element g of the standard-normal stream.
DDPM_HD float normal_at(std::uint64_t seed, std::uint64_t g) {
  U32x4 r = philox4x32_10(g >> 2, seed);
  unsigned pair = static_cast<unsigned>(g & 2);  // words (0,1) or (2,3)
  float z0, z1;
  box_muller(r.v[pair], r.v[pair + 1], z0, z1);
  return (g & 1) ? z1 : z0;
}

// Elements 4b .. 4b+3 of the uniform and of the normal stream: one Philox block (and two
// Box-Muller pairs) for four elements, the same values as uniform_at / normal_at give one
// at a time. For loops that walk a stream in order.
DDPM_HD void uniform_block(std::uint64_t seed, std::uint64_t block, float (&out)[4]) {
  U32x4 r = philox4x32_10(block, seed);
  for (int w = 0; w < 4; ++w) out[w] = uniform_from_bits(r.v[w]);
}

DDPM_HD void normal_block(std::uint64_t seed, std::uint64_t block, float (&out)[4]) {
  U32x4 r = philox4x32_10(block, seed);
  box_muller(r.v[0], r.v[1], out[0], out[1]);
  box_muller(r.v[2], r.v[3], out[2], out[3]);
}

}  // namespace ddpm::philox
