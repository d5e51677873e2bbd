// kernels/cuda/attention.cu: attention core as cuBLAS strided-batched GEMMs around two
// fused row kernels (see attention.h for the contract and kernels/cpu/attention.h for the
// equations).
//
// Head h of image b is the [S, d] matrix at x + b*S*C + h*d with row stride C. Over the
// heads of one image the batch stride is d; over images it is S*C, so one strided-batched
// call covers the heads of one image and the host loops over b (B calls per product).
//
// Forward, per image b (batch = heads):
//   scores_h = q_h k_h^T / sqrt(d)          GEMM             [heads, S, S]
//   P = softmax(scores), lse                softmax_rows     (all B*heads*S rows at once)
//   out_h = P_h v_h                         GEMM             [S, d] at out + b*S*C + h*d
// Backward, per image b:
//   scores_h = q_h k_h^T / sqrt(d),  dP_h = g_h v_h^T          GEMMs
//   P = exp(scores - lse),  dS = P * (dP - rowsum(P * dP))      softmax_backward_rows
//   dV_h = P_h^T g_h,  dQ_h = dS_h k_h / sqrt(d),  dK_h = dS_h^T q_h / sqrt(d)   GEMMs
#include "kernels/cuda/attention.h"

#include <cmath>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"

namespace ddpm::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // one warp per row, 8 warps (256 threads) per block
constexpr unsigned kFullMask = 0xffffffffu;

// Pool scratch released when the scope ends (also on a throw); stream-ordered, so the
// kernels queued before the free still see valid memory.
class Scratch {
 public:
  explicit Scratch(std::size_t floats) : ptr_(static_cast<float*>(pool_alloc(floats * sizeof(float)))) {}
  ~Scratch() { pool_free(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* get() const { return ptr_; }

 private:
  float* ptr_;
};

// Row-major C[M, N] = alpha op(A) op(B) + beta C for `batch` matrices; each operand is given
// by its row stride (ld) and its batch stride. cuBLAS is column-major, and a row-major X
// is the column-major X^T, so we ask it for C^T = op(B)^T op(A)^T: operands swapped.
void gemm_row_major(cublasHandle_t handle, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                    const float* A, int lda, long long stride_a, const float* B, int ldb, long long stride_b,
                    float beta, float* C, int ldc, long long stride_c, int batch) {
  DDPM_CUBLAS_CHECK(cublasSgemmStridedBatched(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb,
                                              stride_b, A, lda, stride_a, &beta, C, ldc, stride_c, batch));
}

__device__ float warp_max(float x) {
  for (int o = kWarp / 2; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}

__device__ float warp_sum(float x) {
  for (int o = kWarp / 2; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}

// In place, per row of length `cols`: x <- exp(x - max) / sum exp(x - max), and
// lse[row] = max + log(sum exp(x - max)). fp32 throughout; one warp per row.
__global__ void softmax_rows_kernel(float* x, float* lse, std::int64_t rows, std::int64_t cols) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // whole warps leave together: rows map to warps
  float* r = x + row * cols;
  float m = -INFINITY;
  for (std::int64_t j = lane; j < cols; j += kWarp) m = fmaxf(m, r[j]);
  m = warp_max(m);
  float sum = 0.f;
  for (std::int64_t j = lane; j < cols; j += kWarp) sum += expf(r[j] - m);
  sum = warp_sum(sum);
  const float inv = 1.f / sum;
  for (std::int64_t j = lane; j < cols; j += kWarp) r[j] = expf(r[j] - m) * inv;
  if (lane == 0) lse[row] = m + logf(sum);
}

// Per row: P = exp(scores - lse) written over scores, then dS = P (dP - sum_j P dP)
// written over dP. Each lane rereads only the elements it wrote itself.
__global__ void softmax_backward_rows_kernel(float* scores_to_p, float* dp_to_ds, const float* lse,
                                             std::int64_t rows, std::int64_t cols) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  float* p = scores_to_p + row * cols;
  float* ds = dp_to_ds + row * cols;
  const float l = lse[row];
  float dot = 0.f;
  for (std::int64_t j = lane; j < cols; j += kWarp) {
    const float pj = expf(p[j] - l);
    p[j] = pj;
    dot += pj * ds[j];
  }
  dot = warp_sum(dot);
  for (std::int64_t j = lane; j < cols; j += kWarp) ds[j] = p[j] * (ds[j] - dot);
}

unsigned row_blocks(std::int64_t rows) { return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

// scores[b] = q_h k_h^T / sqrt(d) for every head h of every image b.   [B, heads, S, S]
void compute_scores(const float* q, const float* k, float* scores, std::int64_t B, std::int64_t S, std::int64_t C,
                    std::int64_t heads, float scale2, cublasHandle_t handle) {
  const int s = static_cast<int>(S), c = static_cast<int>(C), d = static_cast<int>(C / heads);
  const int h = static_cast<int>(heads);
  for (std::int64_t b = 0; b < B; ++b)
    gemm_row_major(handle, false, true, s, s, d, scale2, q + b * S * C, c, d, k + b * S * C, c, d, 0.f,
                   scores + b * heads * S * S, s, S * S, h);
}

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, std::int64_t B,
                       std::int64_t S, std::int64_t C, std::int64_t heads, cublasHandle_t handle,
                       cudaStream_t stream) {
  if (B == 0 || S == 0) return;
  const int s = static_cast<int>(S), c = static_cast<int>(C), d = static_cast<int>(C / heads);
  const int h = static_cast<int>(heads);
  const float scale2 = 1.f / std::sqrt(float(d));  // (d^(-1/4))^2, the q and k scales together
  const std::int64_t rows = B * heads * S;
  Scratch scores(static_cast<std::size_t>(rows * S));  // [B, heads, S, S]
  compute_scores(q, k, scores.get(), B, S, C, heads, scale2, handle);
  softmax_rows_kernel<<<row_blocks(rows), kWarp * kRowsPerBlock, 0, stream>>>(scores.get(), lse, rows, S);
  DDPM_LAUNCH_CHECK("attention softmax_rows");
  // out_h = P_h v_h                                                       [S, d] per head
  for (std::int64_t b = 0; b < B; ++b)
    gemm_row_major(handle, false, false, s, d, s, 1.f, scores.get() + b * heads * S * S, s, S * S, v + b * S * C, c,
                   d, 0.f, out + b * S * C, c, d, h);
}

void attention_backward(const float* q, const float* k, const float* v, const float* lse, const float* grad_out,
                        float* dq, float* dk, float* dv, std::int64_t B, std::int64_t S, std::int64_t C,
                        std::int64_t heads, cublasHandle_t handle, cudaStream_t stream) {
  if (B == 0 || S == 0) return;
  const int s = static_cast<int>(S), c = static_cast<int>(C), d = static_cast<int>(C / heads);
  const int h = static_cast<int>(heads);
  const float scale2 = 1.f / std::sqrt(float(d));
  const std::int64_t rows = B * heads * S;
  Scratch p(static_cast<std::size_t>(rows * S));   // scores, then P        [B, heads, S, S]
  Scratch ds(static_cast<std::size_t>(rows * S));  // dP, then dS           [B, heads, S, S]
  compute_scores(q, k, p.get(), B, S, C, heads, scale2, handle);
  // dP_h = g_h v_h^T                                                      [S, S] per head
  for (std::int64_t b = 0; b < B; ++b)
    gemm_row_major(handle, false, true, s, s, d, 1.f, grad_out + b * S * C, c, d, v + b * S * C, c, d, 0.f,
                   ds.get() + b * heads * S * S, s, S * S, h);
  softmax_backward_rows_kernel<<<row_blocks(rows), kWarp * kRowsPerBlock, 0, stream>>>(p.get(), ds.get(), lse, rows,
                                                                                       S);
  DDPM_LAUNCH_CHECK("attention softmax_backward_rows");
  for (std::int64_t b = 0; b < B; ++b) {
    const float* pb = p.get() + b * heads * S * S;
    const float* dsb = ds.get() + b * heads * S * S;
    const std::int64_t off = b * S * C;
    // dV_h = P_h^T g_h                                                    [S, d]
    gemm_row_major(handle, true, false, s, d, s, 1.f, pb, s, S * S, grad_out + off, c, d, 0.f, dv + off, c, d, h);
    // dQ_h = dS_h k_h / sqrt(d)                                           [S, d]
    gemm_row_major(handle, false, false, s, d, s, scale2, dsb, s, S * S, k + off, c, d, 0.f, dq + off, c, d, h);
    // dK_h = dS_h^T q_h / sqrt(d)                                         [S, d]
    gemm_row_major(handle, true, false, s, d, s, scale2, dsb, s, S * S, q + off, c, d, 0.f, dk + off, c, d, h);
  }
}

}  // namespace ddpm::cuda
