// kernels/cpu/concat.h: the one copy that concat, split and slice are made of.
//
// A contiguous tensor seen around an axis is a matrix [outer, size(axis) * inner] (outer =
// product of the sizes before the axis, inner = product after it). A range of the axis is
// then a block of columns, so every concat/slice is a strided copy of `rows` rows of
// `row_len` elements:  dst[r * dst_pitch + j] = src[r * src_pitch + j],  j < row_len.
// Pitches and lengths count elements. T is float or double.
#pragma once

#include <cstdint>

namespace ddpm::cpu {

template <class T>
void copy_rows(const T* src, std::int64_t src_pitch, T* dst, std::int64_t dst_pitch, std::int64_t rows,
               std::int64_t row_len);

}  // namespace ddpm::cpu
