// models/eval/metrics.cpp: FID, KID, precision/recall and the Jacobi eigensolver (see metrics.h).
#include "models/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <cblas.h>

#include "engine/error.h"

namespace ddpm::eval {

FeatureMatrix take_rows(const FeatureMatrix& f, std::int64_t begin, std::int64_t count) {
  DDPM_CHECK(begin >= 0 && begin <= f.n, "take_rows: begin " << begin << " is outside [0, " << f.n << "]");
  count = std::max<std::int64_t>(0, std::min(count, f.n - begin));
  FeatureMatrix out;
  out.n = count;
  out.dim = f.dim;
  out.values.assign(f.values.begin() + begin * f.dim, f.values.begin() + (begin + count) * f.dim);
  return out;
}

// --- Jacobi ----------------------------------------------------------------------------------

SymmetricEigen symmetric_eigen(const std::vector<double>& input, std::int64_t n, double tol, int max_sweeps) {
  DDPM_CHECK(n > 0 && static_cast<std::int64_t>(input.size()) == n * n,
             "symmetric_eigen: expected an " << n << " x " << n << " matrix, got " << input.size() << " values");
  std::vector<double> a = input;
  double norm2 = 0;
  for (double v : a) norm2 += v * v;
  for (std::int64_t p = 0; p < n; ++p)
    for (std::int64_t q = p + 1; q < n; ++q)
      DDPM_CHECK(std::abs(a[p * n + q] - a[q * n + p]) <= 1e-9 * std::sqrt(norm2) + 1e-300,
                 "symmetric_eigen: the matrix is not symmetric at (" << p << ", " << q << "): " << a[p * n + q]
                                                                     << " vs " << a[q * n + p]);
  // V starts as the identity and accumulates the rotations: A_final = V^T A V.
  std::vector<double> v(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t i = 0; i < n; ++i) v[i * n + i] = 1.0;

  for (int sweep = 0; sweep < max_sweeps; ++sweep) {
    double off2 = 0;
    for (std::int64_t p = 0; p < n; ++p)
      for (std::int64_t q = 0; q < n; ++q)
        if (p != q) off2 += a[p * n + q] * a[p * n + q];
    if (off2 <= tol * tol * norm2 || off2 == 0) break;
    for (std::int64_t p = 0; p < n - 1; ++p) {
      for (std::int64_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (apq == 0) continue;
        // The rotation J = [[c, s], [-s, c]] in rows/columns (p, q) with t = tan(theta) the
        // smaller root of t^2 + 2 tau t - 1 = 0, tau = (a_qq - a_pp) / (2 a_pq), makes
        // (J^T A J)_pq = 0 (Golub & Van Loan, "Matrix Computations", sec. 8.5.2).
        const double tau = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const double t = (tau >= 0 ? 1.0 : -1.0) / (std::abs(tau) + std::sqrt(1 + tau * tau));
        const double c = 1 / std::sqrt(1 + t * t), s = t * c;
        for (std::int64_t k = 0; k < n; ++k) {  // A <- A J (columns p, q)
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (std::int64_t k = 0; k < n; ++k) {  // A <- J^T A (rows p, q)
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (std::int64_t k = 0; k < n; ++k) {  // V <- V J
          const double vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  // Sort ascending, permuting the eigenvector columns with the values.
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::int64_t i, std::int64_t j) { return a[i * n + i] < a[j * n + j]; });
  SymmetricEigen out;
  out.values.resize(static_cast<std::size_t>(n));
  out.vectors.resize(static_cast<std::size_t>(n * n));
  for (std::int64_t k = 0; k < n; ++k) {
    out.values[k] = a[order[k] * n + order[k]];
    for (std::int64_t i = 0; i < n; ++i) out.vectors[i * n + k] = v[i * n + order[k]];
  }
  return out;
}

std::vector<double> symmetric_sqrt(const std::vector<double>& a, std::int64_t n) {
  SymmetricEigen e = symmetric_eigen(a, n);
  std::vector<double> out(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t k = 0; k < n; ++k) {
    const double r = std::sqrt(std::max(e.values[k], 0.0));
    if (r == 0) continue;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) out[i * n + j] += r * e.vectors[i * n + k] * e.vectors[j * n + k];
  }
  return out;
}

// --- FID -------------------------------------------------------------------------------------

GaussianStats gaussian_stats(const FeatureMatrix& f) {
  DDPM_CHECK(f.n >= 2, "gaussian_stats: a covariance needs at least 2 feature vectors, got " << f.n);
  const std::int64_t d = f.dim;
  GaussianStats s;
  s.n = f.n;
  s.dim = d;
  s.mean.assign(static_cast<std::size_t>(d), 0.0);
  for (std::int64_t i = 0; i < f.n; ++i)
    for (std::int64_t j = 0; j < d; ++j) s.mean[j] += f.row(i)[j];
  for (double& m : s.mean) m /= static_cast<double>(f.n);
  // cov = X_c^T X_c / (n - 1) with X_c the centred rows [n, d].
  std::vector<double> centred(f.values.size());
  for (std::int64_t i = 0; i < f.n; ++i)
    for (std::int64_t j = 0; j < d; ++j) centred[i * d + j] = f.row(i)[j] - s.mean[j];
  s.cov.assign(static_cast<std::size_t>(d * d), 0.0);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(d), static_cast<int>(d),
              static_cast<int>(f.n), 1.0 / static_cast<double>(f.n - 1), centred.data(), static_cast<int>(d),
              centred.data(), static_cast<int>(d), 0.0, s.cov.data(), static_cast<int>(d));
  return s;
}

double frechet_distance(const GaussianStats& a, const GaussianStats& b) {
  DDPM_CHECK(a.dim == b.dim, "frechet_distance: feature dimensions differ: " << a.dim << " vs " << b.dim);
  const std::int64_t d = a.dim;
  double mean_term = 0;
  for (std::int64_t j = 0; j < d; ++j) mean_term += (a.mean[j] - b.mean[j]) * (a.mean[j] - b.mean[j]);
  // M = S1^{1/2} S2 S1^{1/2}, symmetric PSD; Tr((S1 S2)^{1/2}) = sum sqrt(eig(M)).
  const std::vector<double> r = symmetric_sqrt(a.cov, d);
  std::vector<double> tmp(static_cast<std::size_t>(d * d)), m(static_cast<std::size_t>(d * d));
  const int di = static_cast<int>(d);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, di, di, di, 1.0, r.data(), di, b.cov.data(), di, 0.0,
              tmp.data(), di);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, di, di, di, 1.0, tmp.data(), di, r.data(), di, 0.0,
              m.data(), di);
  for (std::int64_t i = 0; i < d; ++i)  // symmetrize away rounding so the solver's check passes
    for (std::int64_t j = i + 1; j < d; ++j) m[i * d + j] = m[j * d + i] = 0.5 * (m[i * d + j] + m[j * d + i]);
  double tr_sqrt = 0;
  for (double lambda : symmetric_eigen(m, d).values) tr_sqrt += std::sqrt(std::max(lambda, 0.0));
  double tr = 0;
  for (std::int64_t j = 0; j < d; ++j) tr += a.cov[j * d + j] + b.cov[j * d + j];
  return mean_term + tr - 2 * tr_sqrt;
}

double fid(const FeatureMatrix& a, const FeatureMatrix& b) { return frechet_distance(gaussian_stats(a), gaussian_stats(b)); }

// --- KID -------------------------------------------------------------------------------------

namespace {

// Sum of k(x_i, y_j) = (x_i . y_j / d + 1)^3 over all pairs, excluding i == j when `skip_diag`.
double kernel_sum(const std::vector<double>& x, const std::vector<double>& y, std::int64_t m, std::int64_t d,
                  bool skip_diag) {
  std::vector<double> dots(static_cast<std::size_t>(m * m));
  const int mi = static_cast<int>(m), di = static_cast<int>(d);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mi, mi, di, 1.0 / static_cast<double>(d), x.data(), di,
              y.data(), di, 0.0, dots.data(), mi);
  double total = 0;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < m; ++j) {
      if (skip_diag && i == j) continue;
      const double k = dots[i * m + j] + 1;
      total += k * k * k;
    }
  return total;
}

std::vector<double> random_subset(const FeatureMatrix& f, std::int64_t m, std::mt19937_64& rng) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(f.n));
  std::iota(idx.begin(), idx.end(), 0);
  for (std::int64_t i = 0; i < m; ++i) {  // partial Fisher-Yates: the first m are a uniform subset
    std::uniform_int_distribution<std::int64_t> pick(i, f.n - 1);
    std::swap(idx[i], idx[pick(rng)]);
  }
  std::vector<double> out(static_cast<std::size_t>(m * f.dim));
  for (std::int64_t i = 0; i < m; ++i) std::copy(f.row(idx[i]), f.row(idx[i]) + f.dim, out.begin() + i * f.dim);
  return out;
}

}  // namespace

KidResult kid(const FeatureMatrix& a, const FeatureMatrix& b, int subsets, std::int64_t subset_size,
              std::uint64_t seed) {
  DDPM_CHECK(a.dim == b.dim, "kid: feature dimensions differ: " << a.dim << " vs " << b.dim);
  DDPM_CHECK(subsets >= 1, "kid: subsets must be at least 1, got " << subsets);
  const std::int64_t m = std::min({subset_size, a.n, b.n});
  DDPM_CHECK(m >= 2, "kid: needs at least 2 feature vectors per set, got " << a.n << " and " << b.n);
  std::mt19937_64 rng(seed);
  std::vector<double> estimates;
  for (int s = 0; s < subsets; ++s) {
    const std::vector<double> x = random_subset(a, m, rng), y = random_subset(b, m, rng);
    const double md = static_cast<double>(m);
    const double mmd2 = (kernel_sum(x, x, m, a.dim, true) + kernel_sum(y, y, m, a.dim, true)) / (md * (md - 1)) -
                        2 * kernel_sum(x, y, m, a.dim, false) / (md * md);
    estimates.push_back(mmd2);
  }
  KidResult r;
  r.subsets = subsets;
  r.subset_size = m;
  for (double e : estimates) r.mean += e;
  r.mean /= subsets;
  for (double e : estimates) r.std += (e - r.mean) * (e - r.mean);
  r.std = std::sqrt(r.std / subsets);
  return r;
}

// --- precision / recall ------------------------------------------------------------------

namespace {

constexpr std::int64_t kBlockRows = 256;

// Squared distances from rows [begin, begin + rows) of x to every row of y: out [rows, y.n].
void squared_distances(const FeatureMatrix& x, std::int64_t begin, std::int64_t rows, const FeatureMatrix& y,
                       const std::vector<double>& y_norms, std::vector<double>& out) {
  const int d = static_cast<int>(x.dim), m = static_cast<int>(y.n);
  out.assign(static_cast<std::size_t>(rows * y.n), 0.0);
  // |x - y|^2 = |x|^2 + |y|^2 - 2 x.y
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), m, d, -2.0, x.row(begin), d,
              y.values.data(), d, 0.0, out.data(), m);
  for (std::int64_t i = 0; i < rows; ++i) {
    double xn = 0;
    for (std::int64_t j = 0; j < x.dim; ++j) xn += x.row(begin + i)[j] * x.row(begin + i)[j];
    for (std::int64_t j = 0; j < y.n; ++j) out[i * y.n + j] = std::max(0.0, out[i * y.n + j] + xn + y_norms[j]);
  }
}

std::vector<double> row_norms(const FeatureMatrix& f) {
  std::vector<double> out(static_cast<std::size_t>(f.n), 0.0);
  for (std::int64_t i = 0; i < f.n; ++i)
    for (std::int64_t j = 0; j < f.dim; ++j) out[i] += f.row(i)[j] * f.row(i)[j];
  return out;
}

// Squared distance from each row to its k-th nearest neighbour in the same set (the row
// itself, at distance 0, is neighbour 0).
std::vector<double> knn_radii2(const FeatureMatrix& f, int k) {
  const std::vector<double> norms = row_norms(f);
  std::vector<double> radii(static_cast<std::size_t>(f.n)), block;
  for (std::int64_t b = 0; b < f.n; b += kBlockRows) {
    const std::int64_t rows = std::min(kBlockRows, f.n - b);
    squared_distances(f, b, rows, f, norms, block);
    for (std::int64_t i = 0; i < rows; ++i) {
      block[i * f.n + b + i] = 0;  // exact self-distance despite rounding
      auto first = block.begin() + i * f.n;
      std::nth_element(first, first + k, first + f.n);
      radii[b + i] = first[k];
    }
  }
  return radii;
}

// Fraction of the rows of `query` that lie inside at least one ball (manifold point, radius).
double coverage(const FeatureMatrix& query, const FeatureMatrix& manifold, const std::vector<double>& radii2) {
  const std::vector<double> norms = row_norms(manifold);
  std::vector<double> block;
  std::int64_t inside = 0;
  for (std::int64_t b = 0; b < query.n; b += kBlockRows) {
    const std::int64_t rows = std::min(kBlockRows, query.n - b);
    squared_distances(query, b, rows, manifold, norms, block);
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < manifold.n; ++j)
        if (block[i * manifold.n + j] <= radii2[j]) {
          ++inside;
          break;
        }
  }
  return static_cast<double>(inside) / static_cast<double>(query.n);
}

}  // namespace

PrecisionRecall precision_recall(const FeatureMatrix& real, const FeatureMatrix& fake, int k) {
  DDPM_CHECK(real.dim == fake.dim, "precision_recall: feature dimensions differ: " << real.dim << " vs " << fake.dim);
  DDPM_CHECK(k >= 1 && real.n > k && fake.n > k, "precision_recall: k = " << k << " needs more than k feature "
                                                 "vectors per set, got " << real.n << " real and " << fake.n
                                                 << " generated");
  PrecisionRecall r;
  r.k = k;
  r.precision = coverage(fake, real, knn_radii2(real, k));
  r.recall = coverage(real, fake, knn_radii2(fake, k));
  return r;
}

}  // namespace ddpm::eval
