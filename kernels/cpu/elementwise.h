// kernels/cpu/elementwise.h: reference loops for elementwise ops, broadcasting, and
// reductions over axes. T is float or double. Plain pointers; no engine types.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/common/broadcast.h"
#include "kernels/common/elementwise_ops.h"

namespace ddpm::cpu {

template <class Op, class T>
void unary_forward(const T* x, T* y, std::int64_t n, T alpha) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = Op::f(x[i], alpha);
}

// gx[i] = g[i] * dy/dx at x[i] (y[i] is the forward output, used by exp and sqrt).
template <class Op, class T>
void unary_backward(const T* x, const T* y, const T* g, T* gx, std::int64_t n, T alpha) {
  for (std::int64_t i = 0; i < n; ++i) gx[i] = g[i] * Op::df(x[i], y[i], alpha);
}

// The output in runs of its last axis: the offsets of a run's first element come from
// broadcast_offsets (a div/mod walk over the axes), the rest step by the last axis' strides.
// F(i, ia, ib) is called for every output element i in order.
template <class F>
void for_each_broadcast_run(const BroadcastMap& m, std::int64_t n, F&& f) {
  const int last = m.ndim - 1;
  const std::int64_t run = last >= 0 ? m.out_shape[last] : 1;
  const std::int64_t sa = last >= 0 ? m.a_stride[last] : 0, sb = last >= 0 ? m.b_stride[last] : 0;
  for (std::int64_t first = 0; first < n; first += run) {
    std::int64_t ia, ib;
    broadcast_offsets(m, first, ia, ib);
    for (std::int64_t j = 0; j < run; ++j) f(first + j, ia + j * sa, ib + j * sb);
  }
}

template <class Op, class T>
void binary(const T* a, const T* b, T* out, const BroadcastMap& m, std::int64_t n) {
  for_each_broadcast_run(m, n, [&](std::int64_t i, std::int64_t ia, std::int64_t ib) { out[i] = Op::f(a[ia], b[ib]); });
}

// out[i] = x[x_offset(i)]: materializes a broadcast (the map's `a` side is x).
template <class T>
void expand(const T* x, T* out, const BroadcastMap& m, std::int64_t n) {
  for_each_broadcast_run(m, n, [&](std::int64_t i, std::int64_t ix, std::int64_t) { out[i] = x[ix]; });
}

// dst[i] += src[i]
template <class T>
void accumulate(T* dst, const T* src, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

// out[o] = sum over r of x[kept(o) + reduced(r)], accumulated in double.
template <class T>
void reduce_sum(const T* x, T* out, const ReduceMap& m, std::int64_t n_out, std::int64_t n_reduced) {
  for (std::int64_t o = 0; o < n_out; ++o) {
    const T* base = x + mixed_radix_offset(o, m.n_kept, m.kept_size, m.kept_stride);
    double acc = 0.0;
    for (std::int64_t r = 0; r < n_reduced; ++r)
      acc += static_cast<double>(base[mixed_radix_offset(r, m.n_reduced, m.reduced_size, m.reduced_stride)]);
    out[o] = static_cast<T>(acc);
  }
}

}  // namespace ddpm::cpu
