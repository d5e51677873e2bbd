// kernels/cpu/transpose.h: reference loop for swapping two axes of a contiguous tensor.
//
// Any swap of axes a0 < a1 of a row-major tensor is the swap of the two middle-outer axes
// of its 5-D view [outer, d0, mid, d1, inner], where outer is the product of the sizes
// before a0, d0 = size(a0), mid the product between a0 and a1, d1 = size(a1) and inner the
// product after a1:
//   y [outer, d1, mid, d0, inner],  y[o, j, m, i, r] = x[o, i, m, j, r]
// The operation is its own inverse up to the sizes: the gradient is the same loop with d0
// and d1 exchanged (reading g [outer, d1, mid, d0, inner]). T is float or double.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

template <class T>
void transpose_axes(const T* x, T* y, std::int64_t outer, std::int64_t d0, std::int64_t mid, std::int64_t d1,
                    std::int64_t inner);

}  // namespace ddpm::cpu
