// models/eval/metrics.h: sample-quality metrics on feature vectors: FID, KID and the k-NN
// precision/recall, plus the symmetric eigensolver FID needs.
//
// Inputs are plain feature matrices [n, dim] in double (row i = the features of image i),
// produced by models/eval/features.h from the engine-trained classifier (no Inception
// weights exist offline). Everything here runs on the host in float64; nothing is recorded
// on the tape.
//
//   FID (Heusel et al. 2017, eq. 6), the Frechet distance of two Gaussians fitted to the sets:
//     FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})
//   Tr((S1 S2)^{1/2}) = Tr((S1^{1/2} S2 S1^{1/2})^{1/2}) = sum_i sqrt(lambda_i), with lambda_i
//   the (clamped non-negative) eigenvalues of the symmetric matrix S1^{1/2} S2 S1^{1/2}
//   (S1 S2 is similar to it), so only a symmetric eigensolver is needed.
//
//   KID (Binkowski et al. 2018, "Demystifying MMD GANs", sec. 3): the unbiased estimate of
//   the squared MMD with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
//     MMD^2 = 1/(m(m-1)) sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] - 2/m^2 sum_{i,j} k(x_i, y_j)
//   averaged over random subsets of size m drawn without replacement from each set.
//
//   Precision / recall (Kynkaanniemi et al. 2019, sec. 3): each set defines a manifold, the
//   union of balls around its points with radius = distance to the k-th nearest neighbour
//   in the same set. precision = fraction of generated points inside the real manifold;
//   recall = fraction of real points inside the generated manifold.
#pragma once

#include <cstdint>
#include <vector>

namespace ddpm::eval {

// n feature vectors of dim numbers each, row-major: values[i * dim + j].
struct FeatureMatrix {
  std::int64_t n = 0, dim = 0;
  std::vector<double> values;
  const double* row(std::int64_t i) const { return values.data() + i * dim; }
};

// Rows [begin, begin + count) as a new matrix (count clamped to what is there).
FeatureMatrix take_rows(const FeatureMatrix& f, std::int64_t begin, std::int64_t count);

// --- symmetric eigensolver -------------------------------------------------------------
struct SymmetricEigen {
  std::vector<double> values;   // [n], ascending
  std::vector<double> vectors;  // [n, n] row-major; column k is the eigenvector of values[k]
};
// Cyclic Jacobi: sweeps over every (p, q) pair, each rotation zeroing a[p][q], until the
// off-diagonal Frobenius norm is below tol * the matrix's Frobenius norm (or max_sweeps).
// a is an n x n symmetric matrix, row-major (ValueError if not square / not symmetric).
SymmetricEigen symmetric_eigen(const std::vector<double>& a, std::int64_t n, double tol = 1e-14,
                               int max_sweeps = 100);
// A^{1/2} = V diag(sqrt(max(lambda, 0))) V^T of a symmetric positive semi-definite matrix.
std::vector<double> symmetric_sqrt(const std::vector<double>& a, std::int64_t n);

// --- FID ---------------------------------------------------------------------------------
struct GaussianStats {
  std::int64_t n = 0, dim = 0;
  std::vector<double> mean;  // [dim]
  std::vector<double> cov;   // [dim, dim], unbiased (divides by n - 1), like numpy.cov
};
GaussianStats gaussian_stats(const FeatureMatrix& f);  // needs n >= 2
// The Frechet distance between N(a.mean, a.cov) and N(b.mean, b.cov).
double frechet_distance(const GaussianStats& a, const GaussianStats& b);
double fid(const FeatureMatrix& a, const FeatureMatrix& b);

// --- KID -----------------------------------------------------------------------------------
struct KidResult {
  double mean = 0;  // mean of the per-subset MMD^2 estimates
  double std = 0;   // their standard deviation over subsets
  int subsets = 0;
  std::int64_t subset_size = 0;
};
// subset_size is clamped to min(a.n, b.n) (needs >= 2). Subsets are drawn with a
// std::mt19937_64 seeded with `seed`.
KidResult kid(const FeatureMatrix& a, const FeatureMatrix& b, int subsets = 10, std::int64_t subset_size = 1000,
              std::uint64_t seed = 0);

// --- precision / recall ------------------------------------------------------------------
struct PrecisionRecall {
  double precision = 0, recall = 0;
  int k = 3;
};
// real and fake need more than k rows each. Distances are Euclidean; a point lies inside
// a ball when its distance is <= the radius.
PrecisionRecall precision_recall(const FeatureMatrix& real, const FeatureMatrix& fake, int k = 3);

}  // namespace ddpm::eval
