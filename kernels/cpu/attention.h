// kernels/cpu/attention.h: the reference multi-head attention core, forward and backward.
//
// Layout: q, k, v, out are [B, S, C] row-major (S = H*W tokens of an NHWC activation, C
// channels fastest). Head h owns channels [h*d, (h+1)*d), d = C / heads, so q_h for batch b
// is the [S, d] matrix at q + b*S*C + h*d with row stride C (no permute is needed).
//
// Forward, per (b, h), with a = d^(-1/4) applied to q and k each (improved diffusion):
//   scores = (a q_h)(a k_h)^T = q_h k_h^T / sqrt(d)              [S, S]
//   P      = softmax(scores) along each row                       [S, S]
//   out_h  = P v_h                                                 [S, d]
//   lse    = log(sum_j exp(scores_ij)) per row i                   [B, heads, S]
// Only lse is kept for the backward, which recomputes P = exp(scores - lse) (as flash
// attention does): S values per row instead of S*S.
//
// Backward, with g = dL/dout:
//   dV = P^T g_h,  dP = g_h v_h^T,  dS = P * (dP - rowsum(dP * P)),
//   dQ = dS k_h / sqrt(d),  dK = dS^T q_h / sqrt(d).
// The gradients are written (not accumulated): dq, dk, dv are fully overwritten.
//
// Readable loops, T = float or double, every sum accumulated in double.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse, std::int64_t B, std::int64_t S,
                       std::int64_t C, std::int64_t heads);

template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const T* lse, const T* grad_out, T* dq, T* dk, T* dv,
                        std::int64_t B, std::int64_t S, std::int64_t C, std::int64_t heads);

}  // namespace ddpm::cpu
