// kernels/cpu/concat.cpp: the strided row copy of kernels/cpu/concat.h.
#include "kernels/cpu/concat.h"

#include <cstring>

namespace ddpm::cpu {

template <class T>
void copy_rows(const T* src, std::int64_t src_pitch, T* dst, std::int64_t dst_pitch, std::int64_t rows,
               std::int64_t row_len) {
  if (row_len == 0) return;
  for (std::int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * dst_pitch, src + r * src_pitch, static_cast<std::size_t>(row_len) * sizeof(T));
}

template void copy_rows<float>(const float*, std::int64_t, float*, std::int64_t, std::int64_t, std::int64_t);
template void copy_rows<double>(const double*, std::int64_t, double*, std::int64_t, std::int64_t, std::int64_t);

}  // namespace ddpm::cpu
