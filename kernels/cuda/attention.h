// kernels/cuda/attention.h: the multi-head attention core on CUDA (fp32), the same
// contract as kernels/cpu/attention.h: q, out [B, Sq, C] and k, v [B, Sk, C] row-major
// (Sq = Sk for self-attention, Sk context tokens for cross-attention), head h on channels
// [h*d, (h+1)*d), lse [B, heads, Sq], scores scaled by (d^(-1/4))^2 = 1/sqrt(d).
//
// cuBLAS GEMMs, each ONE call batched over all B*heads (image, head) pairs (strided when
// heads == 1 or B == 1, else over device pointer tables), around two fused row kernels
// (attention_softmax.h): a max-subtracted softmax that also writes the row's log-sum-exp,
// and a softmax backward that recomputes P from lse. The full score matrix
// [B, heads, Sq, Sk] is materialized in pool scratch: 4*B*heads*Sq*Sk bytes, e.g. for
// self-attention (Sq = Sk = S) 128 MiB at
// B=128, heads=4, S=256 (16x16 tokens) or B=8, heads=4, S=1024 (32x32) in the forward, and
// twice that in the backward (scores and dP). Moving it through DRAM (about 4 passes
// forward, 8 backward) is what bounds this design; a fused flash-style kernel that keeps
// score tiles on chip is the next step.
//
// Logit bias (optional, nullptr = none): bias [heads, Sq, Sk] is added to every batch
// element's scores inside the fused softmax (row r of the [B*heads*Sq, Sk] score matrix
// takes bias row r mod heads*Sq), and the backward adds it again when it recomputes P; the
// backward then writes dbias [heads, Sq, Sk] = sum over b of dS (one column-sum kernel over
// the dS scratch). Without a bias the launches are those of the plain op.
//
// `handle` must be bound to `stream` (cuda::cublas() is bound to cuda::stream()); scratch
// comes from cuda::pool_alloc, which is ordered on cuda::stream().
#pragma once

#include <cstdint>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace ddpm::cuda {

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, std::int64_t B,
                       std::int64_t Sq, std::int64_t Sk, std::int64_t C, std::int64_t heads, cublasHandle_t handle,
                       cudaStream_t stream, const float* bias = nullptr);

// Writes (overwrites) dq, dk, dv, and dbias when a bias is given (both or neither).
void attention_backward(const float* q, const float* k, const float* v, const float* lse, const float* grad_out,
                        float* dq, float* dk, float* dv, std::int64_t B, std::int64_t Sq, std::int64_t Sk,
                        std::int64_t C, std::int64_t heads, cublasHandle_t handle, cudaStream_t stream,
                        const float* bias = nullptr, float* dbias = nullptr);

}  // namespace ddpm::cuda
