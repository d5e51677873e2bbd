// engine/ops/attention.h: the multi-head attention core of the UNet's attention blocks
// (self-attention) and of their cross-attention to a context sequence, one tape node with a
// hand-written backward.
//
// Layout: q and the output are [B, Sq, C]; k and v are [B, Sk, C]. Self-attention has
// Sq = Sk = H*W tokens (an NHWC activation [N, H, W, C] reshapes to [N, H*W, C] for free);
// cross-attention (Rombach et al. 2022 sec. 3.3) takes q from the Sq image tokens and k, v
// from Sk context tokens (e.g. a text encoder's L tokens projected to C channels). The
// Q/K/V and output projections are ordinary linear layers around this op. Head h uses
// channels [h*d, (h+1)*d), d = C/heads, and each query row attends over the Sk keys:
//   out_h = softmax((q_h d^(-1/4)) (k_h d^(-1/4))^T) v_h       scores [Sq, Sk] per head
// q and k are each scaled by d^(-1/4) (improved diffusion's convention, stable in low
// precision); mathematically that is the usual 1/sqrt(d) on the product. The softmax is
// always computed in fp32 (or f64 on the CPU).
//
// Gradient rule (P = softmax(scores), g = dL/dout, per head):
//   dV = P^T g,  dP = g V^T,  dS = P * (dP - rowsum(dP * P)),
//   dQ = dS K d^(-1/2),  dK = dS^T Q d^(-1/2).
//
// What the backward keeps: q, k, v (handles to tensors that exist anyway) and the per-row
// log-sum-exp lse [B, heads, Sq]. The backward recomputes P = exp(q k^T / sqrt(d) - lse)
// with one extra GEMM instead of keeping P, which would hold B*heads*Sq*Sk values per
// attention block from forward to backward (128 MiB in fp32 at B=8, heads=4, 32x32
// tokens of self-attention; a UNet has several such blocks). lse costs B*heads*Sq values
// (128 KiB there).
//
// Logit bias (the overload with `bias`): bias [heads, Sq, Sk], the same for every batch
// element, is added to the scores before the softmax (Shaw et al. 2018's relative position
// term in its scalar form, as in T5, Raffel et al. 2020 sec. 2.1):
//   out_h = softmax(q_h k_h^T / sqrt(d) + bias_h) v_h
// The rule above holds with these P, and dBias_h = sum over the batch of dS_bh (the bias
// enters the scores additively and is broadcast over B). lse includes the bias, so the
// backward recomputes P from q, k, bias and lse. A zero bias gives the plain op's result
// bit for bit (x + 0 = x in floating point); the plain op does no bias work at all.
// The CUDA version still materializes the score matrix transiently inside the op (see
// kernels/cuda/attention.h).
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace ddpm {

// q: [B, Sq, C]; k, v: [B, Sk, C] (k and v the same shape; Sk may differ from Sq, e.g.
// Sk = 1); same dtype and device; num_heads must divide C. Returns [B, Sq, C].
// cross: the call attends to context tokens (k, v projected from a text encoder's output).
// The math is the same; only the op's name changes, "cross_attention" and
// "cross_attention.backward" instead of "attention" and "attention.backward" (profiler rows,
// NVTX ranges, tape nodes, messages), so a profile tells the two kinds apart.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int num_heads, bool cross = false);

// The same with an additive logit bias [num_heads, Sq, Sk] (same dtype and device as q),
// broadcast over the batch; its gradient flows when it requires one (e.g. a bias table
// gathered from a parameter, models/unet/temporal.h).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, int num_heads,
                 bool cross = false);

// The number of heads for `channels` given either a head count or a per-head width, as in
// improved diffusion's num_heads / num_head_channels: when num_head_channels > 0 it wins
// and must divide channels; otherwise num_heads is used and must divide channels.
int attention_heads(std::int64_t channels, int num_heads, int num_head_channels = -1);

}  // namespace ddpm
