// models/toy/energy_distance.cpp: the energy distance (definitions in the header).
#include "models/toy/energy_distance.h"

#include <cmath>

#include "engine/error.h"

namespace ddpm::toy {

namespace {

// Mean Euclidean distance over all pairs (i, j), i from a and j from b (i = j included).
double mean_pair_distance(const std::vector<float>& a, const std::vector<float>& b) {
  const std::size_t n = a.size() / 2, m = b.size() / 2;
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double ax = a[2 * i], ay = a[2 * i + 1];
    double row = 0;  // one row at a time keeps the f64 sum's rounding small
    for (std::size_t j = 0; j < m; ++j) row += std::hypot(ax - b[2 * j], ay - b[2 * j + 1]);
    total += row;
  }
  return total / (static_cast<double>(n) * static_cast<double>(m));
}

}  // namespace

double energy_distance(const std::vector<float>& x, const std::vector<float>& y) {
  DDPM_CHECK(!x.empty() && !y.empty() && x.size() % 2 == 0 && y.size() % 2 == 0,
             "energy_distance: both point sets must be non-empty lists of (x, y) pairs, got "
                 << x.size() << " and " << y.size() << " coordinates");
  const double d = 2 * mean_pair_distance(x, y) - mean_pair_distance(x, x) - mean_pair_distance(y, y);
  // Clamp the rounding of a difference of nearly equal sums (identical sets give exactly 0),
  // but keep a NaN (a diverged sampler's points): it must not read as a perfect score.
  return d < 0 ? 0.0 : d;
}

double gaussian_shift_energy_distance(double shift) {
  const double pi = std::acos(-1.0);
  const double sigma = std::sqrt(2.0);
  const double q = -shift * shift / (2 * sigma * sigma);
  const double laguerre = std::exp(q / 2) * ((1 - q) * std::cyl_bessel_i(0.0, -q / 2) - q * std::cyl_bessel_i(1.0, -q / 2));
  const double cross = sigma * std::sqrt(pi / 2) * laguerre;  // E|X - Y|
  return 2 * cross - 2 * std::sqrt(pi);
}

}  // namespace ddpm::toy
