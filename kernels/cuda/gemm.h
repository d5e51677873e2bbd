// kernels/cuda/gemm.h: row-major fp32 matrix products on CUDA, through cuBLAS.
//
// Same contract as kernels/cpu/gemm.h (read the layout table there); only the pointers are
// device pointers and the work is queued on `stream`:
//
//   C = alpha * op(A) * op(B) + beta * C          op(X) = X, or X^T when trans_x is set
//   op(A): M x K,  op(B): K x N,  C: M x N, all row-major with leading dimensions lda, ldb, ldc.
//
// cuBLAS is column-major. A row-major matrix read as column-major is its transpose, so the
// row-major C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T: the
// operands are swapped, M and N are swapped, and the transpose flags are passed unchanged.
//
// The handle is cuda::cublas() (kernels/cuda/context.h): by default TF32 is off, so products
// are true fp32; with ddpm::set_allow_tf32(true) (engine/math_mode.h) the handle's math mode
// is CUBLAS_TF32_TENSOR_OP_MATH and cuBLAS may round the inputs of each product to TF32
// (10-bit mantissa, about 1e-3 relative error of a K-term sum), accumulating in fp32. Its
// pointer mode is the default (alpha and beta read from the host). When
// `stream` is not the handle's stream, the handle is bound to `stream` for the call and
// rebound afterwards. Asynchronous: the call returns once the work is queued.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

// C[M,N] = alpha * op(A) op(B) + beta * C            (cublasSgemm)
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const float* A,
          std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc,
          cudaStream_t stream);

// For i in [0, batch): matrix i of each operand starts at ptr + i*stride (elements).
// A stride of 0 shares that operand across the batch.  (cublasSgemmStridedBatched)
void gemm_strided_batched(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                          const float* A, std::int64_t lda, std::int64_t stride_a, const float* B, std::int64_t ldb,
                          std::int64_t stride_b, float beta, float* C, std::int64_t ldc, std::int64_t stride_c,
                          std::int64_t batch, cudaStream_t stream);

// C[i, :] = row[:] for every i < M (a bias written into each row before a beta = 1 gemm).
void fill_rows(float* C, const float* row, std::int64_t M, std::int64_t N, std::int64_t ldc, cudaStream_t stream);

}  // namespace ddpm::cuda
