#include "support/gradcheck.h"

#include <algorithm>
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

::testing::AssertionResult within_scale(const Tensor& actual, const Tensor& expected, double rel, double nmse) {
  if (actual.shape() != expected.shape()) return ::testing::AssertionFailure() << "shapes differ";
  double scale = 0;
  for (double e : expected.to_double_vector()) scale = std::max(scale, std::fabs(e));
  ErrorStats st = compare(actual, expected);
  if (!(st.max_abs <= rel * scale) || !(st.nmse <= nmse))
    return ::testing::AssertionFailure() << st.str() << ", scale " << scale << ": allowed max_abs " << rel * scale
                                         << ", nmse " << nmse;
  std::cout << "    [compare] " << st.str() << " (max_abs/scale " << st.max_abs / scale << ")\n";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult same_bits(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  if (x.size() != y.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (std::size_t i = 0; i < x.size(); ++i)
    if (x[i] != y[i]) return ::testing::AssertionFailure() << "element " << i << ": " << x[i] << " vs " << y[i];
  return ::testing::AssertionSuccess();
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

void check_against_cpu(const std::function<Tensor(const Inputs&)>& f, const Inputs& host_inputs,
                       const CudaCheck& check) {
  const std::size_t n = host_inputs.size();
  if ((!check.needs_grad.empty() && check.needs_grad.size() != n) ||
      (check.grad.size() > 1 && check.grad.size() != n) || (!check.names.empty() && check.names.size() != n)) {
    ADD_FAILURE() << "check_against_cpu: needs_grad, grad and names must be empty or have one entry per input ("
                  << n << "); grad may also have one entry for all";
    return;
  }
  auto needs_grad = [&](std::size_t i) { return check.needs_grad.empty() || check.needs_grad[i]; };
  auto grad_tol = [&](std::size_t i) {
    return check.grad.empty() ? check.forward : check.grad.size() == 1 ? check.grad[0] : check.grad[i];
  };

  Inputs cpu_in, gpu_in;
  for (std::size_t i = 0; i < n; ++i) {
    Tensor c = host_inputs[i].to(DType::f32);
    cpu_in.push_back(c.clone().set_requires_grad(needs_grad(i)));
    gpu_in.push_back(c.to(Device::cuda()).set_requires_grad(needs_grad(i)));
  }
  Tensor out_c = f(cpu_in), out_g = f(gpu_in);
  if (check.expect_cuda_output) EXPECT_EQ(out_g.device(), Device::cuda());
  EXPECT_TRUE(all_close(out_g, out_c, check.forward.atol, check.forward.rtol)) << "forward";

  bool any_grad = false;
  for (std::size_t i = 0; i < n; ++i) any_grad = any_grad || needs_grad(i);
  if (!any_grad) return;
  Tensor w = random_tensor(out_c.shape(), check.grad_seed, DType::f32);
  out_c.backward(w);
  out_g.backward(w.to(Device::cuda()));
  for (std::size_t i = 0; i < n; ++i) {
    if (!needs_grad(i)) continue;
    const Tolerance tol = grad_tol(i);
    EXPECT_TRUE(all_close(gpu_in[i].grad(), cpu_in[i].grad(), tol.atol, tol.rtol))
        << "gradient of " << (check.names.empty() ? "input " + std::to_string(i) : check.names[i]);
  }
}

}  // namespace ddpm::testing
