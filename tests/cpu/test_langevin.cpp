// The Langevin corrector of predictor-corrector sampling (models/diffusion/langevin.h).
//
// Oracle. Data x_0 ~ N(0, s^2 I): x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is N(0, V I) with
// V = abar s^2 + 1 - abar, and the optimal noise prediction is eps*(x_t) = sqrt(1 - abar) x_t / V,
// so the score is exactly -x_t / V. Langevin dynamics with that score must then keep N(0, V)
// (up to its discretisation bias, computed below) and pull any other start towards it.
#include <cmath>
#include <filesystem>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/langevin.h"
#include "models/diffusion/sampler.h"
#include "models/run/sample_run.h"
#include "support/tiny_model.h"
#include "support/temp_dir.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

constexpr double kDataStd = 0.5;

// The oracle eps-network for N(0, kDataStd^2) data; counts its calls when asked.
DenoiseFn gaussian_oracle(const DiffusionSchedule& s, int* calls = nullptr) {
  return [&s, calls](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    if (calls) ++*calls;
    std::vector<double> xv = x.to_double_vector();
    const std::size_t per = xv.size() / t.size();
    for (std::size_t i = 0; i < t.size(); ++i) {
      const double ab = s.alphas_cumprod[static_cast<std::size_t>(t[i])];
      const double V = ab * kDataStd * kDataStd + 1.0 - ab;
      for (std::size_t j = i * per; j < (i + 1) * per; ++j) xv[j] *= std::sqrt(1.0 - ab) / V;
    }
    return Tensor::from_vector(xv, x.shape(), x.dtype());
  };
}

double variance_of(const std::vector<double>& v) {
  double m = 0, q = 0;
  for (double a : v) m += a;
  m /= static_cast<double>(v.size());
  for (double a : v) q += (a - m) * (a - m);
  return q / static_cast<double>(v.size() - 1);
}

SamplerConfig corrector_config(std::int64_t steps, double snr) {
  SamplerConfig c;
  c.dtype = DType::f64;
  c.corrector_steps = steps;
  c.snr = snr;
  return c;
}

TEST(Langevin, StepSizeIsTwoAlphaTimesSquaredSnrNormRatioPerSample) {
  // Two samples of three elements; the norms by hand.
  const Tensor score = Tensor::from_vector({3, 4, 0, 1, 1, 1}, {2, 1, 1, 3}, DType::f64);
  const Tensor z = Tensor::from_vector({1, 2, 2, 2, 0, 0}, {2, 1, 1, 3}, DType::f64);
  const double snr = 0.2, alpha = 0.9;
  const std::vector<double> got = langevin_step_size(score, z, snr, alpha).to_double_vector();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NEAR(got[0], 2 * alpha * std::pow(snr * 3.0 / 5.0, 2), 1e-15);              // ||z|| 3, ||s|| 5
  EXPECT_NEAR(got[1], 2 * alpha * std::pow(snr * 2.0 / std::sqrt(3.0), 2), 1e-15);  // ||z|| 2, ||s|| sqrt 3
}

TEST(Langevin, OneStepIsXPlusEpsScorePlusNoise) {
  // A second code path in double: the same z (a copy of the generator), the step by hand.
  const DiffusionSchedule s(linear_betas(100));
  const RespacedSchedule process = sampling_process(s, "");
  const std::int64_t i = 40;
  Generator data(7);
  const Tensor x = randn({3, 2, 2, 1}, data, Device::cpu(), DType::f64);
  const SamplerConfig cfg = corrector_config(1, 0.16);
  Generator gen(11), copy = gen;
  const std::vector<double> got =
      langevin_correct(process, gaussian_oracle(s), cfg, x, i, {}, gen).to_double_vector();

  const std::vector<double> xv = x.to_double_vector();
  const std::vector<double> zv = randn(x.shape(), copy, Device::cpu(), DType::f64).to_double_vector();
  const double ab = s.alphas_cumprod[i], V = ab * kDataStd * kDataStd + 1 - ab, alpha = 1 - s.betas[i];
  for (std::size_t n = 0; n < 3; ++n) {
    double ss = 0, zz = 0;
    for (std::size_t j = 4 * n; j < 4 * n + 4; ++j) {
      ss += (xv[j] / V) * (xv[j] / V);
      zz += zv[j] * zv[j];
    }
    const double eps = 2 * alpha * cfg.snr * cfg.snr * zz / ss;
    for (std::size_t j = 4 * n; j < 4 * n + 4; ++j)
      EXPECT_NEAR(got[j], xv[j] + eps * (-xv[j] / V) + std::sqrt(2 * eps) * zv[j], 1e-12) << j;
  }
  EXPECT_EQ(gen.offset(), copy.offset()) << "one step draws exactly one z";
}

TEST(Langevin, ZeroStepsReturnXAndDrawNothing) {
  const DiffusionSchedule s(linear_betas(50));
  const RespacedSchedule process = sampling_process(s, "");
  Generator data(1), gen(2);
  const Tensor x = randn({2, 3}, data, Device::cpu(), DType::f64);
  int calls = 0;
  const Tensor y = langevin_correct(process, gaussian_oracle(s, &calls), corrector_config(0, 0.16), x, 10, {}, gen);
  EXPECT_EQ(y.to_double_vector(), x.to_double_vector());
  EXPECT_EQ(gen.offset(), 0u);
  EXPECT_EQ(calls, 0);
}

// Exact score -x / V: for D elements ||z||^2 ~ D and ||s||^2 ~ D v / V^2 when x ~ N(0, v),
// so a step takes eps ~ 2 alpha r^2 V^2 / v and maps the variance to
//   v' = (1 - eps / V)^2 v + 2 eps.
// At v = V this has the fixed point v* = 2 eps / (1 - (1 - eps / V)^2): V plus the
// discretisation bias (~2.7% at r = 0.16). The test follows that recurrence from V and from 4 V.
double predicted_variance(double v, double V, double alpha, double snr, int steps) {
  for (int k = 0; k < steps; ++k) {
    const double eps = 2 * alpha * snr * snr * V * V / v;
    v = (1 - eps / V) * (1 - eps / V) * v + 2 * eps;
  }
  return v;
}

TEST(Langevin, KeepsTheMarginalAndPullsAWrongStartTowardsIt) {
  const DiffusionSchedule s(linear_betas(200));
  const RespacedSchedule process = sampling_process(s, "");
  const std::int64_t i = 80, n = 100, D = 256;
  const double ab = s.alphas_cumprod[i], V = ab * kDataStd * kDataStd + 1 - ab;
  const double snr = 0.16, alpha = 1 - s.betas[i];

  Generator data(3);
  const Tensor at_marginal = scale(randn({n, D}, data, Device::cpu(), DType::f64), std::sqrt(V));
  const Tensor too_wide = scale(randn({n, D}, data, Device::cpu(), DType::f64), 2 * std::sqrt(V));
  Generator g1(5), g2(6);
  const double kept = variance_of(
      langevin_correct(process, gaussian_oracle(s), corrector_config(20, snr), at_marginal, i, {}, g1)
          .to_double_vector());
  const double pulled = variance_of(
      langevin_correct(process, gaussian_oracle(s), corrector_config(100, snr), too_wide, i, {}, g2)
          .to_double_vector());
  const double want_kept = predicted_variance(V, V, alpha, snr, 20);
  const double want_pulled = predicted_variance(4 * V, V, alpha, snr, 100);
  ASSERT_LT(want_pulled / V, 1.2) << "100 steps bring 4 V close to V";
  // 25,600 values: the variance's relative standard error is ~0.9%.
  EXPECT_NEAR(kept / want_kept, 1.0, 0.04);
  EXPECT_NEAR(pulled / want_pulled, 1.0, 0.04) << "started at 4 V";
  EXPECT_NEAR(kept / V, 1.0, 0.06) << "the marginal is kept up to the bias";
}

// A coarse sampler (20 levels) on the oracle ends too narrow: fixed-small DDPM and DDIM
// both lose variance at this step count. One corrector step per level (Song et al.'s
// default, snr 0.16) must bring the spread much closer to the data's, at 2 calls per level.
TEST(Langevin, OneCorrectorStepPerLevelRepairsACoarseSamplersSpread) {
  const DiffusionSchedule s(linear_betas(200));
  for (auto kind : {SamplerConfig::Kind::ddpm, SamplerConfig::Kind::ddim}) {
    double error[2];
    for (std::int64_t m : {0, 1}) {
      SamplerConfig cfg = corrector_config(m, 0.16);
      cfg.kind = kind;
      cfg.respacing = kind == SamplerConfig::Kind::ddim ? "ddim20" : "20";
      cfg.clip_x0 = false;
      int calls = 0;
      Generator gen(9);
      const std::vector<double> x =
          sample(s, gaussian_oracle(s, &calls), {400, 8}, {}, cfg, gen, Device::cpu()).to_double_vector();
      EXPECT_EQ(calls, 20 * (1 + m)) << sampler_kind_name(kind);
      error[m] = std::abs(std::sqrt(variance_of(x)) - kDataStd);  // std's Monte-Carlo error ~0.006
    }
    EXPECT_GT(error[0], 0.05) << sampler_kind_name(kind) << ": the predictor alone is visibly off";
    EXPECT_LT(error[1], 0.5 * error[0]) << sampler_kind_name(kind);
  }
}

TEST(Langevin, AnExtraScoreTermIsAddedToTheNetworksScore) {
  // Classifier guidance passes s grad log p(y | x); a constant term c shifts each step by eps c.
  const DiffusionSchedule s(linear_betas(100));
  const RespacedSchedule process = sampling_process(s, "");
  Generator data(4);
  const Tensor x = randn({2, 5}, data, Device::cpu(), DType::f64);
  const Tensor c = Tensor::from_vector({0.3, -0.2, 0.1, 0.0, 0.5, 0.3, -0.2, 0.1, 0.0, 0.5}, {2, 5}, DType::f64);
  Generator gen(8), copy = gen;
  const SamplerConfig cfg = corrector_config(1, 0.2);
  const std::vector<double> got =
      langevin_correct(process, gaussian_oracle(s), cfg, x, 30, {}, gen, [&](const Tensor&) { return c; })
          .to_double_vector();
  const Tensor score = add(score_estimate(process, gaussian_oracle(s), cfg, x, 30, {}), c);
  const Tensor z = randn(x.shape(), copy, Device::cpu(), DType::f64);
  const Tensor step = langevin_step_size(score, z, cfg.snr, 1 - s.betas[30]);
  const std::vector<double> want = add(add(x, mul(step, score)), mul(sqrt(scale(step, 2.0)), z)).to_double_vector();
  for (std::size_t j = 0; j < want.size(); ++j) EXPECT_NEAR(got[j], want[j], 1e-12);
}

TEST(Langevin, BadSettingsAndHeunAreClearErrors) {
  const DiffusionSchedule s(linear_betas(50));
  Generator gen(0);
  SamplerConfig neg = corrector_config(-1, 0.16);
  EXPECT_THROW(sample(s, gaussian_oracle(s), {2, 3}, {}, neg, gen), ValueError);
  SamplerConfig zero_snr = corrector_config(1, 0.0);
  EXPECT_THROW(sample(s, gaussian_oracle(s), {2, 3}, {}, zero_snr, gen), ValueError);
  SamplerConfig heun = corrector_config(1, 0.16);
  heun.kind = SamplerConfig::Kind::heun;
  try {
    sample(s, gaussian_oracle(s), {2, 3}, {}, heun, gen);
    FAIL() << "heun with a corrector was accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("--corrector-steps"), std::string::npos) << e.what();
  }
}

// ddpm-sample's flags: --corrector-steps and --snr reach the sampler (one more network call
// per level changes the samples), sample_info.json records them, and misuse is refused.
TEST(Langevin, SampleRunFlagsInfoAndRefusals) {
  run::ModelSource m = testing::tiny_model_source(0);
  auto options = [](const std::string& name) {
    run::SampleOptions o;
    o.checkpoint = "tiny";
    o.num_samples = 2;
    o.batch_size = 2;
    o.sampling_steps = 4;
    o.seed = 3;
    o.out = testing::temp_path("langevin_" + name);
    return o;
  };
  const run::SampleOptions plain_options = options("plain");
  const run::SampleResult plain = run::run_sample(plain_options, m);
  run::SampleOptions pc = options("pc");
  pc.corrector_steps = 1;
  pc.snr = 0.1;
  const run::SampleResult corrected = run::run_sample(pc, m);
  EXPECT_NE(plain.pixels, corrected.pixels);
  const nlohmann::json info = nlohmann::json::parse(read_file(pc.out + "/sample_info.json"));
  EXPECT_EQ(info["corrector"]["steps_per_level"], 1);
  EXPECT_DOUBLE_EQ(info["corrector"]["snr"].get<double>(), 0.1);
  EXPECT_TRUE(nlohmann::json::parse(read_file(plain_options.out + "/sample_info.json"))["corrector"].is_null());

  auto message = [&](const run::SampleOptions& o) {
    return testing::value_error_message([&] { run::run_sample(o, m); });
  };
  run::SampleOptions bad = options("bad");
  bad.corrector_steps = 1;
  bad.sampler = "heun";
  EXPECT_NE(message(bad).find("--corrector-steps applies to --sampler ddpm or ddim"), std::string::npos)
      << message(bad);
  bad = options("bad");
  bad.snr = 0.3;  // without --corrector-steps
  EXPECT_NE(message(bad).find("--snr applies with --corrector-steps"), std::string::npos) << message(bad);
  bad.corrector_steps = -1;
  EXPECT_NE(message(bad).find("--corrector-steps must be >= 0"), std::string::npos) << message(bad);
}

}  // namespace
}  // namespace ddpm::diffusion
