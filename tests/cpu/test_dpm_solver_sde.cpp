// DPM-Solver++(2M) SDE (models/diffusion/dpm_solver.h): each step against the formula
// evaluated here element by element with the same Philox draws (which also fixes the draw
// order), the first step against euler-ancestral (the same step by another code path), the
// distribution of its samples for Gaussian data (an SDE sampler does not follow the ODE
// pathwise: its samples must have the data's mean and variance), determinism per seed and
// the karras_solve dispatch.
#include <cmath>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/dpm_solver.h"
#include "models/diffusion/karras.h"

namespace ddpm::diffusion {
namespace {

Tensor vec(const std::vector<double>& v) {
  return Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())}, DType::f64, Device::cpu());
}

double toy_d(double x, double sigma) { return std::tanh(x) / (1.0 + sigma); }
SigmaDenoised toy_denoiser(const Tensor& x, double sigma) { return {scale(tanh(x), 1.0 / (1.0 + sigma)), 0.0}; }

TEST(DpmSolverSde, EachStepIsTheFormulaWithOneDrawPerStep) {
  const std::vector<double> sig{6.0, 2.0, 0.7, 0.2, 0.0};
  const std::vector<double> start{-9.0, -2.0, 0.0, 1.5, 4.0, 8.0};
  Generator gen(41, 12);
  const std::vector<double> out = dpm_solver_2m_sde(toy_denoiser, vec(start), sig, gen).to_double_vector();
  // The same numbers, drawn here in the documented order: one z per step onto sigma > 0.
  Generator replay(41, 12);
  std::vector<std::vector<double>> z;
  for (std::size_t i = 0; i + 2 < sig.size(); ++i)
    z.push_back(randn({static_cast<std::int64_t>(start.size())}, replay, Device::cpu(), DType::f64).to_double_vector());
  EXPECT_EQ(gen.offset(), replay.offset()) << "no draw on the step onto sigma = 0";
  for (std::size_t k = 0; k < start.size(); ++k) {
    double x = start[k], d_prev = 0.0, h_prev = 0.0;
    for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
      const double d = toy_d(x, sig[i]);
      if (sig[i + 1] == 0.0) {
        x = d;
        break;
      }
      const double h = std::log(sig[i] / sig[i + 1]);
      const double d_used = i == 0 ? d : d + (d - d_prev) * h / (2.0 * h_prev);  // D + (D - D_prev) / (2r)
      const double decay = std::exp(-2.0 * h);
      x = decay * x + (1.0 - decay) * d_used + sig[i + 1] * std::sqrt(1.0 - decay) * z[i][k];
      d_prev = d;
      h_prev = h;
    }
    EXPECT_NEAR(out[k], x, 1e-13) << "element " << k;
  }
}

TEST(DpmSolverSde, FirstStepIsTheEulerAncestralStep) {
  // With no history the step is the DDPM posterior step given x_0 = D, euler-ancestral's.
  const std::vector<double> sig{5.0, 1.3, 0.0};
  SamplerConfig cfg;
  cfg.dtype = DType::f64;
  const std::vector<double> hat(sig.begin(), sig.end() - 1);
  const Tensor start = vec({-7.0, -1.0, 0.3, 2.0, 6.5});
  std::vector<std::vector<double>> a_steps, b_steps;
  Generator ga(9), gb(9);
  const Tensor a = karras_solve_from(toy_denoiser, start, sig, hat, cfg, ga, Device::cpu(),
                                     [&](const StepInfo& s) { a_steps.push_back(s.x.to_double_vector()); },
                                     KarrasSolver::dpmpp_2m_sde);
  const Tensor b = karras_solve_from(toy_denoiser, start, sig, hat, cfg, gb, Device::cpu(),
                                     [&](const StepInfo& s) { b_steps.push_back(s.x.to_double_vector()); },
                                     KarrasSolver::euler_ancestral);
  ASSERT_EQ(a_steps.size(), 2u);
  ASSERT_EQ(b_steps.size(), 2u);
  for (std::size_t k = 0; k < a_steps[0].size(); ++k) EXPECT_NEAR(a_steps[0][k], b_steps[0][k], 1e-13) << k;
  EXPECT_EQ(ga.offset(), gb.offset());
}

// Samples of N(mu, s^2) data (the ideal denoiser) from sigma_max = 80 over n Karras levels.
std::vector<double> gaussian_samples(std::int64_t n, std::uint64_t seed, KarrasSolver solver) {
  const double mu = 0.3, s = 0.5;
  const SigmaDenoiser ideal = [&](const Tensor& x, double sigma) {
    const double c = s * s / (s * s + sigma * sigma);
    return SigmaDenoised{add_scalar(scale(x, c), (1.0 - c) * mu), 0.0};
  };
  SamplerConfig cfg;
  cfg.dtype = DType::f64;
  Generator gen(seed);
  const std::vector<double> sig = karras_sigmas(n, 0.002, 80.0);
  return karras_solve(ideal, {20000}, sig, std::vector<double>(sig.begin(), sig.end() - 1), cfg, gen, Device::cpu(),
                      {}, solver)
      .to_double_vector();
}

void mean_std(const std::vector<double>& v, double& mean, double& std) {
  mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double ss = 0.0;
  for (double a : v) ss += (a - mean) * (a - mean);
  std = std::sqrt(ss / static_cast<double>(v.size() - 1));
}

TEST(DpmSolverSde, SamplesHaveTheDataMeanAndVariance) {
  double m25, s25, m50, s50, m100, s100, ma, sa;
  mean_std(gaussian_samples(25, 5, KarrasSolver::dpmpp_2m_sde), m25, s25);
  mean_std(gaussian_samples(50, 6, KarrasSolver::dpmpp_2m_sde), m50, s50);
  mean_std(gaussian_samples(100, 7, KarrasSolver::dpmpp_2m_sde), m100, s100);
  mean_std(gaussian_samples(25, 5, KarrasSolver::euler_ancestral), ma, sa);
  std::printf("dpm++2m-sde: mean/std %.4f %.4f at 25 levels, %.4f %.4f at 50, %.4f %.4f at 100; euler-ancestral "
              "at 25: %.4f %.4f (data 0.3, 0.5)\n",
              m25, s25, m50, s50, m100, s100, ma, sa);
  // 20000 samples: the standard error of the mean is 0.5 / sqrt(20000) = 0.0035, of the std 0.0025.
  EXPECT_NEAR(m25, 0.3, 0.015);
  EXPECT_NEAR(m50, 0.3, 0.015);
  EXPECT_NEAR(m100, 0.3, 0.015);
  // The spread overshoots at few levels (the extrapolated D~ over the large first steps of
  // the Karras grid; diffusers' scheduler gives the same: std 0.543 at 25 steps, 0.512 at 50
  // on its own grid, measured 2026-11-23) and converges to the data's as the levels double.
  EXPECT_NEAR(s25, 0.5, 0.06);
  EXPECT_NEAR(s50, 0.5, 0.025);
  EXPECT_NEAR(s100, 0.5, 0.015);
  EXPECT_LT(std::fabs(s100 - 0.5), std::fabs(s25 - 0.5)) << s25 << " " << s100;
  // euler-ancestral, first order, is much further off at equal calls (20% short).
  EXPECT_LT(std::fabs(s25 - 0.5), std::fabs(sa - 0.5)) << s25 << " " << sa;
}

TEST(DpmSolverSde, DeterministicForASeed) {
  const std::vector<double> a = gaussian_samples(8, 77, KarrasSolver::dpmpp_2m_sde);
  const std::vector<double> b = gaussian_samples(8, 77, KarrasSolver::dpmpp_2m_sde);
  const std::vector<double> c = gaussian_samples(8, 78, KarrasSolver::dpmpp_2m_sde);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(DpmSolverSde, NameEvaluationsAndRefusals) {
  KarrasSolver parsed = KarrasSolver::heun;
  ASSERT_TRUE(parse_karras_solver("dpm++2m-sde", parsed));
  EXPECT_EQ(parsed, KarrasSolver::dpmpp_2m_sde);
  EXPECT_EQ(karras_network_evaluations(KarrasSolver::dpmpp_2m_sde, 15), 15);
  Generator gen(1);
  const Tensor x = vec({1.0});
  EXPECT_THROW(dpm_solver_2m_sde(toy_denoiser, x, {1.0, 2.0}, gen), ValueError);
  EXPECT_THROW(dpm_solver_2m_sde(toy_denoiser, x, {2.0, 0.0, 0.0}, gen), ValueError);
  SamplerConfig cfg;
  cfg.dtype = DType::f64;
  EXPECT_THROW(karras_solve_from(toy_denoiser, x, {3.0, 1.0, 0.0}, {3.5, 1.0}, cfg, gen, Device::cpu(), {},
                                 KarrasSolver::dpmpp_2m_sde),
               ValueError);  // churn refused
}

}  // namespace
}  // namespace ddpm::diffusion
