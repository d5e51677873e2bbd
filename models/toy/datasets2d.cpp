// models/toy/datasets2d.cpp: the 2-D datasets (definitions and their closed-form moments in
// the header).
#include "models/toy/datasets2d.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/error.h"

namespace ddpm::toy {

namespace {

const double kPi = std::acos(-1.0);

constexpr double kGaussiansStd = 0.1;
constexpr double kMoonsNoise = 0.08;
constexpr double kSwissRollNoise = 0.4;
constexpr double kRingsNoise = 0.08;

// u in [0, 1) -> {0, .., k-1}
int pick(double u, int k) { return std::min(k - 1, static_cast<int>(u * k)); }

// Fills ds.points from raw coordinates, standardized by `st`.
void put(PointDataset& ds, std::int64_t i, double x, double y, const Standardization& st) {
  ds.points[2 * i] = static_cast<float>((x - st.mean[0]) / st.scale);
  ds.points[2 * i + 1] = static_cast<float>((y - st.mean[1]) / st.scale);
}

}  // namespace

const std::vector<std::string>& toy2d_names() {
  static const std::vector<std::string> names = {"gaussians8", "moons", "swissroll", "checkerboard", "rings"};
  return names;
}

void check_toy2d_name(const std::string& name, const std::string& what) {
  const auto& names = toy2d_names();
  if (std::find(names.begin(), names.end(), name) != names.end()) return;
  std::ostringstream list;
  for (std::size_t i = 0; i < names.size(); ++i) list << (i ? ", " : "") << names[i];
  DDPM_THROW(ValueError, what << " '" << name << "' is not one of the 2-D datasets; the choices are " << list.str());
}

int toy2d_num_classes(const std::string& name) {
  check_toy2d_name(name);
  if (name == "gaussians8") return 8;
  if (name == "moons") return 2;
  if (name == "checkerboard") return 4;
  return 3;  // swissroll (thirds of the roll), rings
}

Standardization toy2d_standardization(const std::string& name) {
  check_toy2d_name(name);
  Standardization st;
  if (name == "moons") {
    st.mean[0] = 0.5;
    st.mean[1] = 0.25;
    const double var = (0.75 + (0.5625 - 1.0 / kPi)) / 2 + kMoonsNoise * kMoonsNoise;
    st.scale = std::sqrt(var);
  } else if (name == "swissroll") {
    st.mean[0] = 2.0;
    st.mean[1] = 2.0 / (3.0 * kPi);
    // Per-coordinate variance averaged: (E|x|^2 - |mean|^2) / 2 + noise^2.
    const double second_moment = 9.75 * kPi * kPi;
    const double var = (second_moment - st.mean[0] * st.mean[0] - st.mean[1] * st.mean[1]) / 2 +
                       kSwissRollNoise * kSwissRollNoise;
    st.scale = std::sqrt(var);
  } else if (name == "checkerboard") {
    st.scale = std::sqrt(4.0 / 3.0);  // U[-2, 2] has variance 4^2 / 12
  } else if (name == "rings") {
    st.scale = std::sqrt(7.0 / 3.0 + kRingsNoise * kRingsNoise);  // E[r^2] / 2 = (1 + 4 + 9) / 6
  }
  return st;  // gaussians8: the identity (built with unit variance)
}

PointDataset make_toy2d(const std::string& name, std::int64_t n, Generator& gen) {
  check_toy2d_name(name);
  DDPM_CHECK(n >= 0, "make_toy2d: the number of points must be >= 0, got " << n << " for " << name);
  if (name == "gaussians8") {
    PointDataset ds = make_gaussian_mixture(n, gen, 8, std::sqrt(2.0 * (1.0 - kGaussiansStd * kGaussiansStd)),
                                            kGaussiansStd);
    ds.name = name;
    return ds;
  }
  const Standardization st = toy2d_standardization(name);
  PointDataset ds;
  ds.name = name;
  ds.n = n;
  ds.points.resize(static_cast<std::size_t>(2 * n));
  ds.labels.resize(static_cast<std::size_t>(n));
  // Per point: two uniforms (a discrete choice and a position) and a 2-D normal, all in f64.
  const std::vector<double> u = rand({n, 2}, gen, Device::cpu(), DType::f64).to_double_vector();
  const std::vector<double> z = randn({n, 2}, gen, Device::cpu(), DType::f64).to_double_vector();
  for (std::int64_t i = 0; i < n; ++i) {
    const double u0 = u[2 * i], u1 = u[2 * i + 1], z0 = z[2 * i], z1 = z[2 * i + 1];
    if (name == "moons") {
      const int half = pick(u0, 2);
      const double th = kPi * u1;
      const double x = half == 0 ? std::cos(th) : 1.0 - std::cos(th);
      const double y = half == 0 ? std::sin(th) : 0.5 - std::sin(th);
      put(ds, i, x + kMoonsNoise * z0, y + kMoonsNoise * z1, st);
      ds.labels[i] = half;
    } else if (name == "swissroll") {
      const double th = 1.5 * kPi * (1.0 + 2.0 * u0);
      put(ds, i, th * std::cos(th) + kSwissRollNoise * z0, th * std::sin(th) + kSwissRollNoise * z1, st);
      ds.labels[i] = pick(u0, 3);  // th - 3 pi/2 = 3 pi u0: thirds of u0 are the pi-long thirds of the roll
    } else if (name == "checkerboard") {
      // Cell k of the 8 with i + j even: row j = k / 2 - 2 in {-2..1}, column i of the
      // matching parity; u1 and a second uniform made from z place the point in the cell.
      const int k = pick(u0, 8);
      const int j = k / 2 - 2;
      const int ci = 2 * (k % 2) - 2 + ((j % 2 + 2) % 2);  // i in {-2..1} with i + j even
      // The position inside the cell: u1 for x; for y the normal z0 mapped through its CDF
      // (uniform on [0, 1)), so each point still costs a fixed number of draws.
      const double v = 0.5 * std::erfc(-z0 / std::sqrt(2.0));
      put(ds, i, ci + u1, j + std::min(v, 1.0 - 1e-12), st);
      ds.labels[i] = (ci >= 0 ? 1 : 0) + (j >= 0 ? 2 : 0);  // the quadrant (header)
    } else {  // rings
      const int ring = pick(u0, 3);
      const double r = ring + 1.0, phi = 2 * kPi * u1;
      put(ds, i, r * std::cos(phi) + kRingsNoise * z0, r * std::sin(phi) + kRingsNoise * z1, st);
      ds.labels[i] = ring;
    }
  }
  return ds;
}

PointDataset make_toy2d(const std::string& name, std::int64_t n, std::uint64_t seed) {
  Generator gen(seed);
  return make_toy2d(name, n, gen);
}

}  // namespace ddpm::toy
