// models/toy/datasets2d.h: the 2-D point clouds of ddpm-toy, the datasets on which diffusion
// can be watched at work (they train in seconds on one CPU core and a scatter plot shows
// everything the model learned or missed).
//
// Every dataset is drawn from the engine's Philox generator (engine/rng.h), so a seed gives
// the same points on every machine, and is standardized by ONE affine map per dataset,
//   x = (x_raw - mean) / scale,
// with mean = E[x_raw] and scale^2 = (Var[x_raw_1] + Var[x_raw_2]) / 2 both computed in
// closed form from the definitions below (not from the draws). So each cloud is centred and
// its per-coordinate variance averages exactly 1 in expectation; the same scale on both axes
// keeps the shape's aspect ratio (the moons stay moons). Unit variance matches what the
// schedules assume of the data: x_T = sqrt(abar) x_0 + sqrt(1 - abar) eps is then close to
// N(0, I) at t = T - 1. The raw definitions (u ~ U[0, 1), z ~ N(0, I_2)):
//
//   gaussians8   8 equal-weight modes, centre k = r (cos 2 pi k / 8, sin 2 pi k / 8), each
//                N(centre, s^2 I) with s = 0.1 and r = sqrt(2 (1 - s^2)) = 1.407, so
//                Var = r^2 / 2 + s^2 = 1 already (mean 0, scale 1). Tests mode coverage:
//                a sampler that drops or merges modes shows it at once. labels = the mode.
//   moons        two interleaved half circles (the shape of scikit-learn's make_moons):
//                upper (cos th, sin th), lower (1 - cos th, 1/2 - sin th), th = pi u, plus
//                0.08 z. mean (1/2, 1/4); Var_1 = 3/4, Var_2 = 9/16 - 1/pi, each + 0.08^2.
//                Tests two curved, non-convex pieces close to each other. labels = 0 upper,
//                1 lower.
//   swissroll    the spiral th (cos th, sin th), th = 3 pi / 2 (1 + 2 u) in [3 pi/2, 9 pi/2],
//                plus 0.4 z (the turns lie 2 pi = 6.3 apart). mean (2, 2 / (3 pi))
//                (integrate th cos th and th sin th over th); E|x|^2 = E[th^2] =
//                (a^2 + a b + b^2) / 3 = 9.75 pi^2. Tests a thin 1-D manifold: samples must
//                land ON the curve, not in the gaps between the turns. labels = the third
//                of the roll: th in [3 pi/2, 5 pi/2) is 0 (the inner half turn), [5 pi/2,
//                7 pi/2) is 1, [7 pi/2, 9 pi/2] is 2 (the outer half turn); equal weights.
//   checkerboard uniform on the 8 cells of a 4 x 4 board on [-2, 2]^2 whose integer
//                corner (i, j) has i + j even; no noise. Each coordinate is marginally
//                U[-2, 2]: mean 0, Var 4/3. Tests sharp edges and empty squares next to
//                full ones: the blur a model leaves at the edges is visible. labels = the
//                quadrant of the board, each holding two of the cells (on its diagonal):
//                0 = (x < 0, y < 0), 1 = (x >= 0, y < 0), 2 = (x < 0, y >= 0), 3 = (x >= 0,
//                y >= 0). (Every filled cell has the same colour parity, i + j even, so
//                parity would be one class; eight cell labels would leave ~250 points per
//                class in a 2000-point reference.)
//   rings        three concentric circles of radius 1, 2, 3 (equal weights), point
//                r (cos phi, sin phi), phi = 2 pi u, plus 0.08 z. mean 0, Var = E[r^2] / 2 +
//                0.08^2 = 7/3 + 0.0064. Tests nested, non-convex modes at several scales.
//                labels = the ring (0 inner).
//
// The labels are the classes of class-conditional training and guided sampling (ddpm-toy
// train --class-cond, docs/LEARN.md "Guidance"). Each label is the discrete choice the point
// was drawn with, so adding them did not change a single draw: the points of a seed are the
// same as before the labels existed (tests/cpu/test_toy2d_labels.cpp pins them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "models/data/toy.h"

namespace ddpm::toy {

// The dataset names, in the order above.
const std::vector<std::string>& toy2d_names();
// ValueError naming the dataset (as `what`, e.g. the flag it came from) and listing the
// choices unless name is one of them.
void check_toy2d_name(const std::string& name, const std::string& what = "dataset");

// The affine map from the raw definition to the returned points: x = (x_raw - mean) / scale.
struct Standardization {
  double mean[2] = {0, 0};
  double scale = 1;
};
Standardization toy2d_standardization(const std::string& name);

// The number of classes of dataset `name` (the labels above): gaussians8 8, moons 2,
// swissroll 3, checkerboard 4, rings 3.
int toy2d_num_classes(const std::string& name);

// n points of dataset `name`, standardized as above, drawn from gen. PointDataset::points is
// [n, 2] row-major; labels [n] as listed above. For gaussians8 the centres
// and stddev are filled as well (in standardized units).
PointDataset make_toy2d(const std::string& name, std::int64_t n, Generator& gen);
PointDataset make_toy2d(const std::string& name, std::int64_t n, std::uint64_t seed);

}  // namespace ddpm::toy
