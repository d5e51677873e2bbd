// The parameter slab, AdamW, gradient-norm clipping and the EMA on the CPU, against values
// computed independently here: a scalar double AdamW written from the paper's equations,
// hand-computed norms, and the closed form of the EMA warm-up.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::random_tensor;

// Three parameters with awkward sizes, so padding appears between them.
NamedTensors make_params(DType dtype = DType::f64, std::uint64_t seed = 1) {
  return {{"conv.weight", random_tensor({3, 4}, seed, dtype)},
          {"conv.bias", random_tensor({5}, seed + 1, dtype)},
          {"norm.weight", random_tensor({2, 1, 3}, seed + 2, dtype)}};
}

std::vector<double> values_of(const Tensor& t) { return t.to_double_vector(); }

TEST(ParameterSlab, PackKeepsValuesAndViewsTheSlab) {
  NamedTensors params = make_params();
  std::vector<std::vector<double>> before;
  for (const auto& [name, t] : params) before.push_back(values_of(t));

  ParameterSlab slab(params);
  EXPECT_EQ(slab.size(), 3u);
  EXPECT_EQ(slab.numel(), 12 + 5 + 6);
  const std::int64_t align = ParameterSlab::kAlignBytes / sizeof(double);  // 32 doubles
  EXPECT_EQ(slab.slab_numel(), 3 * align);
  EXPECT_EQ(slab.values().shape(), Shape{slab.slab_numel()});

  const char* base = static_cast<const char*>(slab.values().raw_data());
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& [name, t] = params[i];
    SCOPED_TRACE(name);
    EXPECT_EQ(values_of(t), before[i]);  // the model's own handle keeps its values
    EXPECT_TRUE(t.requires_grad());
    EXPECT_TRUE(slab.at(name).same_as(t));
    EXPECT_EQ(slab.entries()[i].name, name);
    EXPECT_EQ(slab.entries()[i].offset, static_cast<std::int64_t>(i) * align);
    EXPECT_EQ(static_cast<const char*>(t.raw_data()), base + slab.entries()[i].offset * sizeof(double));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.raw_data()) % 64, 0u);  // CPU storages are 64-byte aligned
    EXPECT_EQ(values_of(slab.slice(slab.values(), i)), before[i]);
    // .grad is pre-bound to the zeroed matching view of the gradient slab.
    ASSERT_TRUE(t.grad().defined());
    EXPECT_EQ(t.grad().raw_data(),
              static_cast<char*>(slab.grads().raw_data()) + slab.entries()[i].offset * sizeof(double));
    EXPECT_EQ(t.grad().shape(), t.shape());
  }
  // Padding is zero.
  std::vector<double> all = values_of(slab.values());
  EXPECT_EQ(all[12], 0.0);
  EXPECT_EQ(all.back(), 0.0);
  EXPECT_FALSE(slab.contains("missing"));
  EXPECT_THROW(slab.at("missing"), ValueError);
}

TEST(ParameterSlab, BackwardAccumulatesIntoTheGradientSlab) {
  ParameterSlab slab(make_params());
  const Tensor& w = slab.at("conv.weight");
  const Tensor& b = slab.at("conv.bias");
  const Tensor& s = slab.at("norm.weight");
  Tensor x = random_tensor({3, 4}, 9);
  // L = sum(w * x) + sum(b * b):  dL/dw = x,  dL/db = 2 b,  dL/ds = 0.
  auto loss = [&] { return add(sum(mul(w, x)), sum(mul(b, b))); };
  loss().backward();
  std::vector<double> xv = values_of(x), bv = values_of(b);
  std::vector<double> g = values_of(slab.grads());
  const auto& e = slab.entries();
  for (std::size_t i = 0; i < xv.size(); ++i) EXPECT_DOUBLE_EQ(g[e[0].offset + i], xv[i]);
  for (std::size_t i = 0; i < bv.size(); ++i) EXPECT_DOUBLE_EQ(g[e[1].offset + i], 2 * bv[i]);
  for (std::int64_t i = 0; i < s.numel(); ++i) EXPECT_EQ(g[e[2].offset + i], 0.0);
  EXPECT_EQ(values_of(w.grad()), xv);

  loss().backward();  // a second backward adds (+=)
  EXPECT_DOUBLE_EQ(values_of(slab.grads())[e[1].offset], 4 * bv[0]);

  Tensor grad_handle = w.grad();
  slab.zero_grad();
  for (double v : values_of(slab.grads())) EXPECT_EQ(v, 0.0);
  EXPECT_TRUE(w.grad().same_as(grad_handle));  // still bound to the slab after zero_grad
  EXPECT_EQ(values_of(w.grad()), std::vector<double>(12, 0.0));
}

TEST(ParameterSlab, F32SlabsAlignTo64Floats) {
  ParameterSlab slab(make_params(DType::f32));
  EXPECT_EQ(slab.dtype(), DType::f32);
  EXPECT_EQ(slab.entries()[1].offset, 64);
  EXPECT_EQ(slab.slab_numel(), 3 * 64);
}

TEST(ParameterSlab, RejectsBadParameterLists) {
  EXPECT_THROW(ParameterSlab(NamedTensors{}), ValueError);
  Tensor a = random_tensor({2}, 1), b = random_tensor({3}, 2);
  EXPECT_THROW(ParameterSlab(NamedTensors{{"a", a}, {"a", b}}), ValueError);  // name twice
  EXPECT_THROW(ParameterSlab(NamedTensors{{"a", a}, {"b", a}}), ValueError);  // tensor twice
  EXPECT_THROW(ParameterSlab(NamedTensors{{"a", a}, {"b", random_tensor({3}, 2, DType::f32)}}), ValueError);
  EXPECT_THROW(ParameterSlab(NamedTensors{{"", a}}), ValueError);
  EXPECT_THROW(ParameterSlab(NamedTensors{{"a", Tensor()}}), ValueError);
  Tensor leaf = random_tensor({2}, 3).set_requires_grad(true);
  EXPECT_THROW(ParameterSlab(NamedTensors{{"a", scale(leaf, 2.0)}}), ValueError);  // not a leaf
  ParameterSlab slab(NamedTensors{{"a", a}});
  EXPECT_THROW(slab.pack({{"b", b}}), ValueError);  // packs once
  EXPECT_THROW(slab.slice(b, 0), ValueError);
  EXPECT_THROW(slab.entry(1), ValueError);
}

// --- AdamW ---------------------------------------------------------------------------------

// The paper's equations, one scalar at a time, in double.
struct ReferenceAdamW {
  double lr, b1, b2, eps, wd;
  std::vector<double> p, m, v;
  int t = 0;
  void step(const std::vector<double>& g) {
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      p[i] -= lr * wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double m_hat = m[i] / (1 - std::pow(b1, t));
      double v_hat = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

// A deterministic gradient that changes with the step and the element.
double test_gradient(int step, std::int64_t i) {
  return std::sin(0.7 * static_cast<double>(i) + step + 0.5) * (1 + step);
}

// Writes test_gradient into every parameter element of the slab (padding stays 0).
std::vector<double> set_gradients(ParameterSlab& slab, int step) {
  std::vector<double> g(static_cast<std::size_t>(slab.slab_numel()), 0.0);
  for (const SlabEntry& e : slab.entries())
    for (std::int64_t i = 0; i < e.value.numel(); ++i) g[e.offset + i] = test_gradient(step, e.offset + i);
  Tensor grads = slab.grads();
  grads.copy_from(Tensor::from_vector(g, {slab.slab_numel()}, slab.dtype()));
  return g;
}

TEST(AdamW, FirstStepMovesEachParameterByLrTimesSignOfGradient) {
  // At t = 1, m_hat = g and v_hat = g^2, so with eps -> 0 the update is lr * g / |g|.
  ParameterSlab slab(make_params());
  std::vector<double> p0 = values_of(slab.values());
  std::vector<double> g = set_gradients(slab, 0);
  AdamW opt(slab, {/*lr=*/0.01, 0.9, 0.999, /*eps=*/1e-300, /*weight_decay=*/0.0});
  opt.step();
  EXPECT_EQ(opt.step_count(), 1);
  std::vector<double> p1 = values_of(slab.values());
  for (const SlabEntry& e : slab.entries())
    for (std::int64_t i = e.offset; i < e.offset + e.value.numel(); ++i)
      EXPECT_NEAR(p1[i], p0[i] - 0.01 * (g[i] > 0 ? 1 : -1), 1e-15) << "element " << i;
}

TEST(AdamW, MatchesTheReferenceOverStepsWithWeightDecayAndChangingLr) {
  for (DType dtype : {DType::f64, DType::f32}) {
    SCOPED_TRACE(dtype_name(dtype));
    ParameterSlab slab(make_params(dtype));
    AdamWConfig cfg{1e-3, 0.9, 0.999, 1e-8, 0.1};
    AdamW opt(slab, cfg);
    ReferenceAdamW ref{cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, values_of(slab.values()),
                       std::vector<double>(slab.slab_numel()), std::vector<double>(slab.slab_numel())};
    for (int step = 0; step < 6; ++step) {
      double lr = 1e-3 * (step + 1) / 4.0;  // a warm-up ramp set by the caller
      opt.set_lr(lr);
      ref.lr = lr;
      ref.step(set_gradients(slab, step));
      opt.step();
    }
    EXPECT_EQ(opt.step_count(), 6);
    const double tol = dtype == DType::f64 ? 1e-13 : 2e-6;
    std::vector<double> p = values_of(slab.values()), m = values_of(opt.exp_avg()), v = values_of(opt.exp_avg_sq());
    for (std::size_t i = 0; i < p.size(); ++i) {
      EXPECT_NEAR(p[i], ref.p[i], tol * (1 + std::abs(ref.p[i]))) << "p at " << i;
      EXPECT_NEAR(m[i], ref.m[i], tol * (1 + std::abs(ref.m[i]))) << "m at " << i;
      EXPECT_NEAR(v[i], ref.v[i], tol * (1 + std::abs(ref.v[i]))) << "v at " << i;
    }
  }
}

TEST(AdamW, SavedStateResumesExactly) {
  ParameterSlab a(make_params()), b(make_params());
  AdamW opt_a(a, {1e-2, 0.9, 0.999, 1e-8, 0.01});
  for (int s = 0; s < 3; ++s) set_gradients(a, s), opt_a.step();
  // Resume: copy values, load the optimizer state, then take the same step on both.
  Tensor b_values = b.values();
  b_values.copy_from(a.values());
  AdamW opt_b(b, opt_a.config());
  opt_b.load_state(opt_a.step_count(), opt_a.exp_avg().clone(), opt_a.exp_avg_sq().clone());
  set_gradients(a, 3), opt_a.step();
  set_gradients(b, 3), opt_b.step();
  EXPECT_EQ(values_of(a.values()), values_of(b.values()));
  EXPECT_EQ(opt_b.step_count(), 4);
}

TEST(AdamW, RejectsBadHyperparametersAndState) {
  ParameterSlab slab(make_params());
  auto rejects = [&](double AdamWConfig::*field, double value) {
    AdamWConfig cfg;
    cfg.*field = value;
    EXPECT_THROW(AdamW(slab, cfg), ValueError) << "value " << value;
  };
  rejects(&AdamWConfig::lr, -1.0);
  rejects(&AdamWConfig::beta1, 1.0);
  rejects(&AdamWConfig::beta2, 1.5);
  rejects(&AdamWConfig::eps, 0.0);  // a zero gradient would give 0 / 0
  rejects(&AdamWConfig::weight_decay, -0.1);
  AdamW opt(slab);
  EXPECT_THROW(opt.set_lr(std::nan("")), ValueError);
  Tensor wrong = Tensor::zeros({slab.slab_numel() + 1}, DType::f64);
  EXPECT_THROW(opt.load_state(1, wrong, wrong), ValueError);
  ParameterSlab empty;
  EXPECT_THROW(AdamW{empty}, ValueError);
}

// --- gradient-norm clipping ------------------------------------------------------------------

// Two parameters with gradients (3, 4) and (12): ||g|| = sqrt(9 + 16 + 144) = 13.
ParameterSlab slab_with_gradients_3_4_12() {
  ParameterSlab slab(NamedTensors{{"a", Tensor::zeros({2}, DType::f64)}, {"b", Tensor::zeros({1}, DType::f64)}});
  Tensor ga = slab.at("a").grad(), gb = slab.at("b").grad();
  ga.copy_from(Tensor::from_vector(std::vector<double>{3, 4}, {2}));
  gb.copy_from(Tensor::from_vector(std::vector<double>{12}, {1}));
  return slab;
}

TEST(ClipGradNorm, LeavesGradientsAloneBelowTheLimit) {
  ParameterSlab slab = slab_with_gradients_3_4_12();
  EXPECT_DOUBLE_EQ(grad_norm(slab), 13.0);
  EXPECT_DOUBLE_EQ(clip_grad_norm(slab, 20.0), 13.0);
  EXPECT_EQ(values_of(slab.at("a").grad()), (std::vector<double>{3, 4}));
  EXPECT_EQ(values_of(slab.at("b").grad()), (std::vector<double>{12}));
}

TEST(ClipGradNorm, ScalesToTheLimitAbove) {
  ParameterSlab slab = slab_with_gradients_3_4_12();
  EXPECT_DOUBLE_EQ(clip_grad_norm(slab, 1.0), 13.0);  // the norm before clipping
  const double c = 1.0 / (13.0 + 1e-6);
  std::vector<double> a = values_of(slab.at("a").grad()), b = values_of(slab.at("b").grad());
  EXPECT_DOUBLE_EQ(a[0], 3 * c);
  EXPECT_DOUBLE_EQ(a[1], 4 * c);
  EXPECT_DOUBLE_EQ(b[0], 12 * c);
  EXPECT_NEAR(grad_norm(slab), 1.0, 1e-7);
}

TEST(ClipGradNorm, ReturnsNonFiniteNormsAndLeavesGradientsUntouched) {
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    ParameterSlab slab = slab_with_gradients_3_4_12();
    Tensor gb = slab.at("b").grad();
    gb.copy_from(Tensor::from_vector(std::vector<double>{bad}, {1}));
    double norm = clip_grad_norm(slab, 1.0);
    EXPECT_FALSE(std::isfinite(norm));
    EXPECT_EQ(std::isnan(norm), std::isnan(bad));
    EXPECT_EQ(values_of(slab.at("a").grad()), (std::vector<double>{3, 4}));
  }
  ParameterSlab slab = slab_with_gradients_3_4_12();
  EXPECT_THROW(clip_grad_norm(slab, 0.0), ValueError);
}

// --- EMA -----------------------------------------------------------------------------------------

TEST(Ema, WarmupDecayValues) {
  EXPECT_DOUBLE_EQ(Ema::warmup_decay(0.9999, 0), 0.1);         // (1 + 0) / (10 + 0)
  EXPECT_DOUBLE_EQ(Ema::warmup_decay(0.9999, 1), 2.0 / 11.0);  // (1 + 1) / (10 + 1)
  EXPECT_DOUBLE_EQ(Ema::warmup_decay(0.9999, 10), 0.55);       // 11 / 20
  EXPECT_DOUBLE_EQ(Ema::warmup_decay(0.9999, 80), 0.9);        // 81 / 90
  EXPECT_DOUBLE_EQ(Ema::warmup_decay(0.9999, 1000000), 0.9999);
  EXPECT_DOUBLE_EQ(Ema::warmup_decay(0.5, 10), 0.5);  // capped by the rate
  EXPECT_THROW(Ema::warmup_decay(0.9, -1), ValueError);
}

TEST(Ema, FollowsTheFormulaAndConvergesToFixedWeights) {
  ParameterSlab slab(make_params());
  std::vector<double> p0 = values_of(slab.values());
  Ema ema(slab, 0.999);
  EXPECT_EQ(values_of(ema.values()), p0);
  // Move the weights to a fixed target; the gap then shrinks by exactly prod_n decay_n.
  Tensor target = random_tensor({slab.slab_numel()}, 42);
  Tensor live = slab.values();
  live.copy_from(target);
  std::vector<double> p = values_of(target);
  EXPECT_DOUBLE_EQ(ema.update(slab, 0), 0.1);
  std::vector<double> e1 = values_of(ema.values());
  for (std::size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(e1[i], 0.1 * p0[i] + 0.9 * p[i], 1e-15);
  double gap = 0.1;
  for (int n = 1; n < 300; ++n) gap *= ema.update(slab, n);
  EXPECT_LT(gap, 1e-3);  // warmed up: the initial weights are forgotten within a few hundred steps
  std::vector<double> e = values_of(ema.values());
  for (std::size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(e[i], p[i] + gap * (p0[i] - p[i]), 1e-12);
}

TEST(Ema, CopyToAndSwap) {
  ParameterSlab slab(make_params());
  std::vector<double> p0 = values_of(slab.values());
  Ema ema(slab, 0.9);
  Tensor live = slab.values();
  live.copy_from(random_tensor({slab.slab_numel()}, 5));
  std::vector<double> p1 = values_of(slab.values());
  ema.swap(slab);  // sample with the EMA weights ...
  EXPECT_EQ(values_of(slab.values()), p0);
  const std::int64_t off = slab.entries()[1].offset;  // the model's handles see the EMA weights
  EXPECT_EQ(values_of(slab.at("conv.bias")), std::vector<double>(p0.begin() + off, p0.begin() + off + 5));
  ema.swap(slab);  // ... and back
  EXPECT_EQ(values_of(slab.values()), p1);
  EXPECT_EQ(values_of(ema.values()), p0);
  ema.copy_to(slab);
  EXPECT_EQ(values_of(slab.values()), p0);
  EXPECT_THROW(ema.load(Tensor::zeros({3}, DType::f64)), ValueError);
}

}  // namespace
}  // namespace ddpm
