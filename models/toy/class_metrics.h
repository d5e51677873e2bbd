// models/toy/class_metrics.h: the per-class numbers of ddpm-toy's guided sampling, which
// show the guidance trade-off of Ho & Salimans 2022 (fig. 1-2) and Dhariwal & Nichol 2021
// (sec. 4.2) on 2-D points: as the guidance scale grows, samples land in their class more
// often (accuracy up) and crowd towards its most typical region (spread down, diversity
// lost), and past some scale they overshoot the class's data (the energy distance to the
// class rises again).
//
// All three are measured against a REFERENCE: fresh labelled data points (x_j, y_j) drawn
// from the dataset itself (never the training batches), so no classifier is trained for
// the measurement and the rule is the same for every dataset:
//
//   nearest-class rule  a sample's class is the label of its nearest reference point
//                       (1-nearest neighbour, Euclidean; ties go to the lower index).
//                       With a few thousand reference points this is the Bayes rule of the
//                       data up to the points' spacing: for gaussians8 it is the nearest mode,
//                       for rings the nearest ring, for moons the nearer half.
//   accuracy(k)         the fraction of the samples requested as class k whose nearest-class
//                       label is k. 1/K for samples that ignore the label (K classes of equal
//                       weight), 1 for samples that all lie in their class.
//   spread(k)           mean_i |s_i - mu_k| / mean_{j: y_j = k} |x_j - mu_k|, mu_k the mean of
//                       the class-k reference points: the samples' mean distance to the class
//                       centre relative to the data's own. 1 matches the data; below 1 the
//                       samples have contracted towards mu_k (for a ring, whose centre is the
//                       origin, it measures the radius instead: guidance then moves samples
//                       inside or outside the ring, which the energy distance catches).
//   energy(k)           the energy distance (energy_distance.h) between the class-k samples
//                       and the class-k reference points.
#pragma once

#include <cstdint>
#include <vector>

namespace ddpm::toy {

// Labelled reference points: points [m, 2] row-major, labels [m] in [0, num_classes).
struct LabelledPoints {
  std::vector<float> points;
  std::vector<std::int64_t> labels;
  int num_classes = 0;
};

// The nearest-class label of each sample [n, 2] (the rule above). ValueError for an empty or
// inconsistent reference or a label outside [0, num_classes).
std::vector<std::int64_t> nearest_class(const std::vector<float>& samples, const LabelledPoints& reference);

struct ClassStats {
  std::int64_t count = 0;  // samples requested as this class
  double accuracy = 0;     // the fraction whose nearest class is the requested one
  double spread = 0;       // mean distance to the class's data mean, relative to the data's
  double energy = 0;       // energy distance to the class's reference points
};

// The numbers above for samples [n, 2] all requested as class k. ValueError when there are no
// samples, k is out of range, or the reference has no point of class k.
ClassStats class_stats(const std::vector<float>& samples, std::int64_t k, const LabelledPoints& reference);

// The per-class numbers of samples [n, 2] requested with `requested` [n] labels: one entry
// per class (count 0 and NaN numbers for a class that was not requested).
std::vector<ClassStats> per_class_stats(const std::vector<float>& samples, const std::vector<std::int64_t>& requested,
                                        const LabelledPoints& reference);

}  // namespace ddpm::toy
