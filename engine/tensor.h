// engine/tensor.h: the tensor handle.
//
// A Tensor is a shared handle to a TensorImpl: copying a Tensor copies the handle, not the
// data (like torch.Tensor). Tensors are always contiguous and row-major; a tensor is a
// (storage, byte offset, shape, dtype) view, so reshape and parameter-slab views share
// bytes. Images are NHWC: shape {N, H, W, C}, channels fastest.
//
// Autograd state lives on the impl: requires_grad, the accumulated .grad of a leaf, and
// grad_fn, the tape node that produced a non-leaf (see engine/autograd.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/storage.h"

namespace ddpm {

using Shape = std::vector<std::int64_t>;
std::string shape_str(const Shape& s);  // "[2, 32, 32, 64]"
std::int64_t shape_numel(const Shape& s);

struct Node;

// Thrown by Tensor::data<T>() when T does not match the tensor's dtype.
[[noreturn]] void throw_dtype_mismatch(DType have, DType want);

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  std::size_t offset_bytes = 0;
  Shape shape;
  DType dtype = DType::f32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient (leaves only)
  std::shared_ptr<Node> grad_fn;     // producer on the tape (non-leaves only)
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- factories -------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
  // From host values (converted to dtype), then moved to device.
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f64,
                            Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu());

  // --- metadata --------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  std::int64_t dim(int axis) const;  // negative axis counts from the end
  int ndim() const { return static_cast<int>(shape().size()); }
  std::int64_t numel() const { return shape_numel(shape()); }
  DType dtype() const;
  Device device() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype()); }
  std::string describe() const;  // "f32[2, 3] on cpu"

  void* raw_data() const;
  template <typename T> T* data() const;  // checks that T matches dtype()

  // --- copies and conversions (not recorded on the tape) ----------------------
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;  // f32 <-> f64 on the CPU; f32 identity on CUDA
  Tensor cpu() const { return to(Device::cpu()); }
  Tensor clone() const;
  void copy_from(const Tensor& src);  // same shape and dtype, any devices
  void zero_();
  std::vector<float> to_vector() const;          // host copy as float
  std::vector<double> to_double_vector() const;  // host copy as double
  double item() const;                           // single-element tensor

  // --- autograd ----------------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on);
  Tensor grad() const;  // undefined until a backward reached this leaf
  void set_grad(const Tensor& g);
  bool is_leaf() const;
  // A new handle to the same bytes, cut from the tape (no grad_fn, no requires_grad).
  Tensor detach() const;
  // Backpropagates from this tensor; a single-element tensor uses gradient 1.
  void backward() const;
  void backward(const Tensor& grad_output) const;

  // A view with a new shape and the same element count (recorded on the tape).
  // One dimension may be -1 and is inferred.
  Tensor reshape(const Shape& shape) const;

  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }
  bool same_as(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

template <typename T> T* Tensor::data() const {
  static_assert(sizeof(T) > 0, "");
  if (dtype() != dtype_of<T>::value) throw_dtype_mismatch(dtype(), dtype_of<T>::value);
  return static_cast<T*>(raw_data());
}

}  // namespace ddpm
