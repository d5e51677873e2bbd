// kernels/cpu/attention.h: the reference multi-head attention core, forward and backward.
//
// Layout: q, out are [B, Sq, C] and k, v are [B, Sk, C], row-major with channels fastest.
// Self-attention has Sq = Sk = H*W tokens of an NHWC activation; cross-attention has Sq
// image tokens and Sk context tokens (a text encoder's L tokens, Rombach et al. 2022 sec.
// 3.3). Head h owns channels [h*d, (h+1)*d), d = C / heads, so q_h for batch b is the
// [Sq, d] matrix at q + b*Sq*C + h*d with row stride C (no permute is needed); k_h, v_h
// are [Sk, d] at k + b*Sk*C + h*d.
//
// Forward, per (b, h), with a = d^(-1/4) applied to q and k each (improved diffusion):
//   scores = (a q_h)(a k_h)^T = q_h k_h^T / sqrt(d)              [Sq, Sk]
//   P      = softmax(scores) along each row (over the Sk keys)    [Sq, Sk]
//   out_h  = P v_h                                                 [Sq, d]
//   lse    = log(sum_j exp(scores_ij)) per row i                   [B, heads, Sq]
// Only lse is kept for the backward, which recomputes P = exp(scores - lse) (as flash
// attention does): one value per query row instead of Sk.
//
// Backward, with g = dL/dout:
//   dV = P^T g_h,  dP = g_h v_h^T,  dS = P * (dP - rowsum(dP * P)),
//   dQ = dS k_h / sqrt(d),  dK = dS^T q_h / sqrt(d).
// (dV and dK are [Sk, d] per head: sums over the Sq query rows.)
// The gradients are written (not accumulated): dq, dk, dv are fully overwritten.
//
// Optional additive logit bias (relative position bias, Shaw et al. 2018 / T5, Raffel et
// al. 2020 sec. 2.1): bias [heads, Sq, Sk], shared by every batch element, is added to the
// scores before the softmax, scores_ij += bias[h, i, j]. Its gradient is the score
// gradient summed over the batch: dBias[h] = sum_b dS_bh (written when dbias is not null).
// bias = nullptr is the plain op, every loop exactly as without the option.
//
// Readable loops, T = float or double, every sum accumulated in double.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse, std::int64_t B, std::int64_t Sq,
                       std::int64_t Sk, std::int64_t C, std::int64_t heads, const T* bias = nullptr);

template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const T* lse, const T* grad_out, T* dq, T* dk, T* dv,
                        std::int64_t B, std::int64_t Sq, std::int64_t Sk, std::int64_t C, std::int64_t heads,
                        const T* bias = nullptr, T* dbias = nullptr);

}  // namespace ddpm::cpu
