#include "engine/ops/common.h"

namespace ddpm::ops {

void throw_no_cuda(const char* op) {
  DDPM_THROW(ValueError, op << ": the tensor is on CUDA but this build has no CUDA backend");
}

void check_defined(const char* op, const Tensor& t, const char* arg) {
  DDPM_CHECK(t.defined(), op << ": argument '" << arg << "' is an undefined tensor");
}

void check_same_device(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  DDPM_CHECK(a.device() == b.device(), op << ": '" << a_name << "' is on " << a.device().str() << " but '" << b_name
                                          << "' is on " << b.device().str());
}

void check_same_dtype(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  DDPM_CHECK(a.dtype() == b.dtype(), op << ": '" << a_name << "' is " << dtype_name(a.dtype()) << " but '" << b_name
                                        << "' is " << dtype_name(b.dtype()));
}

void check_float(const char* op, const Tensor& t, const char* arg) {
  check_defined(op, t, arg);
  bool ok = t.device().is_cpu() ? (t.dtype() == DType::f32 || t.dtype() == DType::f64) : t.dtype() == DType::f32;
  DDPM_CHECK(ok, op << ": '" << arg << "' is " << t.describe() << "; supported are f32 and f64 on the CPU, f32 on CUDA");
}

void check_ndim(const char* op, const Tensor& t, const char* arg, int ndim) {
  DDPM_CHECK(t.ndim() == ndim, op << ": '" << arg << "' must have " << ndim << " dimensions, got shape "
                                  << shape_str(t.shape()));
}

void check_shape(const char* op, const Tensor& t, const char* arg, const Shape& expected) {
  DDPM_CHECK(t.shape() == expected, op << ": '" << arg << "' must have shape " << shape_str(expected) << ", got "
                                       << shape_str(t.shape()));
}

int normalize_axis(const char* op, int axis, int ndim) {
  int a = axis < 0 ? axis + ndim : axis;
  DDPM_CHECK(a >= 0 && a < ndim, op << ": axis " << axis << " is out of range for " << ndim << " dimensions");
  return a;
}

}  // namespace ddpm::ops
