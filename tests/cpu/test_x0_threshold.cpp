// Dynamic thresholding of the x_0 estimate (models/diffusion/x0_threshold.h, Imagen sec. 2.3)
// and its use by the samplers.
//
// References computed here, apart from the code under test: the quantile by a full sort in
// double and linear interpolation between the two neighbouring order statistics (what
// torch.quantile defines); s = clamp(q, 1, S) and clip(x, -s, s) / s written out per element;
// one DDPM ancestral step written out from the schedule's alpha_bar (posterior coefficients
// of DDPM eq. 7) around the same tiny UNet and the same Philox draws.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/plms.h"
#include "models/diffusion/sampler.h"
#include "models/diffusion/x0_threshold.h"
#include "models/run/sample_run.h"
#include "models/unet/unet.h"
#include "support/temp_dir.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The p-quantile by sorting: v sorted, r = p (n - 1), lerp between v[floor r] and v[ceil r].
double sorted_quantile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double r = p * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(r));
  const auto hi = static_cast<std::size_t>(std::ceil(r));
  return v[lo] + (r - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

// Imagen's rule for one sample, element by element.
std::vector<double> threshold_row(const std::vector<double>& row, double p, double max_scale) {
  std::vector<double> mags(row.size());
  for (std::size_t j = 0; j < row.size(); ++j) mags[j] = std::fabs(row[j]);
  const double s = std::min(std::max(sorted_quantile(mags, p), 1.0), max_scale);
  std::vector<double> out(row.size());
  for (std::size_t j = 0; j < row.size(); ++j) out[j] = std::min(std::max(row[j], -s), s) / s;
  return out;
}

std::vector<double> random_values(std::size_t n, double spread, std::uint64_t seed) {
  Generator g(seed);
  std::vector<double> v = randn({static_cast<std::int64_t>(n)}, g, Device::cpu(), DType::f64).to_double_vector();
  for (double& x : v) x *= spread;
  return v;
}

TEST(X0Threshold, QuantileMatchesSortingWithLinearInterpolation) {
  for (std::size_t n : {1, 2, 3, 7, 64, 301}) {
    std::vector<double> v = random_values(n, 2.0, 10 + n);
    // Ties: round half of the values to a coarse grid, so equal order statistics sit side by side.
    for (std::size_t j = 0; j < n; j += 2) v[j] = std::round(v[j] * 2.0) / 2.0;
    for (double p : {0.0, 0.001, 0.25, 0.5, 0.9, 0.995, 1.0}) {
      std::vector<double> work = v;
      const double got = quantile_linear(work, p);
      const double want = sorted_quantile(v, p);
      EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, std::fabs(want))) << "n = " << n << ", p = " << p;
    }
  }
  // A closed form: the median of 1, 2, 3, 4 lies halfway between 2 and 3; p = 0.9 at r = 2.7.
  std::vector<double> four{4.0, 1.0, 3.0, 2.0};
  EXPECT_DOUBLE_EQ(quantile_linear(four, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(quantile_linear(four, 0.9), 3.7);
  std::vector<double> one{-0.25};
  EXPECT_EQ(quantile_linear(one, 0.995), -0.25);  // N = 1: the element itself, for any p
  std::vector<double> with_nan{1.0, std::nan(""), 2.0};
  EXPECT_TRUE(std::isnan(quantile_linear(with_nan, 0.5)));
  std::vector<double> none;
  EXPECT_THROW(quantile_linear(none, 0.5), ValueError);
}

TEST(X0Threshold, DynamicMatchesTheElementwiseRulePerSample) {
  // [3, 2, 2, 3]: a sample well outside [-1, 1], one at the edge, one inside.
  const Shape shape{3, 2, 2, 3};
  std::vector<double> v = random_values(36, 1.0, 5);
  for (std::size_t j = 0; j < 12; ++j) v[j] *= 4.0;
  for (std::size_t j = 12; j < 24; ++j) v[j] = std::round(v[j] * 4.0) / 4.0;  // ties
  for (std::size_t j = 24; j < 36; ++j) v[j] = 0.9 * std::tanh(v[j]);
  for (DType dtype : {DType::f64, DType::f32}) {
    const Tensor x = Tensor::from_vector(v, shape, dtype);
    const std::vector<double> xs = x.to_double_vector();  // the values as stored
    for (const auto& [p, S] : {std::pair{0.995, kInf}, {0.7, kInf}, {0.9, 1.5}, {1e-3, kInf}}) {
      const std::vector<double> got = apply_x0_threshold(x, X0Threshold::dynamic(p, S)).to_double_vector();
      const double tol = dtype == DType::f64 ? 1e-14 : 1e-6;
      for (std::size_t n = 0; n < 3; ++n) {
        const std::vector<double> row(xs.begin() + 12 * n, xs.begin() + 12 * (n + 1));
        const std::vector<double> want = threshold_row(row, p, S);
        for (std::size_t j = 0; j < 12; ++j)
          EXPECT_NEAR(got[12 * n + j], want[j], tol) << "sample " << n << ", element " << j << ", p = " << p;
      }
    }
  }
}

TEST(X0Threshold, UnitScaleLeavesAnInRangeEstimateUnchangedAndIsTheStaticClamp) {
  std::vector<double> v = random_values(48, 1.0, 6);
  for (double& x : v) x = std::tanh(x);  // |x| < 1 everywhere
  const Tensor x = Tensor::from_vector(v, {4, 12}, DType::f32);
  const X0Threshold dynamic = X0Threshold::dynamic(0.995);
  EXPECT_EQ(apply_x0_threshold(x, dynamic).to_vector(), x.to_vector());
  // A few outliers that do not move the 0.9 percentile past 1: s = 1, so the result is the
  // static clamp bit for bit (outliers on +-1, the rest untouched).
  v[0] = 7.0, v[13] = -3.0, v[47] = 1.5;
  const Tensor y = Tensor::from_vector(v, {4, 12}, DType::f32);
  const std::vector<float> got = apply_x0_threshold(y, X0Threshold::dynamic(0.9)).to_vector();
  EXPECT_EQ(got, clamp(y, -1.0, 1.0).to_vector());
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_EQ(got[13], -1.0f);
  // S = 1 caps every s at 1: the static clamp whatever the data.
  const Tensor wide = Tensor::from_vector(random_values(48, 5.0, 7), {4, 12}, DType::f64);
  EXPECT_EQ(apply_x0_threshold(wide, X0Threshold::dynamic(0.995, 1.0)).to_double_vector(),
            clamp(wide, -1.0, 1.0).to_double_vector());
  EXPECT_EQ(apply_x0_threshold(wide, X0Threshold::static_clip()).to_double_vector(),
            clamp(wide, -1.0, 1.0).to_double_vector());
  EXPECT_EQ(apply_x0_threshold(wide, X0Threshold::none()).to_double_vector(), wide.to_double_vector());
}

TEST(X0Threshold, FullPercentileWithoutCapDividesByTheLargestMagnitude) {
  const std::vector<double> v = random_values(60, 3.0, 8);
  const Tensor x = Tensor::from_vector(v, {3, 4, 5}, DType::f64);
  const std::vector<double> got = apply_x0_threshold(x, X0Threshold::dynamic(1.0, 1e300)).to_double_vector();
  for (std::size_t n = 0; n < 3; ++n) {
    double m = 0;
    for (std::size_t j = 0; j < 20; ++j) m = std::max(m, std::fabs(v[20 * n + j]));
    ASSERT_GT(m, 1.0);
    for (std::size_t j = 0; j < 20; ++j) EXPECT_NEAR(got[20 * n + j], v[20 * n + j] / m, 1e-15);
  }
  // With a cap S below max |x|: clip at S, then divide by S.
  const std::vector<double> capped = apply_x0_threshold(x, X0Threshold::dynamic(1.0, 1.25)).to_double_vector();
  for (std::size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(capped[i], std::clamp(v[i], -1.25, 1.25) / 1.25, 1e-15);
}

TEST(X0Threshold, SamplesAreThresholdedIndependently) {
  const std::vector<double> v = random_values(3 * 16, 2.0, 9);
  const Tensor batch = Tensor::from_vector(v, {3, 4, 4, 1}, DType::f32);
  const X0Threshold policy = X0Threshold::dynamic(0.8);
  const std::vector<float> together = apply_x0_threshold(batch, policy).to_vector();
  for (std::int64_t n = 0; n < 3; ++n) {
    const std::vector<double> row(v.begin() + 16 * n, v.begin() + 16 * (n + 1));
    const std::vector<float> alone =
        apply_x0_threshold(Tensor::from_vector(row, {1, 4, 4, 1}, DType::f32), policy).to_vector();
    for (std::size_t j = 0; j < 16; ++j) EXPECT_EQ(together[16 * n + j], alone[j]) << "sample " << n;
  }
  // Blowing up sample 2 changes sample 2 only.
  std::vector<double> w = v;
  for (std::size_t j = 32; j < 48; ++j) w[j] *= 10.0;
  const std::vector<float> changed = apply_x0_threshold(Tensor::from_vector(w, {3, 4, 4, 1}, DType::f32), policy)
                                         .to_vector();
  for (std::size_t j = 0; j < 32; ++j) EXPECT_EQ(changed[j], together[j]);
}

TEST(X0Threshold, RefusesPercentilesAndCapsOutOfRange) {
  const Tensor x = Tensor::from_vector(random_values(8, 2.0, 1), {2, 4}, DType::f64);
  for (double p : {0.0, -0.1, 1.5, std::nan("")})
    testing::expect_value_error([&] { apply_x0_threshold(x, X0Threshold::dynamic(p)); }, "(0, 1]");
  testing::expect_value_error([&] { apply_x0_threshold(x, X0Threshold::dynamic(0.9, 0.5)); }, ">= 1");
}

TEST(X0Threshold, SamplerConfigResolvesThePolicy) {
  SamplerConfig c;
  EXPECT_EQ(resolve_x0_threshold(c).kind, X0Threshold::Kind::static_clip);  // DDPM's default
  c.kind = SamplerConfig::Kind::heun;
  EXPECT_EQ(resolve_x0_threshold(c).kind, X0Threshold::Kind::none);  // EDM does not clip
  c.dynamic_threshold = 0.95;
  c.threshold_max = 2.0;
  const X0Threshold d = resolve_x0_threshold(c);  // asked for explicitly: Heun too
  EXPECT_EQ(d.kind, X0Threshold::Kind::dynamic);
  EXPECT_EQ(d.percentile, 0.95);
  EXPECT_EQ(d.max_scale, 2.0);
  c.clip_x0 = false;  // no clip at all (what the ODE paths set on copied configs)
  EXPECT_EQ(resolve_x0_threshold(c).kind, X0Threshold::Kind::none);
  c.clip_x0 = true;
  c.dynamic_threshold = 1.2;
  testing::expect_value_error([&] { resolve_x0_threshold(c); }, "(0, 1]");
  c.dynamic_threshold = 0.0;
  testing::expect_value_error([&] { resolve_x0_threshold(c); }, "needs dynamic_threshold");
}

// --- The samplers ----------------------------------------------------------------------

// A tiny UNet with every weight perturbed (conv_out starts at zero), called as an eps- or
// x_0-network: its x_0 estimates lie far outside [-1, 1] at the noisy steps.
struct TinyNet {
  std::unique_ptr<unet::UNet> net;
  TinyNet() {
    Generator g(21);
    net = std::make_unique<unet::UNet>(testing::tiny_unet_config(8, 3), g, Device::cpu());
    for (const auto& [name, t] : net->named_parameters()) {
      const std::vector<float> noise = randn(t.shape(), g).to_vector();
      float* p = t.data<float>();
      for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.2f * noise[static_cast<std::size_t>(i)];
    }
  }
  DenoiseFn fn() const {
    return [this](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
      return net->forward(x, t, y, nn::Context{});
    };
  }
};

TEST(X0ThresholdSampler, FirstDdpmStepMatchesAReferenceLoop) {
  const DiffusionSchedule base(linear_betas(50));
  const TinyNet tiny;
  const Shape shape{2, 8, 8, 3};
  SamplerConfig config;  // DDPM, fixed-small variance, respaced to 5 steps
  config.respacing = "5";
  config.dynamic_threshold = 0.9;
  std::vector<double> step_x, step_x0;
  const StepCallback first = [&](const StepInfo& info) {
    if (info.index != info.num_steps - 1) return;
    step_x = info.x.to_double_vector();
    step_x0 = info.pred_x0.to_double_vector();
  };
  Generator gen(3);
  sample(base, tiny.fn(), shape, {}, config, gen, Device::cpu(), first);

  // The reference: x_T and z replayed from the same seed, eps from the same network.
  const RespacedSchedule rs = sampling_process(base, "5");
  const std::size_t i = rs.timestep_map.size() - 1;
  const double abar = rs.schedule.alphas_cumprod[i], abar_prev = rs.schedule.alphas_cumprod_prev[i];
  const double beta = 1.0 - abar / abar_prev;
  Generator replay(3);
  const Tensor x_T = randn(shape, replay, Device::cpu(), DType::f32);
  const Tensor z = randn(shape, replay, Device::cpu(), DType::f32);
  const std::vector<double> eps =
      tiny.net->forward(x_T, {static_cast<double>(rs.timestep_map[i]), static_cast<double>(rs.timestep_map[i])}, {},
                        nn::Context{})
          .to_double_vector();
  const std::vector<double> xv = x_T.to_double_vector(), zv = z.to_double_vector();
  const std::size_t D = xv.size() / 2;
  bool squeezed = false;  // at least one sample with s > 1, or the test would not test
  for (std::size_t n = 0; n < 2; ++n) {
    std::vector<double> x0(D);
    for (std::size_t j = 0; j < D; ++j)  // x_0^ = (x - sqrt(1 - abar) eps) / sqrt(abar)
      x0[j] = (xv[n * D + j] - std::sqrt(1.0 - abar) * eps[n * D + j]) / std::sqrt(abar);
    std::vector<double> mags(D);
    for (std::size_t j = 0; j < D; ++j) mags[j] = std::fabs(x0[j]);
    squeezed = squeezed || sorted_quantile(mags, 0.9) > 1.0;
    const std::vector<double> thr = threshold_row(x0, 0.9, kInf);
    // DDPM eq. 7: mu~ = coef1 x_0 + coef2 x_t, beta~ = beta (1 - abar_prev) / (1 - abar).
    const double coef1 = beta * std::sqrt(abar_prev) / (1.0 - abar);
    const double coef2 = (1.0 - abar_prev) * std::sqrt(1.0 - beta) / (1.0 - abar);
    const double sigma = std::sqrt(beta * (1.0 - abar_prev) / (1.0 - abar));
    for (std::size_t j = 0; j < D; ++j) {
      const std::size_t k = n * D + j;
      EXPECT_NEAR(step_x0[k], thr[j], 2e-5) << "x_0^ of sample " << n << ", element " << j;
      EXPECT_NEAR(step_x[k], coef1 * thr[j] + coef2 * xv[k] + sigma * zv[k], 5e-5)
          << "x_{i-1} of sample " << n << ", element " << j;
    }
  }
  EXPECT_TRUE(squeezed);
}

// An x_0-network whose sample 0 stays inside [-1, 1] but for two outliers (its 0.9 percentile
// is below 1) and whose sample 1 is three times x: dynamic thresholding must leave sample 0
// exactly as static clipping does, and change sample 1.
Tensor two_regimes(const Tensor& x) {
  std::vector<double> v = x.to_double_vector();
  const std::size_t D = v.size() / static_cast<std::size_t>(x.dim(0));
  for (std::size_t j = 0; j < D; ++j) v[j] = 0.8 * std::tanh(v[j]);
  v[0] = 4.0, v[D - 1] = -2.5;
  for (std::size_t j = D; j < 2 * D; ++j) v[j] *= 3.0;
  return Tensor::from_vector(v, x.shape(), x.dtype());
}

void expect_only_the_wide_sample_changes(const Tensor& fixed, const Tensor& dynamic, const char* who) {
  const std::vector<double> a = fixed.to_double_vector(), b = dynamic.to_double_vector();
  const std::size_t D = a.size() / 2;
  for (std::size_t j = 0; j < D; ++j) ASSERT_EQ(a[j], b[j]) << who << ": the in-range sample changed at " << j;
  double diff = 0;
  for (std::size_t j = D; j < 2 * D; ++j) diff = std::max(diff, std::fabs(a[j] - b[j]));
  EXPECT_GT(diff, 1e-3) << who << ": dynamic thresholding left the out-of-range sample as static clipping did";
}

TEST(X0ThresholdSampler, DynamicDiffersFromStaticOnlyWhereTheEstimateLeavesTheRange) {
  const DiffusionSchedule base(linear_betas(50));
  const DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return two_regimes(x);
  };
  const Shape shape{2, 4, 4, 3};
  SamplerConfig fixed;
  fixed.mean_type = ModelMeanType::x0;
  fixed.respacing = "6";
  fixed.clip_x0 = true;
  SamplerConfig dynamic = fixed;
  dynamic.dynamic_threshold = 0.9;
  const auto run = [&](SamplerConfig c, SamplerConfig::Kind kind, bool plms) {
    c.kind = kind;
    if (kind == SamplerConfig::Kind::ddim) c.respacing = "ddim5";
    if (kind == SamplerConfig::Kind::heun) c.heun_steps = 4;
    Generator gen(4);
    return plms ? plms_sample(base, net, shape, {}, c, gen) : sample(base, net, shape, {}, c, gen);
  };
  using K = SamplerConfig::Kind;
  expect_only_the_wide_sample_changes(run(fixed, K::ddpm, false), run(dynamic, K::ddpm, false), "ddpm");
  expect_only_the_wide_sample_changes(run(fixed, K::ddim, false), run(dynamic, K::ddim, false), "ddim");
  expect_only_the_wide_sample_changes(run(fixed, K::ddim, true), run(dynamic, K::ddim, true), "plms");
  expect_only_the_wide_sample_changes(run(fixed, K::heun, false), run(dynamic, K::heun, false), "heun");
  // Heun's solver family shares the VP denoiser: DPM-Solver++(2M) on the same levels.
  SamplerConfig heun_fixed = fixed, heun_dynamic = dynamic;
  heun_fixed.kind = heun_dynamic.kind = K::heun;
  heun_fixed.heun_steps = heun_dynamic.heun_steps = 4;
  Generator g1(4), g2(4);
  expect_only_the_wide_sample_changes(
      karras_sample(base, net, shape, {}, heun_fixed, g1, Device::cpu(), {}, KarrasSolver::dpmpp_2m),
      karras_sample(base, net, shape, {}, heun_dynamic, g2, Device::cpu(), {}, KarrasSolver::dpmpp_2m), "dpm++2m");
}

TEST(X0ThresholdSampler, EdmDenoiserIsThresholded) {
  // EDM's D = c_skip x + c_out F: with F = 3 x the estimate leaves [-1, 1] at large sigma.
  const DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return scale(x, 3.0);
  };
  SamplerConfig c;
  c.kind = SamplerConfig::Kind::heun;
  c.heun_steps = 4;
  const Tensor x = Tensor::from_vector(random_values(2 * 12, 1.0, 12), {2, 2, 2, 3}, DType::f32);
  const EdmConfig edm;
  const Tensor raw = edm_denoise(net, edm, c, x, 5.0, {});  // Heun's default: unclipped
  c.clip_x0 = true;
  EXPECT_EQ(edm_denoise(net, edm, c, x, 5.0, {}).to_vector(), clamp(raw, -1.0, 1.0).to_vector());
  c.dynamic_threshold = 0.9;
  const std::vector<float> got = edm_denoise(net, edm, c, x, 5.0, {}).to_vector();
  const std::vector<double> r = raw.to_double_vector();
  for (std::size_t n = 0; n < 2; ++n) {
    const std::vector<double> want = threshold_row({r.begin() + 12 * n, r.begin() + 12 * (n + 1)}, 0.9, kInf);
    for (std::size_t j = 0; j < 12; ++j) EXPECT_NEAR(got[12 * n + j], want[j], 1e-6);
  }
}

TEST(X0ThresholdSampler, SampleFlagsParseAndRefuse) {
  run::SampleOptions o;
  CLI::App app;
  run::add_sample_flags(app, o);
  const std::string out = testing::temp_path("x0_threshold_flags");
  app.parse("--checkpoint ckpt --dynamic-threshold 0.95 --threshold-max 3 --out " + out, /*program_name_included=*/false);
  EXPECT_EQ(o.dynamic_threshold, 0.95);
  EXPECT_EQ(o.threshold_max, 3.0);
  EXPECT_NO_THROW(run::check_sample_options(o));
  const auto refusal = [&](auto change, const std::string& fragment) {
    run::SampleOptions b = o;
    change(b);
    testing::expect_value_error([&] { run::check_sample_options(b); }, fragment);
  };
  refusal([](run::SampleOptions& b) { b.dynamic_threshold = 1.5; }, "--dynamic-threshold must be");
  refusal([](run::SampleOptions& b) { b.dynamic_threshold = -0.5; }, "(0, 1]");
  refusal([](run::SampleOptions& b) { b.threshold_max = 0.5; }, "--threshold-max must be >= 1");
  refusal([](run::SampleOptions& b) { b.dynamic_threshold = 0; }, "needs --dynamic-threshold");
  refusal([](run::SampleOptions& b) { b.clip_x0 = "false"; }, "--clip-x0 false");
}

}  // namespace
}  // namespace ddpm::diffusion
