#include "models/data/toy.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "engine/rng.h"

namespace ddpm {

namespace {
// u in [0, 1) -> {0, .., k-1}
std::int64_t pick(float u, int k) { return std::min<std::int64_t>(k - 1, static_cast<std::int64_t>(double(u) * k)); }
}  // namespace

PointDataset make_gaussian_mixture(std::int64_t n, std::uint64_t seed, int modes, double radius, double stddev) {
  Generator gen(seed);
  return make_gaussian_mixture(n, gen, modes, radius, stddev);
}

PointDataset make_gaussian_mixture(std::int64_t n, Generator& gen, int modes, double radius, double stddev) {
  DDPM_CHECK(n >= 0 && modes > 0 && radius >= 0 && stddev > 0,
             "make_gaussian_mixture: need n >= 0, modes > 0, radius >= 0 and stddev > 0, got n=" << n << " modes=" << modes
                                                                                            << " radius=" << radius
                                                                                            << " std=" << stddev);
  PointDataset ds;
  ds.name = "gaussian-mixture-" + std::to_string(modes);
  ds.n = n;
  ds.stddev = stddev;
  const double pi = std::acos(-1.0);
  for (int k = 0; k < modes; ++k)
    ds.centres.push_back({radius * std::cos(2 * pi * k / modes), radius * std::sin(2 * pi * k / modes)});
  std::vector<float> u = rand({n}, gen).to_vector();      // [n]: which mode
  std::vector<float> z = randn({n, 2}, gen).to_vector();  // [n, 2]: offset from its centre
  ds.points.resize(static_cast<std::size_t>(2 * n));
  ds.labels.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t k = pick(u[i], modes);
    ds.labels[i] = k;
    for (int d = 0; d < 2; ++d) ds.points[2 * i + d] = static_cast<float>(ds.centres[k][d] + stddev * z[2 * i + d]);
  }
  return ds;
}

Dataset make_toy_shapes(std::int64_t n, std::uint64_t seed, int size) {
  DDPM_CHECK(n >= 0 && size >= 6, "make_toy_shapes: need n >= 0 and size >= 6, got n=" << n << " size=" << size);
  Dataset ds;
  ds.name = "toy-shapes-" + std::to_string(size);
  ds.n = n;
  ds.height = ds.width = size;
  ds.channels = 1;
  ds.num_classes = kToyShapeClasses;
  ds.class_names = {"square", "disc", "horizontal bar", "vertical bar"};
  ds.images.assign(static_cast<std::size_t>(n) * size * size, 0);
  ds.labels.resize(static_cast<std::size_t>(n));
  Generator gen(seed);
  std::vector<float> u = rand({n, 4}, gen).to_vector();  // [n, 4]: class, half-extent, centre x, centre y
  for (std::int64_t i = 0; i < n; ++i) {
    const float* ui = u.data() + 4 * i;
    const std::int64_t cls = pick(ui[0], kToyShapeClasses);
    // Half-extent r in [size/6, size/3]; the centre keeps the whole shape inside.
    const double r = size / 6.0 + ui[1] * (size / 6.0);
    const double cx = r + ui[2] * (size - 2 * r), cy = r + ui[3] * (size - 2 * r);
    // A bar's half-thickness is at least half a pixel, so it always covers a pixel centre.
    const double thin = std::max(r / 3.0, 0.5);
    std::uint8_t* img = ds.images.data() + static_cast<std::size_t>(i) * size * size;
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        const double dx = std::fabs(x + 0.5 - cx), dy = std::fabs(y + 0.5 - cy);  // pixel centre
        bool on = false;
        switch (cls) {
          case 0: on = dx <= r && dy <= r; break;
          case 1: on = dx * dx + dy * dy <= r * r; break;
          case 2: on = dx <= r && dy <= thin; break;
          default: on = dx <= thin && dy <= r; break;
        }
        if (on) img[y * size + x] = 255;
      }
    ds.labels[i] = cls;
  }
  return ds;
}

}  // namespace ddpm
