// engine/ops/layer_norm.h: LayerNorm over the last axis, one tape node with a hand-written
// backward (the normalization of the transformer blocks of the UNet's spatial transformers
// and of the text encoder, Rombach et al. 2022 sec. 3.3).
//
// x is [..., C], any rank >= 1: every run of C channels (a token) is normalized on its own
// (Ba et al. 2016, PyTorch LayerNorm(C) semantics: biased variance, eps inside the square
// root), then scaled and shifted per channel:
//   y = (x - mu) * rstd * gamma + beta,   mu, var over the C channels,  rstd = 1/sqrt(var + eps)
// with gamma, beta [C] (same dtype and device as x). The forward saves mean and rstd, one
// pair per row; the backward recomputes xhat from x and gives dx, dgamma, dbeta
// (kernels/cpu/layer_norm.h has the equations). Statistics are fp32 on CUDA, double on the CPU.
#pragma once

#include "engine/tensor.h"

namespace ddpm {

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5);

}  // namespace ddpm
