// Evaluation metrics against closed forms: the Jacobi eigensolver on matrices with known
// spectra, FID of Gaussians (exact statistics, and sampled), KID and precision/recall on
// identical, same-distribution and disjoint sets.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/eval/metrics.h"

namespace ddpm::eval {
namespace {

// n points of N(mean, L L^T) in `dim` dimensions (L lower triangular, row-major).
FeatureMatrix gaussian_points(std::int64_t n, const std::vector<double>& mean, const std::vector<double>& chol,
                              std::uint64_t seed) {
  const std::int64_t d = static_cast<std::int64_t>(mean.size());
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  FeatureMatrix f;
  f.n = n;
  f.dim = d;
  f.values.resize(static_cast<std::size_t>(n * d));
  std::vector<double> z(static_cast<std::size_t>(d));
  for (std::int64_t i = 0; i < n; ++i) {
    for (double& v : z) v = normal(rng);
    for (std::int64_t r = 0; r < d; ++r) {
      double v = mean[r];
      for (std::int64_t c = 0; c <= r; ++c) v += chol[r * d + c] * z[c];
      f.values[i * d + r] = v;
    }
  }
  return f;
}

TEST(EvalMetricsJacobi, KnownSpectra) {
  SymmetricEigen e2 = symmetric_eigen({2, 1, 1, 2}, 2);
  EXPECT_NEAR(e2.values[0], 1.0, 1e-12);
  EXPECT_NEAR(e2.values[1], 3.0, 1e-12);
  // The 1-D Laplacian: eigenvalues 2 - 2 cos(k pi / 4), k = 1..3.
  SymmetricEigen e3 = symmetric_eigen({2, -1, 0, -1, 2, -1, 0, -1, 2}, 3);
  EXPECT_NEAR(e3.values[0], 2 - std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(e3.values[1], 2.0, 1e-12);
  EXPECT_NEAR(e3.values[2], 2 + std::sqrt(2.0), 1e-12);
  // Eigenvector of 3 for [[2,1],[1,2]] is (1,1)/sqrt 2 up to sign.
  EXPECT_NEAR(std::abs(e2.vectors[0 * 2 + 1]), std::sqrt(0.5), 1e-12);
  EXPECT_NEAR(std::abs(e2.vectors[1 * 2 + 1]), std::sqrt(0.5), 1e-12);
}

TEST(EvalMetricsJacobi, ReconstructsRandomSymmetricMatrix) {
  const std::int64_t n = 24;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  std::vector<double> a(n * n);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j <= i; ++j) a[i * n + j] = a[j * n + i] = normal(rng);
  const SymmetricEigen e = symmetric_eigen(a, n);
  for (std::int64_t k = 1; k < n; ++k) EXPECT_LE(e.values[k - 1], e.values[k]);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double recon = 0, gram = 0;
      for (std::int64_t k = 0; k < n; ++k) {
        recon += e.vectors[i * n + k] * e.values[k] * e.vectors[j * n + k];  // V diag V^T
        gram += e.vectors[k * n + i] * e.vectors[k * n + j];                 // V^T V
      }
      EXPECT_NEAR(recon, a[i * n + j], 1e-10);
      EXPECT_NEAR(gram, i == j ? 1.0 : 0.0, 1e-10);
    }
  const std::vector<double> spd = {4, 2, 0, 2, 5, 1, 0, 1, 3};
  const std::vector<double> r = symmetric_sqrt(spd, 3);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double rr = 0;
      for (int k = 0; k < 3; ++k) rr += r[i * 3 + k] * r[k * 3 + j];
      EXPECT_NEAR(rr, spd[i * 3 + j], 1e-12);
    }
}

TEST(EvalMetricsJacobi, RejectsBadInput) {
  EXPECT_THROW(symmetric_eigen({1, 2, 3, 4}, 2), ValueError);  // not symmetric
  EXPECT_THROW(symmetric_eigen({1, 2, 3}, 2), ValueError);     // wrong size
}

TEST(EvalMetricsFid, ClosedFormForExactStatistics) {
  // Diagonal (commuting) covariances: FID = |mu1 - mu2|^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2.
  GaussianStats a, b;
  a.dim = b.dim = 3;
  a.mean = {0, 0, 0};
  b.mean = {1, -2, 0.5};
  a.cov = {1, 0, 0, 0, 4, 0, 0, 0, 9};
  b.cov = {4, 0, 0, 0, 1, 0, 0, 0, 9};
  EXPECT_NEAR(frechet_distance(a, b), 1 + 4 + 0.25 + 1 + 1 + 0, 1e-10);
  // Non-commuting 2x2: Tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for M = S1 S2 with positive
  // eigenvalues, so FID = |dmu|^2 + tr S1 + tr S2 - 2 sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)).
  a.dim = b.dim = 2;
  a.mean = {0.5, 0};
  b.mean = {0, 0};
  a.cov = {2, 0.6, 0.6, 1};
  b.cov = {1, -0.3, -0.3, 3};
  const double tr_s1s2 = 2 * 1 + 0.6 * -0.3 + 0.6 * -0.3 + 1 * 3;
  const double det = (2 * 1 - 0.36) * (1 * 3 - 0.09);
  const double expected = 0.25 + 3 + 4 - 2 * std::sqrt(tr_s1s2 + 2 * std::sqrt(det));
  EXPECT_NEAR(frechet_distance(a, b), expected, 1e-10);
  EXPECT_NEAR(frechet_distance(a, a), 0.0, 1e-10);
}

TEST(EvalMetricsFid, SampledGaussiansApproachClosedForm) {
  // N(0, S1) vs N(mu, S2) with S = L L^T, sampled 20000 times each.
  const std::vector<double> l1 = {1, 0, 0, 0.5, 1.2, 0, -0.3, 0.2, 0.8};
  const std::vector<double> l2 = {1.5, 0, 0, 0, 0.7, 0, 0.4, -0.5, 1.1};
  const FeatureMatrix x = gaussian_points(20000, {0, 0, 0}, l1, 1);
  const FeatureMatrix y = gaussian_points(20000, {1, 0, -1}, l2, 2);
  GaussianStats a, b;
  a.dim = b.dim = 3;
  a.mean = {0, 0, 0};
  b.mean = {1, 0, -1};
  a.cov.assign(9, 0);
  b.cov.assign(9, 0);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) {
        a.cov[i * 3 + j] += l1[i * 3 + k] * l1[j * 3 + k];
        b.cov[i * 3 + j] += l2[i * 3 + k] * l2[j * 3 + k];
      }
  const double closed = frechet_distance(a, b);
  EXPECT_NEAR(fid(x, y), closed, 0.05 * closed);
  EXPECT_NEAR(fid(x, x), 0.0, 1e-8);
  // Two independent draws of the same Gaussian: small, only the finite-sample bias.
  EXPECT_LT(fid(x, gaussian_points(20000, {0, 0, 0}, l1, 7)), 0.01);
}

TEST(EvalMetricsKid, SameDistributionNearZeroShiftedLarger) {
  const std::vector<double> eye = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  const FeatureMatrix x = gaussian_points(1500, {0, 0, 0}, eye, 1);
  const FeatureMatrix y = gaussian_points(1500, {0, 0, 0}, eye, 2);
  const FeatureMatrix z = gaussian_points(1500, {1, 1, 0}, eye, 3);
  const KidResult same = kid(x, y, 10, 500, 0);
  const KidResult shifted = kid(x, z, 10, 500, 0);
  EXPECT_EQ(same.subsets, 10);
  EXPECT_EQ(same.subset_size, 500);
  EXPECT_LT(std::abs(same.mean), 0.02);
  EXPECT_GT(shifted.mean, 0.2);
  EXPECT_GT(shifted.mean, 10 * std::abs(same.mean));
  EXPECT_GT(shifted.std, 0.0);
  EXPECT_EQ(kid(x, y, 2, 5000, 0).subset_size, 1500);  // clamped to the smaller set
}

TEST(EvalMetricsPrecisionRecall, IdenticalAndDisjointSets) {
  const std::vector<double> eye = {1, 0, 0, 1};
  const FeatureMatrix x = gaussian_points(400, {0, 0}, eye, 1);
  PrecisionRecall same = precision_recall(x, x, 3);
  EXPECT_DOUBLE_EQ(same.precision, 1.0);
  EXPECT_DOUBLE_EQ(same.recall, 1.0);
  const FeatureMatrix far = gaussian_points(400, {50, 0}, eye, 2);
  PrecisionRecall disjoint = precision_recall(x, far, 3);
  EXPECT_DOUBLE_EQ(disjoint.precision, 0.0);
  EXPECT_DOUBLE_EQ(disjoint.recall, 0.0);
  // Samples collapsed onto a small part of the real set: high precision, low recall.
  const FeatureMatrix narrow = gaussian_points(400, {0, 0}, {0.1, 0, 0, 0.1}, 3);
  PrecisionRecall collapsed = precision_recall(x, narrow, 3);
  EXPECT_GT(collapsed.precision, 0.6);
  EXPECT_LT(collapsed.recall, 0.3);
  EXPECT_THROW(precision_recall(take_rows(x, 0, 3), x, 3), ValueError);
}

}  // namespace
}  // namespace ddpm::eval
