// kernels/cpu/embedding.h: reference loops for the sinusoidal timestep embedding and the
// class-embedding table lookup. T is float or double. Plain pointers; no engine types.
//
// timestep_embedding: out [N, dim] from t [N], with half = dim / 2 and i in [0, half):
//   freq_i = exp(-log_max_period * i / freq_denominator)      (denominator half-1 or half)
//   out[n, i] = first(t[n] freq_i),  out[n, half + i] = second(t[n] freq_i)
//   where (first, second) = (sin, cos) if sin_first else (cos, sin);
//   out[n, dim - 1] = 0 when dim is odd. Arguments and sines are computed in double.
// embedding_forward:  out[i, :] = table[ids[i], :]            out [n, dim], table [classes, dim]
// embedding_backward: gtable = 0; gtable[ids[i], :] += g[i, :] for i = 0, 1, ..., n-1 in order
//   (repeated ids accumulate; the CUDA kernel sums in the same order).
#pragma once

#include <cstdint>

namespace ddpm::cpu {

template <class T>
void timestep_embedding(const T* t, T* out, std::int64_t N, std::int64_t dim, double log_max_period,
                        std::int64_t freq_denominator, bool sin_first);

template <class T>
void embedding_forward(const T* table, const std::int64_t* ids, T* out, std::int64_t n, std::int64_t dim);

template <class T>
void embedding_backward(const T* g, const std::int64_t* ids, T* gtable, std::int64_t n, std::int64_t num_classes,
                        std::int64_t dim);

}  // namespace ddpm::cpu
