// kernels/cpu/gemm.h: row-major matrix products on the CPU (the engine's fast CPU GEMM).
//
// Every matrix here is ROW-MAJOR: element (i, j) of a matrix with leading dimension ld is
// at p[i * ld + j], so ld is the distance between consecutive rows (ld >= number of
// columns as stored). The product is the BLAS one:
//
//   C = alpha * op(A) * op(B) + beta * C          op(X) = X, or X^T when trans_x is set
//
//   op(A): M x K   (A stored M x K, lda >= K; or, with trans_a, stored K x M, lda >= M)
//   op(B): K x N   (B stored K x N, ldb >= N; or, with trans_b, stored N x K, ldb >= K)
//   C:     M x N   (ldc >= N)
//
// With beta == 0, C is write-only (it may hold garbage or NaN on entry). With K == 0 the
// product is empty and C = beta * C. The work is done by OpenBLAS (cblas_sgemm,
// cblas_dgemm); T is float or double. Bad sizes or leading dimensions throw ValueError.
//
// Callers: engine/ops/linalg.cpp (matmul, linear), and convolution (im2col) and attention,
// which call these directly on raw buffers. The CUDA twin is kernels/cuda/gemm.h.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

// C[M,N] = alpha * op(A) op(B) + beta * C
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc);

// `batch` independent GEMMs: for i in [0, batch)
//   C + i*stride_c = alpha * op(A + i*stride_a) op(B + i*stride_b) + beta * (C + i*stride_c)
// Strides are in elements. A stride of 0 shares that operand across the batch (a weight
// matrix applied to every sample); stride_c must not be 0 when batch > 1.
template <class T>
void gemm_strided_batched(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha,
                          const T* A, std::int64_t lda, std::int64_t stride_a, const T* B, std::int64_t ldb,
                          std::int64_t stride_b, T beta, T* C, std::int64_t ldc, std::int64_t stride_c,
                          std::int64_t batch);

// C[i, :] = row[:] for every i < M: writes a bias into every row of C, so that a following
// gemm with beta = 1 adds the product to it (y = x W^T + b in one pass over y).
template <class T>
void fill_rows(T* C, const T* row, std::int64_t M, std::int64_t N, std::int64_t ldc);

// Throws ValueError, naming `who` and the values, unless the sizes are non-negative, the
// leading dimensions cover the stored rows (see the table at the top), every size fits
// `max_int` (the BLAS integer type's range), strides are non-negative, and the matrices
// of a batched output do not overlap.
// Shared by the CPU and CUDA wrappers.
void check_gemm_args(const char* who, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K,
                     std::int64_t lda, std::int64_t ldb, std::int64_t ldc, std::int64_t stride_a,
                     std::int64_t stride_b, std::int64_t stride_c, std::int64_t batch, std::int64_t max_int);

}  // namespace ddpm::cpu
