// models/toy/class_metrics.cpp: the per-class numbers of guided sampling (definitions in
// the header).
#include "models/toy/class_metrics.h"

#include <cmath>
#include <limits>

#include "engine/error.h"
#include "models/toy/energy_distance.h"

namespace ddpm::toy {

namespace {

void check_reference(const LabelledPoints& r) {
  DDPM_CHECK(!r.points.empty() && r.points.size() % 2 == 0 && r.points.size() / 2 == r.labels.size(),
             "class metrics: the reference must be a non-empty list of (x, y) points with one label each, got "
                 << r.points.size() << " coordinates and " << r.labels.size() << " labels");
  DDPM_CHECK(r.num_classes >= 1, "class metrics: the reference needs num_classes >= 1, got " << r.num_classes);
  for (const std::int64_t y : r.labels)
    DDPM_CHECK(y >= 0 && y < r.num_classes,
               "class metrics: reference label " << y << " is outside [0, " << r.num_classes << ")");
}

void check_samples(const std::vector<float>& s) {
  DDPM_CHECK(!s.empty() && s.size() % 2 == 0,
             "class metrics: the samples must be a non-empty list of (x, y) points, got " << s.size()
                                                                                           << " coordinates");
}

// The class's reference points, and their mean mu_k.
std::vector<float> class_points(const LabelledPoints& r, std::int64_t k, double mu[2]) {
  std::vector<float> pts;
  mu[0] = mu[1] = 0;
  for (std::size_t j = 0; j < r.labels.size(); ++j)
    if (r.labels[j] == k) {
      pts.push_back(r.points[2 * j]);
      pts.push_back(r.points[2 * j + 1]);
      mu[0] += r.points[2 * j];
      mu[1] += r.points[2 * j + 1];
    }
  DDPM_CHECK(!pts.empty(), "class metrics: the reference has no point of class " << k);
  const double m = static_cast<double>(pts.size() / 2);
  mu[0] /= m, mu[1] /= m;
  return pts;
}

// mean_i |p_i - mu| over points p [n, 2].
double mean_distance(const std::vector<float>& p, const double mu[2]) {
  double total = 0;
  for (std::size_t i = 0; i < p.size() / 2; ++i) total += std::hypot(p[2 * i] - mu[0], p[2 * i + 1] - mu[1]);
  return total / static_cast<double>(p.size() / 2);
}

}  // namespace

std::vector<std::int64_t> nearest_class(const std::vector<float>& samples, const LabelledPoints& reference) {
  check_samples(samples);
  check_reference(reference);
  const std::size_t n = samples.size() / 2, m = reference.labels.size();
  std::vector<std::int64_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double sx = samples[2 * i], sy = samples[2 * i + 1];
    double best = std::numeric_limits<double>::infinity();
    std::size_t arg = 0;
    for (std::size_t j = 0; j < m; ++j) {
      const double dx = sx - reference.points[2 * j], dy = sy - reference.points[2 * j + 1];
      const double d2 = dx * dx + dy * dy;  // squared: same order, no sqrt
      if (d2 < best) best = d2, arg = j;
    }
    out[i] = reference.labels[arg];  // a NaN sample keeps arg 0: counted, never "correct" by luck alone
  }
  return out;
}

ClassStats class_stats(const std::vector<float>& samples, std::int64_t k, const LabelledPoints& reference) {
  check_samples(samples);
  check_reference(reference);
  DDPM_CHECK(k >= 0 && k < reference.num_classes,
             "class metrics: class " << k << " is outside [0, " << reference.num_classes << ")");
  double mu[2];
  const std::vector<float> data_k = class_points(reference, k, mu);
  ClassStats s;
  s.count = static_cast<std::int64_t>(samples.size() / 2);
  std::int64_t hits = 0;
  for (const std::int64_t y : nearest_class(samples, reference)) hits += y == k;
  s.accuracy = static_cast<double>(hits) / static_cast<double>(s.count);
  s.spread = mean_distance(samples, mu) / mean_distance(data_k, mu);
  s.energy = energy_distance(samples, data_k);
  return s;
}

std::vector<ClassStats> per_class_stats(const std::vector<float>& samples, const std::vector<std::int64_t>& requested,
                                        const LabelledPoints& reference) {
  check_samples(samples);
  check_reference(reference);
  DDPM_CHECK(requested.size() == samples.size() / 2,
             "class metrics: " << samples.size() / 2 << " samples need as many requested labels, got "
                               << requested.size());
  std::vector<std::vector<float>> by_class(static_cast<std::size_t>(reference.num_classes));
  for (std::size_t i = 0; i < requested.size(); ++i) {
    const std::int64_t y = requested[i];
    DDPM_CHECK(y >= 0 && y < reference.num_classes,
               "class metrics: requested label " << y << " is outside [0, " << reference.num_classes << ")");
    by_class[static_cast<std::size_t>(y)].push_back(samples[2 * i]);
    by_class[static_cast<std::size_t>(y)].push_back(samples[2 * i + 1]);
  }
  std::vector<ClassStats> out(by_class.size());
  for (std::size_t k = 0; k < by_class.size(); ++k) {
    if (by_class[k].empty()) {
      out[k].accuracy = out[k].spread = out[k].energy = std::numeric_limits<double>::quiet_NaN();
      continue;
    }
    out[k] = class_stats(by_class[k], static_cast<std::int64_t>(k), reference);
  }
  return out;
}

}  // namespace ddpm::toy
