// tests/support/gradcheck.h: finite-difference gradient checks in double, and the
// CUDA-vs-CPU comparison used by every GPU test.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/tensor.h"

namespace ddpm::testing {

using Inputs = std::vector<Tensor>;

// Marks a (fresh) tensor as a leaf that requires grad and returns it: param(random_tensor(...)).
inline Tensor param(Tensor t) { return t.set_requires_grad(true), t; }

// f maps the inputs to a tensor; the check uses the scalar L = sum(f(inputs) * w) with a
// fixed random weight w, so every output element matters. For every input that requires
// grad, each element's analytic dL/dx (from backward) is compared with the central
// difference (L(x + h) - L(x - h)) / 2h. Inputs must be f64 CPU tensors.
// Passes when |analytic - numeric| <= atol + rtol * |numeric| for every element.
::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     std::vector<Tensor> inputs, double h = 1e-6, double atol = 1e-7,
                                     double rtol = 1e-5);

// Deterministic test data: N(0,1) values (f64 on the CPU) from a Philox seed.
Tensor random_tensor(const Shape& shape, std::uint64_t seed, DType dtype = DType::f64, double scale = 1.0);
// Positive values in [lo, hi] (for log, sqrt, div).
Tensor random_positive(const Shape& shape, std::uint64_t seed, double lo = 0.5, double hi = 2.0,
                       DType dtype = DType::f64);

// Error statistics of `actual` against `expected` (any devices; compared on the host).
struct ErrorStats {
  double max_abs = 0;
  double max_rel = 0;  // |a - e| / max(|e|, 1e-6) at its worst element
  double nmse = 0;     // sum (a - e)^2 / sum e^2
  std::string str() const;
};
ErrorStats compare(const Tensor& actual, const Tensor& expected);

// Asserts shapes match and max_abs <= atol + rtol*|e| elementwise; reports the stats.
::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double atol, double rtol);

// Bitwise equality of the values (a deterministic kernel repeats its rounding exactly).
::testing::AssertionResult same_bits(const Tensor& a, const Tensor& b);

// A tolerance relative to the result's scale, for reduced-precision math (TF32): max_abs <=
// rel * max|expected| and NMSE <= nmse; reports the stats and max_abs / scale.
::testing::AssertionResult within_scale(const Tensor& actual, const Tensor& expected, double rel, double nmse);

// --- CUDA against the CPU reference ------------------------------------------------------

// |actual - expected| <= atol + rtol * |expected|, as in all_close.
struct Tolerance {
  double atol = 0, rtol = 0;
};

// What check_against_cpu compares and how closely. Aggregate-initialized in this order,
// e.g. {{1e-5, 1e-4}} (forward and every gradient), {{2e-5, 1e-4}, {{2e-5, 1e-4}, {1e-3, 1e-4}}}
// (a tolerance per input gradient); set the later fields by name when they are needed.
struct CudaCheck {
  Tolerance forward;               // the outputs
  std::vector<Tolerance> grad;     // input gradients: empty = `forward`, one = every input, else one per input
  std::vector<bool> needs_grad;    // which inputs require (and have compared) gradients; empty = all
  std::uint64_t grad_seed = 77;    // seed of the random f32 output gradient (random_tensor)
  std::vector<std::string> names;  // input names for the messages; empty = "input <i>"
  bool expect_cuda_output = false; // also check that the CUDA run's output lives on the device
};

// Runs f on the CPU (f32) and on CUDA with the same inputs (host_inputs rounded to f32) and
// the same random output gradient; compares the outputs and the gradient of every input
// that needs one. With no input needing a gradient, only the forward is compared.
// Reports through EXPECT_*: call it with SCOPED_TRACE to name the case.
void check_against_cpu(const std::function<Tensor(const Inputs&)>& f, const Inputs& host_inputs,
                       const CudaCheck& check);

// max |a - b| over max |a| (0/0 counts as 0): how far b is from a, relative to a's scale.
// Float or double vectors of equal length (gradients read back with to_vector / to_double_vector).
template <typename T>
double relative_gap(const std::vector<T>& a, const std::vector<T>& b) {
  EXPECT_EQ(a.size(), b.size());
  double scale = 0.0, worst = 0.0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    scale = std::max(scale, std::fabs(static_cast<double>(a[i])));
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  }
  return worst / std::max(scale, 1e-300);
}

}  // namespace ddpm::testing

// First line of every GPU test: skips (reported as skipped by ctest) without a device.
#define DDPM_REQUIRE_CUDA()                                                                   \
  do {                                                                                      \
    if (!::ddpm::cuda_available()) GTEST_SKIP() << "no CUDA device: " << ::ddpm::cuda_unavailable_reason(); \
  } while (0)
