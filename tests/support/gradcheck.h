// tests/support/gradcheck.h: finite-difference gradient checks in double, and the
// CUDA-vs-CPU comparison used by every GPU test.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/tensor.h"

namespace ddpm::testing {

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

}  // namespace ddpm::testing

// First line of every GPU test: skips (reported as skipped by ctest) without a device.
#define DDPM_REQUIRE_CUDA()                                                                   \
  do {                                                                                      \
    if (!::ddpm::cuda_available()) GTEST_SKIP() << "no CUDA device: " << ::ddpm::cuda_unavailable_reason(); \
  } while (0)
