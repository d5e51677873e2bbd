// engine/ops/linalg.h: matrix products with autograd (matmul, and the dense layer linear).
//
// Layouts (row-major, contiguous):
//   matmul  a [M, K] (or [K, M] with transpose_a)  x  b [K, N] (or [N, K] with transpose_b)
//           batched: a [B, M, K] with b [B, K, N]; either operand may instead be 2-D and is
//           then shared by every matrix of the batch. Transposes apply to the last two axes.
//   linear  x [..., in] (any leading axes: NHWC activations [N, H, W, C], tokens [B, S, C],
//           time embeddings [N, C]), weight [out, in] (PyTorch's nn.Linear layout), bias [out].
//
// Gradient rules (G = dL/dC, C = A B; the transposed forms follow by transposing):
//   dA = G B^T,   dB = A^T G;   an operand shared across the batch sums its gradient over it.
//   linear y = x W^T + b:  dx = G W,  dW = G^T x,  db = sum of G over all leading axes.
// The kernels are the row-major GEMMs of kernels/cpu/gemm.h (OpenBLAS, f32 and f64) and
// kernels/cuda/gemm.h (cuBLAS, f32, TF32 off).
#pragma once

#include "engine/tensor.h"

namespace ddpm {

// op(a) op(b), op = transpose of the last two axes when the flag is set.
// Shapes: [M, N] for 2-D operands, [B, M, N] when either is 3-D.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

// y[..., out] = x[..., in] W^T + b; bias may be undefined (no bias).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace ddpm
