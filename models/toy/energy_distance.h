// models/toy/energy_distance.h: the sample-quality number of ddpm-toy, the energy distance
// between two 2-D point sets (Szekely & Rizzo 2013, "Energy statistics: A class of statistics
// based on distances", eq. 2.1 and its V-statistic, eq. 3.1).
//
// For distributions P, Q with finite first moments, X, X' ~ P and Y, Y' ~ Q independent,
//   D^2(P, Q) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|  >= 0,
// with equality only when P = Q (|.| the Euclidean norm). It is twice the integrated squared
// difference of the characteristic functions under a fixed weight, so it sees every kind of
// mismatch (a missing mode, a blurred edge, a wrong spread), needs no bandwidth or bins, and
// is cheap in 2-D. For point sets x_1..x_n and y_1..y_m we use the V-statistic
//   D_V^2 = 2/(n m) sum_ij |x_i - y_j| - 1/n^2 sum_ij |x_i - x_j| - 1/m^2 sum_ij |y_i - y_j|,
// which is >= 0 for ANY two sets (it is D^2 between their empirical distributions) and 0
// for identical sets. Two independent draws of the same distribution give a small positive
// value, about (1/n + 1/m) E|X - X'| / 2 on average: the "floor" a perfect model reaches.
// ddpm-toy prints the samples' value against fresh data draws next to that floor computed
// from two fresh data draws of the same sizes; we report D^2 itself (not its square root),
// as it averages over independent draws.
//
// Closed form used by the tests: for P = N(0, I_2) and Q = N(mu, I_2), X - Y ~ N(mu, 2 I_2),
// whose norm has the Rice distribution (scale sigma = sqrt(2), noncentrality nu = |mu|):
//   E|X - Y| = sigma sqrt(pi/2) L(-nu^2 / (2 sigma^2)),
//   L(q) = exp(q/2) ((1 - q) I_0(-q/2) - q I_1(-q/2))   (the Laguerre function L_{1/2}),
// and E|X - X'| = E|Y - Y'| = sqrt(2) sqrt(pi/2) = sqrt(pi).
#pragma once

#include <cstdint>
#include <vector>

namespace ddpm::toy {

// D_V^2 between two point sets given as row-major [n, 2] and [m, 2] coordinates (f64
// accumulation; O(n m + n^2 + m^2) distances). ValueError when a set is empty or odd-sized;
// NaN when a coordinate is NaN.
double energy_distance(const std::vector<float>& x, const std::vector<float>& y);

// D^2 between N(0, I_2) and N(mu, I_2) with |mu| = shift, in closed form (above).
double gaussian_shift_energy_distance(double shift);

}  // namespace ddpm::toy
