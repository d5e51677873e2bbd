// engine/ops/common.h: the checks and dispatch helpers every op file uses.
//
// The ops layer owns validation (with messages that name the op, the argument and the
// shapes), output allocation, tape recording, and the choice of kernel: CPU reference
// kernels are templates over float and double; CUDA kernels are fp32.
#pragma once

#include <string>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/tensor.h"

#if DDPM_HAVE_CUDA
#include "kernels/cuda/context.h"
// Runs a CUDA kernel call; in builds without CUDA it throws instead.
#define DDPM_ON_CUDA(op_name, ...) __VA_ARGS__
#else
#define DDPM_ON_CUDA(op_name, ...) ::ddpm::ops::throw_no_cuda(op_name)
#endif

namespace ddpm::ops {

[[noreturn]] void throw_no_cuda(const char* op);

void check_defined(const char* op, const Tensor& t, const char* arg);
void check_same_device(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name);
void check_same_dtype(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name);
// f32 or f64 on the CPU, f32 on CUDA.
void check_float(const char* op, const Tensor& t, const char* arg);
void check_ndim(const char* op, const Tensor& t, const char* arg, int ndim);
void check_shape(const char* op, const Tensor& t, const char* arg, const Shape& expected);

// Calls f(float{}) or f(double{}) for a CPU tensor's dtype.
template <class F>
void cpu_dispatch(const char* op, DType t, F&& f) {
  if (t == DType::f32)
    f(float{});
  else if (t == DType::f64)
    f(double{});
  else
    DDPM_THROW(ValueError, op << ": dtype " << dtype_name(t) << " is not supported on the CPU");
}

// Normalizes an axis (negative counts from the end) and checks its range.
int normalize_axis(const char* op, int axis, int ndim);

}  // namespace ddpm::ops
