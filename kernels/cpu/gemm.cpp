// kernels/cpu/gemm.cpp: the row-major GEMM of gemm.h on OpenBLAS.
//
// CBLAS takes the storage order as an argument, so a row-major product is passed through
// as is (CblasRowMajor): no transposition trick is needed on the CPU, unlike cuBLAS.
#include "kernels/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <limits>

#include "engine/error.h"

namespace ddpm::cpu {

void check_gemm_args(const char* who, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K,
                     std::int64_t lda, std::int64_t ldb, std::int64_t ldc, std::int64_t stride_a,
                     std::int64_t stride_b, std::int64_t stride_c, std::int64_t batch, std::int64_t max_int) {
  DDPM_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0,
             who << ": sizes must be non-negative, got M=" << M << ", N=" << N << ", K=" << K << ", batch=" << batch);
  // Columns of each matrix as stored (row-major): the minimum leading dimension.
  std::int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  DDPM_CHECK(lda >= std::max<std::int64_t>(1, a_cols),
             who << ": lda=" << lda << " is smaller than the " << a_cols << " columns of A as stored ("
                 << (trans_a ? "K x M" : "M x K") << ")");
  DDPM_CHECK(ldb >= std::max<std::int64_t>(1, b_cols),
             who << ": ldb=" << ldb << " is smaller than the " << b_cols << " columns of B as stored ("
                 << (trans_b ? "N x K" : "K x N") << ")");
  DDPM_CHECK(ldc >= std::max<std::int64_t>(1, N), who << ": ldc=" << ldc << " is smaller than the N=" << N
                                                      << " columns of C");
  DDPM_CHECK(stride_a >= 0 && stride_b >= 0 && stride_c >= 0,
             who << ": batch strides must be non-negative, got " << stride_a << ", " << stride_b << ", " << stride_c);
  if (batch > 1 && M > 0 && N > 0) {
    std::int64_t c_extent = (M - 1) * ldc + N;  // elements spanned by one C matrix
    DDPM_CHECK(stride_c >= c_extent, who << ": stride_c=" << stride_c << " makes the " << batch
                                         << " output matrices overlap (each spans " << c_extent << " elements)");
  }
  std::int64_t largest = std::max({M, N, K, lda, ldb, ldc, batch});
  DDPM_CHECK(largest <= max_int, who << ": a size, leading dimension or batch count of " << largest
                                     << " exceeds the BLAS integer range " << max_int);
}

namespace {

void call_blas(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K, float alpha, const float* A,
               blasint lda, const float* B, blasint ldb, float beta, float* C, blasint ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void call_blas(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K, double alpha,
               const double* A, blasint lda, const double* B, blasint ldb, double beta, double* C, blasint ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// One product, arguments already checked.
template <class T>
void gemm_one(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
              std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // The sum over k is empty: C = beta * C, and with beta == 0 C is not read (it may be NaN).
    for (std::int64_t i = 0; i < M; ++i)
      for (std::int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  call_blas(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(M),
            static_cast<blasint>(N), static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B,
            static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

constexpr std::int64_t kBlasIntMax = std::numeric_limits<blasint>::max();

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  check_gemm_args("cpu::gemm", trans_a, trans_b, M, N, K, lda, ldb, ldc, 0, 0, 0, 1, kBlasIntMax);
  gemm_one(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
void gemm_strided_batched(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha,
                          const T* A, std::int64_t lda, std::int64_t stride_a, const T* B, std::int64_t ldb,
                          std::int64_t stride_b, T beta, T* C, std::int64_t ldc, std::int64_t stride_c,
                          std::int64_t batch) {
  check_gemm_args("cpu::gemm_strided_batched", trans_a, trans_b, M, N, K, lda, ldb, ldc, stride_a, stride_b,
                  stride_c, batch, kBlasIntMax);
  // OpenBLAS parallelizes inside each product, so a plain loop over the batch keeps every
  // core busy at UNet sizes (attention: batch*heads products of [S, d] x [d, S]).
  for (std::int64_t i = 0; i < batch; ++i)
    gemm_one(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c,
             ldc);
}

template <class T>
void fill_rows(T* C, const T* row, std::int64_t M, std::int64_t N, std::int64_t ldc) {
  DDPM_CHECK(M >= 0 && N >= 0 && ldc >= std::max<std::int64_t>(1, N),
             "cpu::fill_rows: bad sizes M=" << M << ", N=" << N << ", ldc=" << ldc);
  for (std::int64_t i = 0; i < M; ++i) std::copy(row, row + N, C + i * ldc);
}

#define DDPM_INSTANTIATE_GEMM(T)                                                                                  \
  template void gemm<T>(bool, bool, std::int64_t, std::int64_t, std::int64_t, T, const T*, std::int64_t,         \
                        const T*, std::int64_t, T, T*, std::int64_t);                                            \
  template void gemm_strided_batched<T>(bool, bool, std::int64_t, std::int64_t, std::int64_t, T, const T*,       \
                                        std::int64_t, std::int64_t, const T*, std::int64_t, std::int64_t, T, T*, \
                                        std::int64_t, std::int64_t, std::int64_t);                               \
  template void fill_rows<T>(T*, const T*, std::int64_t, std::int64_t, std::int64_t);

DDPM_INSTANTIATE_GEMM(float)
DDPM_INSTANTIATE_GEMM(double)
#undef DDPM_INSTANTIATE_GEMM

}  // namespace ddpm::cpu
