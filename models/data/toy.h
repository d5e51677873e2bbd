// models/data/toy.h: small synthetic datasets, deterministic from a seed, for tests and
// for end-to-end training runs that finish on the CPU in seconds.
//
// (a) A 2-D mixture of Gaussians: `modes` equal-weight components with centres evenly
//     spaced on a circle of radius `radius`, centre k = radius * (cos(2 pi k / modes),
//     sin(2 pi k / modes)), each isotropic with standard deviation `stddev`:
//       x = centre[k] + stddev * z,  k ~ Uniform{0..modes-1},  z ~ N(0, I_2).
//     The centres and stddev are kept with the points so statistical tests of a trained
//     model's samples know the true distribution.
// (b) Shapes: size x size single-channel uint8 images of one white shape on black, with
//     the shape's class as label: 0 square, 1 disc, 2 horizontal bar, 3 vertical bar. The
//     position and size of each shape are random but it always lies inside the image.
//
// All randomness comes from the engine's Philox generator (engine/rng.h), so the same seed
// gives the same data on every machine.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "models/data/dataset.h"

namespace ddpm {

struct PointDataset {
  std::string name;
  std::int64_t n = 0;
  std::vector<float> points;         // [n, 2], row-major: points[2 * i + d]
  std::vector<std::int64_t> labels;  // [n], the mode each point was drawn from
  std::vector<std::array<double, 2>> centres;  // [modes]
  double stddev = 0;                            // per-coordinate standard deviation
};

PointDataset make_gaussian_mixture(std::int64_t n, std::uint64_t seed, int modes = 8, double radius = 2.0,
                                   double stddev = 0.05);
// The same drawn from a caller's generator (the seeded form is Generator(seed) and this), so
// a training loop can draw a fresh batch per step from its own stream.
PointDataset make_gaussian_mixture(std::int64_t n, Generator& gen, int modes = 8, double radius = 2.0,
                                   double stddev = 0.05);

inline constexpr int kToyShapeClasses = 4;
Dataset make_toy_shapes(std::int64_t n, std::uint64_t seed, int size = 16);

}  // namespace ddpm
