#include "support/gradcheck.h"

#include <cmath>
#include <iostream>
#include <sstream>

#include "engine/autograd.h"
#include "engine/rng.h"

namespace ddpm::testing {

namespace {

double weighted_sum(const Tensor& out, const std::vector<double>& w) {
  std::vector<double> v = out.to_double_vector();
  double s = 0;
  for (std::size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
  return s;
}

}  // namespace

::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     std::vector<Tensor> inputs, double h, double atol, double rtol) {
  for (auto& t : inputs)
    if (t.defined() && (t.dtype() != DType::f64 || !t.device().is_cpu()))
      return ::testing::AssertionFailure() << "gradcheck needs f64 CPU inputs, got " << t.describe();

  // Analytic gradients.
  for (auto& t : inputs)
    if (t.defined() && t.requires_grad()) t.set_grad(Tensor());
  Tensor out = f(inputs);
  Tensor w_t = random_tensor(out.shape(), 9001);
  std::vector<double> w = w_t.to_double_vector();
  out.backward(w_t);

  std::ostringstream failures;
  int n_fail = 0;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor g = x.grad();
    if (!g.defined()) return ::testing::AssertionFailure() << "input " << k << " received no gradient";
    std::vector<double> analytic = g.to_double_vector();
    double* xd = x.data<double>();
    NoGradGuard no_grad;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      double orig = xd[i];
      xd[i] = orig + h;
      double lp = weighted_sum(f(inputs), w);
      xd[i] = orig - h;
      double lm = weighted_sum(f(inputs), w);
      xd[i] = orig;
      double numeric = (lp - lm) / (2 * h);
      double a = analytic[static_cast<std::size_t>(i)];
      if (!(std::fabs(a - numeric) <= atol + rtol * std::fabs(numeric))) {
        if (n_fail++ < 5)
          failures << "\n  input " << k << " element " << i << ": analytic " << a << ", numeric " << numeric;
      }
    }
  }
  if (n_fail) return ::testing::AssertionFailure() << n_fail << " gradient element(s) differ:" << failures.str();
  return ::testing::AssertionSuccess();
}

Tensor random_tensor(const Shape& shape, std::uint64_t seed, DType dtype, double scale_by) {
  Generator gen(seed);
  std::vector<double> v = randn(shape, gen, Device::cpu(), DType::f64).to_double_vector();
  for (auto& x : v) x *= scale_by;
  return Tensor::from_vector(v, shape, dtype);
}

Tensor random_positive(const Shape& shape, std::uint64_t seed, double lo, double hi, DType dtype) {
  Generator gen(seed);
  std::vector<double> v = rand(shape, gen, Device::cpu(), DType::f64).to_double_vector();
  for (auto& x : v) x = lo + (hi - lo) * x;
  return Tensor::from_vector(v, shape, dtype);
}

std::string ErrorStats::str() const {
  std::ostringstream os;
  os << "max_abs=" << max_abs << " max_rel=" << max_rel << " nmse=" << nmse;
  return os.str();
}

ErrorStats compare(const Tensor& actual, const Tensor& expected) {
  std::vector<double> a = actual.to_double_vector(), e = expected.to_double_vector();
  ErrorStats s;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size() && i < e.size(); ++i) {
    double d = std::fabs(a[i] - e[i]);
    s.max_abs = std::max(s.max_abs, d);
    s.max_rel = std::max(s.max_rel, d / std::max(std::fabs(e[i]), 1e-6));
    num += d * d;
    den += e[i] * e[i];
  }
  s.nmse = den > 0 ? num / den : num;
  return s;
}

::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double atol, double rtol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shapes differ: " << shape_str(actual.shape()) << " vs "
                                         << shape_str(expected.shape());
  std::vector<double> a = actual.to_double_vector(), e = expected.to_double_vector();
  ErrorStats stats = compare(actual, expected);
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!(std::fabs(a[i] - e[i]) <= atol + rtol * std::fabs(e[i])))
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs expected " << e[i] << " ("
                                           << stats.str() << ", atol=" << atol << ", rtol=" << rtol << ")";
  }
  std::cout << "    [compare] " << stats.str() << "\n";
  return ::testing::AssertionSuccess();
}

}  // namespace ddpm::testing
