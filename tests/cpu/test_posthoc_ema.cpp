// Post-hoc EMA (models/train/posthoc_ema.h): the power-function EMA's width against numeric
// integration, the sigma_rel <-> gamma round trip, the exact discrete profiles against a
// tracker run on one-hot sequences, the fast inner products against explicit dot products,
// and the reconstruction against a tracker that ran the requested width directly.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/train/posthoc_ema.h"

namespace ddpm::train {
namespace {

// Mean and variance of tau under the density (g + 1) tau^g on [0, 1], by composite Simpson in
// double: the independent check of eq. 123 (t = 1 without loss of generality).
double numeric_sigma_rel(double g) {
  const int n = 200000;  // even
  const double h = 1.0 / n;
  double m0 = 0, m1 = 0, m2 = 0;
  for (int i = 0; i <= n; ++i) {
    const double tau = i * h, wgt = (i == 0 || i == n) ? 1.0 : (i % 2 ? 4.0 : 2.0);
    const double f = (g + 1.0) * std::pow(tau, g);
    m0 += wgt * f;
    m1 += wgt * f * tau;
    m2 += wgt * f * tau * tau;
  }
  m0 *= h / 3, m1 *= h / 3, m2 *= h / 3;
  const double mean = m1 / m0;
  return std::sqrt(m2 / m0 - mean * mean);
}

TEST(PosthocEma, SigmaRelClosedFormMatchesNumericIntegration) {
  for (double g : {0.0, 1.0, 2.5, 6.94, 16.97}) EXPECT_NEAR(sigma_rel_from_gamma(g), numeric_sigma_rel(g), 1e-8) << g;
  // gamma = 0 is the uniform average over [0, t]: std 1/sqrt(12).
  EXPECT_NEAR(sigma_rel_from_gamma(0.0), 1.0 / std::sqrt(12.0), 1e-15);
}

TEST(PosthocEma, GammaFromSigmaRelRoundTripsAndIsTheLargestRoot) {
  const double g_star = (std::sqrt(5.0) - 3.0) / 2.0;
  EXPECT_NEAR(max_sigma_rel(), sigma_rel_from_gamma(g_star), 1e-15);
  EXPECT_LT(sigma_rel_from_gamma(g_star + 1e-3), max_sigma_rel());
  EXPECT_LT(sigma_rel_from_gamma(g_star - 1e-3), max_sigma_rel());
  for (double s : {0.002, 0.01, 0.05, 0.08, 0.10, 0.2, 0.29, 0.3}) {
    const double g = gamma_from_sigma_rel(s);
    EXPECT_NEAR(sigma_rel_from_gamma(g), s, 1e-13 * s) << s;
    EXPECT_GE(g, g_star);
    // The cubic of eq. 126 vanishes there and stays positive beyond it (no larger root).
    const double t = 1.0 / (s * s);
    auto cubic = [t](double x) { return ((x + 7.0) * x + 16.0 - t) * x + 12.0 - t; };
    EXPECT_NEAR(cubic(g) / t, 0.0, 1e-10) << s;
    for (double dx : {1e-3, 0.1, 1.0, 10.0, 1000.0}) EXPECT_GT(cubic(g + dx), 0.0) << s << " " << dx;
  }
  // EDM2's two tracked widths (their Table / code: gamma about 16.97 and 6.94).
  EXPECT_NEAR(gamma_from_sigma_rel(0.05), 16.97, 0.01);
  EXPECT_NEAR(gamma_from_sigma_rel(0.10), 6.94, 0.01);
  EXPECT_THROW(gamma_from_sigma_rel(0.0), ValueError);
  EXPECT_THROW(gamma_from_sigma_rel(0.31), ValueError);
  EXPECT_THROW(gamma_from_sigma_rel(std::nan("")), ValueError);
}

TEST(PosthocEma, DiscreteWeightsSumToOneAndMatchTheTrackerOnOneHotSequences) {
  for (double s : {0.05, 0.10, 0.25}) {
    const double g = gamma_from_sigma_rel(s);
    const std::int64_t t = 37;
    const std::vector<double> w = power_ema_weights(g, t);
    ASSERT_EQ(w.size(), 37u);
    double sum = 0;
    for (double v : w) sum += v;
    EXPECT_NEAR(sum, 1.0, 1e-14) << s;
    for (std::int64_t k = 1; k <= t; ++k) {
      double ema = 123.0;  // any start: beta_1 = 0 forgets it
      for (std::int64_t tau = 1; tau <= t; ++tau) {
        const double beta = std::pow(1.0 - 1.0 / tau, g + 1.0);
        ema = beta * ema + (1.0 - beta) * (tau == k ? 1.0 : 0.0);
      }
      EXPECT_NEAR(w[static_cast<std::size_t>(k - 1)], ema, 1e-15) << s << " " << k;
      // The telescoped closed form (tau^(g+1) - (tau-1)^(g+1)) / t^(g+1).
      const double closed = (std::pow(double(k), g + 1) - std::pow(double(k - 1), g + 1)) / std::pow(double(t), g + 1);
      EXPECT_NEAR(w[static_cast<std::size_t>(k - 1)], closed, 1e-13) << s << " " << k;
    }
  }
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) s += a[i] * b[i];
  return s;
}

TEST(PosthocEma, InnerProductsMatchExplicitDotProducts) {
  const double g1 = gamma_from_sigma_rel(0.05), g2 = gamma_from_sigma_rel(0.10), g3 = gamma_from_sigma_rel(0.2);
  const std::vector<PowerProfile> profiles{{g1, 50}, {g2, 50}, {g1, 200}, {g2, 130}, {g3, 1}, {g3, 777}, {g1, 777}};
  const std::vector<double> A = profile_gram(profiles);
  const std::size_t n = profiles.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::vector<double> wi = power_ema_weights(profiles[i].gamma, profiles[i].t);
    for (std::size_t j = 0; j < n; ++j) {
      const double ref = dot(wi, power_ema_weights(profiles[j].gamma, profiles[j].t));
      EXPECT_NEAR(A[i * n + j], ref, 1e-13 * ref) << i << "," << j;
      EXPECT_NEAR(profile_inner_product(profiles[i], profiles[j]), ref, 1e-13 * ref) << i << "," << j;
    }
  }
  // A narrow profile over a long run: tau^(gamma+1) would overflow a double, the recursion not.
  const double g_narrow = gamma_from_sigma_rel(0.003);  // gamma in the hundreds
  const PowerProfile a{g_narrow, 200000}, b{g_narrow, 150000};
  const double ref = dot(power_ema_weights(a.gamma, a.t), power_ema_weights(b.gamma, b.t));
  EXPECT_TRUE(std::isfinite(profile_inner_product(a, b)));
  EXPECT_NEAR(profile_inner_product(a, b), ref, 1e-10 * ref + 1e-300);
}

// A synthetic trajectory (a random walk plus a trend, 3 coordinates, double) tracked by power
// EMAs exactly as the trainer does, with snapshots every K steps.
struct Synthetic {
  std::vector<std::vector<double>> theta;  // theta[tau - 1]
  std::vector<PowerProfile> basis;
  std::vector<std::vector<double>> snapshots;  // one per basis profile
};

std::vector<double> track(const std::vector<std::vector<double>>& theta, double g, std::int64_t t) {
  std::vector<double> ema(theta[0].size(), 0.0);
  for (std::int64_t tau = 1; tau <= t; ++tau) {
    const double beta = std::pow(1.0 - 1.0 / tau, g + 1.0);
    for (std::size_t c = 0; c < ema.size(); ++c) ema[c] = beta * ema[c] + (1.0 - beta) * theta[tau - 1][c];
  }
  return ema;
}

Synthetic make_synthetic(std::int64_t steps, std::int64_t every, const std::vector<double>& sigma_rels) {
  Synthetic s;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  std::vector<double> x{0.3, -1.0, 2.0};
  for (std::int64_t tau = 1; tau <= steps; ++tau) {
    for (std::size_t c = 0; c < x.size(); ++c) x[c] += 0.05 * normal(rng) + 0.002 * (c + 1);
    s.theta.push_back({x[0], x[1] + std::sin(tau / 40.0), x[2]});
  }
  for (std::int64_t t = every; t <= steps; t += every)
    for (double sr : sigma_rels) {
      const double g = gamma_from_sigma_rel(sr);
      s.basis.push_back({g, t});
      s.snapshots.push_back(track(s.theta, g, t));
    }
  return s;
}

std::vector<double> combine(const Synthetic& s, const PosthocSolution& sol) {
  std::vector<double> out(3, 0.0);
  for (std::size_t i = 0; i < s.basis.size(); ++i)
    for (std::size_t c = 0; c < 3; ++c) out[c] += sol.coefficients[i] * s.snapshots[i][c];
  return out;
}

double distance(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (std::size_t c = 0; c < a.size(); ++c) d += (a[c] - b[c]) * (a[c] - b[c]);
  return std::sqrt(d);
}

TEST(PosthocEma, ReconstructsAnUntrackedWidthLikeADirectTracker) {
  const Synthetic s = make_synthetic(400, 20, {0.05, 0.10});
  for (std::int64_t t_r : {400, 300, 260}) {  // snapshot steps (between them the last steps have no basis)
    const double g_r = gamma_from_sigma_rel(0.08);
    std::vector<PowerProfile> basis;
    Synthetic used = s;  // the snapshots taken by t_r
    used.basis.clear();
    used.snapshots.clear();
    for (std::size_t i = 0; i < s.basis.size(); ++i)
      if (s.basis[i].t <= t_r) {
        used.basis.push_back(s.basis[i]);
        used.snapshots.push_back(s.snapshots[i]);
      }
    const PosthocSolution sol = solve_posthoc_coefficients(used.basis, {g_r, t_r});
    EXPECT_LT(sol.relative_residual, 0.02) << t_r;
    const std::vector<double> rec = combine(used, sol);
    const std::vector<double> direct = track(s.theta, g_r, t_r);
    // Small against the spread of the tracked widths, and within the Cauchy-Schwarz bound
    // |sum_tau r[tau] theta_tau| <= ||r|| ||theta|| of the reported residual.
    const double spread = distance(track(s.theta, gamma_from_sigma_rel(0.05), t_r),
                                   track(s.theta, gamma_from_sigma_rel(0.10), t_r));
    EXPECT_LT(distance(rec, direct), 0.05 * spread) << t_r;
    double theta_sq = 0;
    for (std::int64_t tau = 0; tau < t_r; ++tau)
      for (double v : s.theta[tau]) theta_sq += v * v;
    const std::vector<double> wr = power_ema_weights(g_r, t_r);
    EXPECT_LE(distance(rec, direct), sol.relative_residual * std::sqrt(dot(wr, wr) * theta_sq) * (1 + 1e-9) + 1e-12);
  }
}

TEST(PosthocEma, ReconstructingATrackedProfileAtASnapshotIsExact) {
  const Synthetic s = make_synthetic(300, 15, {0.05, 0.10});
  for (std::size_t k : {std::size_t(7), std::size_t(20), s.basis.size() - 1}) {
    const PowerProfile target = s.basis[k];
    std::vector<PowerProfile> basis;
    Synthetic used = s;
    used.basis.clear();
    used.snapshots.clear();
    for (std::size_t i = 0; i < s.basis.size(); ++i)
      if (s.basis[i].t <= target.t) {
        used.basis.push_back(s.basis[i]);
        used.snapshots.push_back(s.snapshots[i]);
      }
    const PosthocSolution sol = solve_posthoc_coefficients(used.basis, target);
    EXPECT_LT(sol.relative_residual, 1e-10) << k;
    const std::vector<double> rec = combine(used, sol);
    double norm = 0;
    for (double v : s.snapshots[k]) norm += v * v;
    EXPECT_LT(distance(rec, s.snapshots[k]), 1e-10 * std::sqrt(norm)) << k;
  }
}

TEST(PosthocEma, RefusesBadInputs) {
  EXPECT_THROW(solve_posthoc_coefficients({}, {1.0, 10}), ValueError);
  EXPECT_THROW(solve_posthoc_coefficients({{1.0, 0}}, {1.0, 10}), ValueError);
  EXPECT_THROW(power_ema_beta(1.0, 0), ValueError);
  EXPECT_EQ(parse_sigma_rel_list("--posthoc-ema", "0.05, 0.10"), (std::vector<double>{0.05, 0.10}));
  EXPECT_THROW(parse_sigma_rel_list("--posthoc-ema", "0.05,abc"), ValueError);
  EXPECT_THROW(parse_sigma_rel_list("--posthoc-ema", "0.05,0.05"), ValueError);
  EXPECT_THROW(parse_sigma_rel_list("--posthoc-ema", "0.5"), ValueError);
  EXPECT_THROW(parse_sigma_rel_list("--posthoc-ema", "0.05,"), ValueError);
}

}  // namespace
}  // namespace ddpm::train
