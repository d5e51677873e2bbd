// engine/ops/elementwise.h: elementwise ops with autograd.
//
// Binary ops broadcast like numpy: shapes are aligned at the right, and an axis of size 1
// (or a missing leading axis) repeats. In NHWC, a per-channel tensor is {C} and a
// per-sample one is {N, 1, 1, 1} (or {N, 1, 1, C} for per-sample-per-channel).
// Backward of a broadcast input sums the gradient over the repeated axes (sum_to).
#pragma once

#include "engine/tensor.h"

namespace ddpm {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);

Tensor scale(const Tensor& x, double alpha);       // alpha * x
Tensor add_scalar(const Tensor& x, double alpha);  // x + alpha
Tensor neg(const Tensor& x);
Tensor silu(const Tensor& x);
// Exact GELU: 0.5 x (1 + erf(x / sqrt(2))) (PyTorch's default; the transformer blocks' MLP).
Tensor gelu(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
// max(x, lo), min(x, hi), and both (lo <= hi); the gradient passes where x is inside the
// closed range, as torch.clamp does.
Tensor clamp_min(const Tensor& x, double lo);
Tensor clamp_max(const Tensor& x, double hi);
Tensor clamp(const Tensor& x, double lo, double hi);
// Masks of 1 and 0 (same dtype and device as x): x > c, x < c. Not differentiable: they
// read x detached, so nothing is recorded on the tape.
Tensor greater_than(const Tensor& x, double c);
Tensor less_than(const Tensor& x, double c);

// Repeats x to `shape` by broadcasting (materialized; recorded on the tape).
Tensor expand_to(const Tensor& x, const Shape& shape);

// dst += src (same shape, dtype and device). In place and never recorded: used for
// gradient accumulation and optimizer-side updates.
void add_(Tensor& dst, const Tensor& src);

// The broadcast shape of a and b, or a ValueError naming op and both shapes.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator*(double s, const Tensor& x) { return scale(x, s); }
inline Tensor operator-(const Tensor& x) { return neg(x); }

}  // namespace ddpm
