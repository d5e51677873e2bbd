// tests/support/posthoc_reference.h: the reference side of the post-hoc EMA tests: weights
// read from safetensors as double vectors by name, and the power-function EMA of
// models/train/posthoc_ema.h recomputed in double from the raw iterates theta_1..theta_t:
//   theta_hat <- beta_t theta_hat + (1 - beta_t) theta_t,   beta_t = (1 - 1/t)^(gamma + 1).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/io/safetensors.h"
#include "engine/tensor.h"

namespace ddpm::testing {

using Weights = std::map<std::string, std::vector<double>>;

// The tensors of a safetensors file whose names start with `prefix`, the prefix removed.
inline Weights read_weights(const std::string& path, const std::string& prefix = "") {
  Weights w;
  for (const auto& [name, t] : load_safetensors(path).tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) w[name.substr(prefix.size())] = t.to_double_vector();
  return w;
}

inline Weights to_weights(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  Weights w;
  for (const auto& [name, t] : tensors) w[name] = t.to_double_vector();
  return w;
}

// The power EMA of exponent gamma after t updates over theta[0..t-1] (theta_1..theta_t).
inline Weights track(const std::vector<Weights>& theta, double gamma, std::int64_t t) {
  Weights ema = theta[0];
  for (std::int64_t tau = 1; tau <= t; ++tau) {
    const double beta = std::pow(1.0 - 1.0 / static_cast<double>(tau), gamma + 1.0);
    for (auto& [name, v] : ema)
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = beta * v[i] + (1.0 - beta) * theta[tau - 1].at(name)[i];
  }
  return ema;
}

// max |a - b| / max |b| over every tensor; a test failure names a tensor of b missing in a.
inline double relative_difference(const Weights& a, const Weights& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (const auto& [name, vb] : b) {
    const auto it = a.find(name);
    if (it == a.end()) {
      ADD_FAILURE() << name << " is missing";
      continue;
    }
    for (std::size_t i = 0; i < vb.size(); ++i) {
      diff = std::max(diff, std::abs(it->second[i] - vb[i]));
      scale = std::max(scale, std::abs(vb[i]));
    }
  }
  return diff / scale;
}

}  // namespace ddpm::testing
