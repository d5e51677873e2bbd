// kernels/cuda/gemm.cu: the cuBLAS calls behind kernels/cuda/gemm.h, and the bias-row
// kernel. Arguments are validated by the same function as the CPU GEMM, so both backends
// reject the same calls with the same messages.
#include "kernels/cuda/gemm.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "kernels/cpu/gemm.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();  // cuBLAS sizes are int

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

// The engine's handle, bound to `stream` while alive and rebound to its previous stream
// afterwards (destructors log, never throw).
class BoundHandle {
 public:
  explicit BoundHandle(cudaStream_t stream) : handle_(cublas()) {
    DDPM_CUBLAS_CHECK(cublasGetStream(handle_, &previous_));
    if (previous_ != stream) {
      DDPM_CUBLAS_CHECK(cublasSetStream(handle_, stream));
      rebound_ = true;
    }
  }
  ~BoundHandle() {
    if (!rebound_) return;
    cublasStatus_t st = cublasSetStream(handle_, previous_);
    if (st != CUBLAS_STATUS_SUCCESS)
      std::fprintf(stderr, "ddpm: cublasSetStream failed while restoring the engine stream: %s\n",
                   cublas_status_name(st));
  }
  BoundHandle(const BoundHandle&) = delete;
  BoundHandle& operator=(const BoundHandle&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_;
  cudaStream_t previous_ = nullptr;
  bool rebound_ = false;
};

// K == 0: the sum over k is empty, so C = beta * C (and C is not read when beta == 0).
void scale_output(cublasHandle_t h, std::int64_t M, std::int64_t N, float beta, float* C, std::int64_t ldc,
                  cudaStream_t stream) {
  if (beta == 0.0f) {
    DDPM_CUDA_CHECK(cudaMemset2DAsync(C, static_cast<std::size_t>(ldc) * sizeof(float), 0,
                                      static_cast<std::size_t>(N) * sizeof(float), static_cast<std::size_t>(M),
                                      stream));
    return;
  }
  // In-place geam on the column-major view C^T (N x M, ld = ldc): C^T = beta C^T + 0 C^T.
  const float zero = 0.0f;
  int n = static_cast<int>(N), m = static_cast<int>(M), ld = static_cast<int>(ldc);
  DDPM_CUBLAS_CHECK(cublasSgeam(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, &beta, C, ld, &zero, C, ld, C, ld));
}

__global__ void fill_rows_kernel(float* C, const float* row, std::int64_t M, std::int64_t N, std::int64_t ldc) {
  std::int64_t total = M * N;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t r = i / N, c = i - r * N;
    C[r * ldc + c] = row[c];
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const float* A,
          std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc,
          cudaStream_t stream) {
  cpu::check_gemm_args("cuda::gemm", trans_a, trans_b, M, N, K, lda, ldb, ldc, 0, 0, 0, 1, kIntMax);
  if (M == 0 || N == 0) return;
  BoundHandle h(stream);
  if (K == 0) return scale_output(h.get(), M, N, beta, C, ldc, stream);
  // Column-major C^T[N,M] = op(B)^T[N,K] op(A)^T[K,M]: B first, then A.
  DDPM_CUBLAS_CHECK(cublasSgemm(h.get(), op(trans_b), op(trans_a), static_cast<int>(N), static_cast<int>(M),
                                static_cast<int>(K), &alpha, B, static_cast<int>(ldb), A, static_cast<int>(lda),
                                &beta, C, static_cast<int>(ldc)));
}

void gemm_strided_batched(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                          const float* A, std::int64_t lda, std::int64_t stride_a, const float* B, std::int64_t ldb,
                          std::int64_t stride_b, float beta, float* C, std::int64_t ldc, std::int64_t stride_c,
                          std::int64_t batch, cudaStream_t stream) {
  cpu::check_gemm_args("cuda::gemm_strided_batched", trans_a, trans_b, M, N, K, lda, ldb, ldc, stride_a, stride_b,
                       stride_c, batch, kIntMax);
  if (M == 0 || N == 0 || batch == 0) return;
  BoundHandle h(stream);
  if (K == 0) {
    for (std::int64_t i = 0; i < batch; ++i) scale_output(h.get(), M, N, beta, C + i * stride_c, ldc, stream);
    return;
  }
  // Same operand swap as gemm(); the strides travel with their operands.
  DDPM_CUBLAS_CHECK(cublasSgemmStridedBatched(
      h.get(), op(trans_b), op(trans_a), static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, B,
      static_cast<int>(ldb), static_cast<long long>(stride_b), A, static_cast<int>(lda),
      static_cast<long long>(stride_a), &beta, C, static_cast<int>(ldc), static_cast<long long>(stride_c),
      static_cast<int>(batch)));
}

void fill_rows(float* C, const float* row, std::int64_t M, std::int64_t N, std::int64_t ldc, cudaStream_t stream) {
  DDPM_CHECK(M >= 0 && N >= 0 && ldc >= std::max<std::int64_t>(1, N),
             "cuda::fill_rows: bad sizes M=" << M << ", N=" << N << ", ldc=" << ldc);
  if (M == 0 || N == 0) return;
  constexpr int kThreads = 256;
  fill_rows_kernel<<<grid_for(M * N, kThreads), kThreads, 0, stream>>>(C, row, M, N, ldc);
  DDPM_LAUNCH_CHECK("fill_rows");
}

}  // namespace ddpm::cuda
