// kernels/cuda/attention_softmax.h: the two row kernels of the attention core (fp32), run
// between the cuBLAS products of kernels/cuda/attention.cu over the materialized score
// matrix [B, heads, Sq, Sk], seen here as `rows` = B*heads*Sq rows of `cols` = Sk floats
// (any cols >= 1: Sk = 1 for a single context token, 77 for a CLIP-length prompt).
//
// Forward, in place per row i (the max is subtracted so exp never overflows):
//   m_i = max_j x_ij,  l_i = sum_j exp(x_ij - m_i)
//   x_ij <- exp(x_ij - m_i) / l_i,    lse_i = m_i + log(l_i)
// Backward, in place per row i, with the lse saved by the forward (softmax Jacobian
// applied to dP: dS = P * (dP - rowsum(P * dP)), see kernels/cpu/attention.h):
//   p_ij = exp(s_ij - lse_i)                 written over the scores
//   ds_ij = p_ij (dp_ij - sum_k p_ik dp_ik)  written over dP
//
// Optional logit bias (nullptr = none): bias holds bias_rows rows of cols floats and row r
// of x adds bias row r mod bias_rows before the softmax (x_ij + b_(r mod bias_rows)j; the
// attention passes [heads, Sq, Sk], so the rows of [B, heads, Sq, Sk] wrap over the batch);
// the backward adds it to s_ij the same way when it recomputes p_ij.
//
// One warp per row. Rows up to 1024 floats are held in registers: every element is read
// once and written once (8 bytes per float forward, 16 backward, the minimum for an
// unfused pipeline), exp is evaluated once per element, and the loads are 16-byte vectors
// when the row length allows. Longer rows fall back to a streaming three-pass loop.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

// The longest row kept in registers (32 floats per lane); longer rows stream from memory.
constexpr std::int64_t kSoftmaxRegisterRowMax = 1024;

void attention_softmax_rows(float* x, float* lse, std::int64_t rows, std::int64_t cols, cudaStream_t stream,
                            const float* bias = nullptr, std::int64_t bias_rows = 0);

void attention_softmax_backward_rows(float* scores_to_p, float* dp_to_ds, const float* lse, std::int64_t rows,
                                     std::int64_t cols, cudaStream_t stream, const float* bias = nullptr,
                                     std::int64_t bias_rows = 0);

}  // namespace ddpm::cuda
