// kernels/cuda/attention.cu: attention core as cuBLAS batched GEMMs around two fused row
// kernels (kernels/cuda/attention_softmax.h); see attention.h for the contract and
// kernels/cpu/attention.h for the equations.
//
// Every product is ONE cuBLAS call over all B*heads (image, head) pairs. Head h of image b
// is the [S, d] matrix at x + b*S*C + h*d with row stride C (S = Sq for q, out, g, dq and
// S = Sk for k, v, dk, dv): the offset has two strides (S*C over images, d over heads),
// which a strided-batched GEMM cannot express with its single batch stride, so:
//   heads == 1: cublasSgemmStridedBatched, batch B, stride S*C;
//   B == 1:     cublasSgemmStridedBatched, batch heads, stride d;
//   otherwise:  cublasSgemmBatched over B*heads pointers, the pointer tables of every
//               operand built by one small kernel per call of the op.
// The first version looped over b on the host (B calls of batch `heads` per product: 256
// cuBLAS calls for the b=128 forward); now the forward is 2 GEMMs + 1 row kernel (+1 table
// kernel), the backward 5 GEMMs + 1 row kernel (+1).
//
// Forward (batch = all (b, h)):
//   scores_bh = q_bh k_bh^T / sqrt(d)       GEMM             [B, heads, Sq, Sk]
//   P = softmax(scores), lse                softmax_rows     (all B*heads*Sq rows of Sk at once)
//   out_bh = P_bh v_bh                      GEMM             [Sq, d] at out + b*Sq*C + h*d
// Backward:
//   scores_bh = q_bh k_bh^T / sqrt(d),  dP_bh = g_bh v_bh^T      GEMMs
//   P = exp(scores - lse),  dS = P * (dP - rowsum(P * dP))       softmax_backward_rows
//   dV = P^T g,  dQ = dS k / sqrt(d),  dK = dS^T q / sqrt(d)     GEMMs (per (b, h))
// Self-attention is the case Sq = Sk; nothing else changes with it.
// With a logit bias [heads, Sq, Sk] the two row kernels add it (their kBias variants), and
// the backward ends with dBias = sum_b dS_b, one column-sum kernel over the dS scratch.
#include "kernels/cuda/attention.h"

#include <cmath>
#include <initializer_list>
#include <memory>
#include <vector>

#include "engine/error.h"
#include "kernels/cuda/attention_softmax.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

// Pool scratch released when the scope ends (also on a throw); stream-ordered, so the
// kernels queued before the free still see valid memory.
class Scratch {
 public:
  explicit Scratch(std::size_t bytes) : ptr_(pool_alloc(bytes)) {}
  ~Scratch() { pool_free(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_;
};

std::size_t floats(std::int64_t n) { return static_cast<std::size_t>(n) * sizeof(float); }

// One matrix per (image b, head h): base + b*image_stride + h*head_stride, row stride ld.
struct Matrices {
  const float* base;
  long long image_stride;
  long long head_stride;
  int ld;
};

constexpr int kMaxFamilies = 9;  // the backward's q, k, v, g, dq, dk, dv, P, dS

// Passed by value (216 bytes of kernel parameters).
struct FamilyTable {
  const float* base[kMaxFamilies];
  long long image_stride[kMaxFamilies];
  long long head_stride[kMaxFamilies];
};

// table[f*n + b*heads + h] = base_f + b*image_stride_f + h*head_stride_f, n = B*heads.
__global__ void build_pointer_table_kernel(FamilyTable t, int families, std::int64_t B, std::int64_t heads,
                                           float** table) {
  const std::int64_t n = B * heads, total = families * n;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t f = i / n, j = i - f * n;
    const std::int64_t b = j / heads, h = j - b * heads;
    // Outputs share the table with inputs; constness is the GEMM call's business.
    table[i] = const_cast<float*>(t.base[f]) + b * t.image_stride[f] + h * t.head_stride[f];
  }
}

// dbias[e] = sum_b ds[b*E + e], E = heads*Sq*Sk: the batch sum of dS [B, heads, Sq, Sk].
// One thread per element of the bias; consecutive threads read consecutive floats of each
// image's block, and the sum over b runs in a fixed order (deterministic).
__global__ void sum_over_batch_kernel(const float* ds, float* dbias, std::int64_t B, std::int64_t E) {
  for (std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; e < E;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (std::int64_t b = 0; b < B; ++b) acc += ds[b * E + e];
    dbias[e] = acc;
  }
}

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

// The operands of every product of one op call, batched over all (b, h) pairs.
class HeadBatches {
 public:
  HeadBatches(std::initializer_list<Matrices> families, std::int64_t B, std::int64_t heads, cudaStream_t stream)
      : families_(families), B_(B), heads_(heads) {
    DDPM_CHECK(families_.size() <= kMaxFamilies, "attention: too many operand families for the pointer table");
    if (pointer_mode()) {
      const std::int64_t n = B * heads, total = static_cast<std::int64_t>(families_.size()) * n;
      table_ = std::make_unique<Scratch>(static_cast<std::size_t>(total) * sizeof(float*));
      FamilyTable t{};
      for (std::size_t f = 0; f < families_.size(); ++f) {
        t.base[f] = families_[f].base;
        t.image_stride[f] = families_[f].image_stride;
        t.head_stride[f] = families_[f].head_stride;
      }
      constexpr int kThreads = 256;
      build_pointer_table_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(
          t, static_cast<int>(families_.size()), B, heads, table_->as<float*>());
      DDPM_LAUNCH_CHECK("attention build_pointer_table");
    }
  }

  // Row-major C_bh[M, N] = alpha op(A_bh) op(B_bh) + beta C_bh for every (b, h), with A, B, C
  // indices into the families. cuBLAS is column-major, and a row-major X is the
  // column-major X^T, so we ask it for C^T = op(B)^T op(A)^T: operands swapped.
  void gemm(cublasHandle_t handle, bool trans_a, int a, bool trans_b, int b, int c, int M, int N, int K, float alpha,
            float beta) const {
    const Matrices &A = families_[a], &Bm = families_[b], &Cm = families_[c];
    float* C = const_cast<float*>(Cm.base);  // the output family; stored const for the table
    if (pointer_mode()) {
      const int n = static_cast<int>(B_ * heads_);
      float* const* table = table_->as<float*>();
      DDPM_CUBLAS_CHECK(cublasSgemmBatched(handle, op(trans_b), op(trans_a), N, M, K, &alpha, table + b * n, Bm.ld,
                                           table + a * n, A.ld, &beta, table + c * n, Cm.ld, n));
      return;
    }
    // One stride suffices: over images when heads == 1, over heads when B == 1.
    const bool over_images = heads_ == 1;
    const int batch = static_cast<int>(over_images ? B_ : heads_);
    auto stride = [over_images](const Matrices& m) { return over_images ? m.image_stride : m.head_stride; };
    DDPM_CUBLAS_CHECK(cublasSgemmStridedBatched(handle, op(trans_b), op(trans_a), N, M, K, &alpha, Bm.base, Bm.ld,
                                                stride(Bm), A.base, A.ld, stride(A), &beta, C, Cm.ld, stride(Cm),
                                                batch));
  }

 private:
  bool pointer_mode() const { return heads_ > 1 && B_ > 1; }

  std::vector<Matrices> families_;
  std::int64_t B_, heads_;
  std::unique_ptr<Scratch> table_;  // [families, B*heads] device pointers (pointer mode only)
};

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, std::int64_t B,
                       std::int64_t Sq, std::int64_t Sk, std::int64_t C, std::int64_t heads, cublasHandle_t handle,
                       cudaStream_t stream, const float* bias) {
  if (B == 0 || Sq == 0 || Sk == 0) return;
  const int sq = static_cast<int>(Sq), sk = static_cast<int>(Sk), c = static_cast<int>(C),
            d = static_cast<int>(C / heads);
  const float scale2 = 1.f / std::sqrt(float(d));  // (d^(-1/4))^2, the q and k scales together
  const std::int64_t rows = B * heads * Sq;
  Scratch scores(floats(rows * Sk));  // [B, heads, Sq, Sk]
  // Images S*C apart (S = Sq or Sk), heads d apart, rows C apart; the scores are
  // [B, heads, Sq, Sk], one [Sq, Sk] matrix per (b, h).
  const long long img_q = Sq * C, img_k = Sk * C, qk = Sq * Sk;
  enum { kQ, kK, kV, kOut, kScores };
  const HeadBatches batches({{q, img_q, d, c},
                             {k, img_k, d, c},
                             {v, img_k, d, c},
                             {out, img_q, d, c},
                             {scores.as<float>(), heads * qk, qk, sk}},
                            B, heads, stream);
  batches.gemm(handle, false, kQ, true, kK, kScores, sq, sk, d, scale2, 0.f);  // q_bh k_bh^T / sqrt(d)  [Sq, Sk]
  attention_softmax_rows(scores.as<float>(), lse, rows, Sk, stream, bias, heads * Sq);  // + bias [heads, Sq, Sk]
  batches.gemm(handle, false, kScores, false, kV, kOut, sq, d, sk, 1.f, 0.f);  // out_bh = P_bh v_bh     [Sq, d]
}

void attention_backward(const float* q, const float* k, const float* v, const float* lse, const float* grad_out,
                        float* dq, float* dk, float* dv, std::int64_t B, std::int64_t Sq, std::int64_t Sk,
                        std::int64_t C, std::int64_t heads, cublasHandle_t handle, cudaStream_t stream,
                        const float* bias, float* dbias) {
  if (B == 0 || Sq == 0 || Sk == 0) return;
  DDPM_CHECK((bias == nullptr) == (dbias == nullptr), "attention backward: give both bias and dbias, or neither");
  const int sq = static_cast<int>(Sq), sk = static_cast<int>(Sk), c = static_cast<int>(C),
            d = static_cast<int>(C / heads);
  const float scale2 = 1.f / std::sqrt(float(d));
  const std::int64_t rows = B * heads * Sq;
  Scratch p(floats(rows * Sk));   // scores, then P        [B, heads, Sq, Sk]
  Scratch ds(floats(rows * Sk));  // dP, then dS           [B, heads, Sq, Sk]
  const long long img_q = Sq * C, img_k = Sk * C, qk = Sq * Sk;
  enum { kQ, kK, kV, kG, kDq, kDk, kDv, kP, kDs };
  const HeadBatches batches({{q, img_q, d, c},
                             {k, img_k, d, c},
                             {v, img_k, d, c},
                             {grad_out, img_q, d, c},
                             {dq, img_q, d, c},
                             {dk, img_k, d, c},
                             {dv, img_k, d, c},
                             {p.as<float>(), heads * qk, qk, sk},
                             {ds.as<float>(), heads * qk, qk, sk}},
                            B, heads, stream);
  batches.gemm(handle, false, kQ, true, kK, kP, sq, sk, d, scale2, 0.f);  // scores = q k^T / sqrt(d)  [Sq, Sk]
  batches.gemm(handle, false, kG, true, kV, kDs, sq, sk, d, 1.f, 0.f);    // dP = g v^T                [Sq, Sk]
  attention_softmax_backward_rows(p.as<float>(), ds.as<float>(), lse, rows, Sk, stream, bias, heads * Sq);
  batches.gemm(handle, true, kP, false, kG, kDv, sk, d, sq, 1.f, 0.f);        // dV = P^T g              [Sk, d]
  batches.gemm(handle, false, kDs, false, kK, kDq, sq, d, sk, scale2, 0.f);   // dQ = dS k / sqrt(d)     [Sq, d]
  batches.gemm(handle, true, kDs, false, kQ, kDk, sk, d, sq, scale2, 0.f);    // dK = dS^T q / sqrt(d)   [Sk, d]
  if (dbias != nullptr) {  // dBias = sum_b dS_b                                       [heads, Sq, Sk]
    const std::int64_t E = heads * Sq * Sk;
    constexpr int kThreads = 256;
    sum_over_batch_kernel<<<grid_for(E, kThreads), kThreads, 0, stream>>>(ds.as<float>(), dbias, B, E);
    DDPM_LAUNCH_CHECK("attention sum_over_batch");
  }
}

}  // namespace ddpm::cuda
