// engine/dtype.h: element types. f32 is the working type on both backends; f64 exists on
// the CPU so the reference kernels can be checked against finite differences in double;
// f16 and bf16 are representable (sizes, names, storage) for the mixed-precision step.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ddpm {

enum class DType : std::uint8_t { f32, f64, f16, bf16 };

inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::f16: return 2;
    case DType::bf16: return 2;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
  }
  return "?";
}

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };

}  // namespace ddpm
