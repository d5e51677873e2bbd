#include "engine/tensor.h"

#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

std::int64_t shape_numel(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

void throw_dtype_mismatch(DType have, DType want) {
  DDPM_THROW(ValueError, "tensor has dtype " << dtype_name(have) << " but was read as " << dtype_name(want));
}

namespace {

std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype, Device device) {
  for (auto d : shape) DDPM_CHECK(d >= 0, "cannot make a tensor of shape " << shape_str(shape) << ": negative size");
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->storage = std::make_shared<Storage>(static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  return impl;
}

// Host conversion between the two host-computable dtypes.
template <typename From, typename To>
void convert(const void* src, void* dst, std::int64_t n) {
  const From* s = static_cast<const From*>(src);
  To* d = static_cast<To*>(dst);
  for (std::int64_t i = 0; i < n; ++i) d[i] = static_cast<To>(s[i]);
}

bool host_computable(DType t) { return t == DType::f32 || t == DType::f64; }

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) { return Tensor(make_impl(shape, dtype, device)); }

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  DDPM_CHECK(host_computable(dtype), "Tensor::full: dtype " << dtype_name(dtype) << " is not supported yet");
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)), value);
  return from_vector(v, shape, dtype, device);
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, Device device) {
  DDPM_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape),
             "Tensor::from_vector: " << values.size() << " values do not fill shape " << shape_str(shape));
  Tensor host = empty(shape, DType::f32, Device::cpu());
  copy_bytes(host.raw_data(), Device::cpu(), values.data(), Device::cpu(), host.nbytes());
  return device.is_cpu() ? host : host.to(device);
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
  DDPM_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape),
             "Tensor::from_vector: " << values.size() << " values do not fill shape " << shape_str(shape));
  DDPM_CHECK(host_computable(dtype), "Tensor::from_vector: dtype " << dtype_name(dtype) << " is not supported yet");
  Tensor host = empty(shape, dtype, Device::cpu());
  if (dtype == DType::f64)
    copy_bytes(host.raw_data(), Device::cpu(), values.data(), Device::cpu(), host.nbytes());
  else
    convert<double, float>(values.data(), host.raw_data(), host.numel());
  return device.is_cpu() ? host : host.to(device);
}

Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

const Shape& Tensor::shape() const {
  DDPM_CHECK(impl_, "use of an undefined tensor");
  return impl_->shape;
}

std::int64_t Tensor::dim(int axis) const {
  int n = ndim();
  int a = axis < 0 ? axis + n : axis;
  DDPM_CHECK(a >= 0 && a < n, "axis " << axis << " is out of range for a tensor of shape " << shape_str(shape()));
  return shape()[static_cast<std::size_t>(a)];
}

DType Tensor::dtype() const {
  DDPM_CHECK(impl_, "use of an undefined tensor");
  return impl_->dtype;
}

Device Tensor::device() const {
  DDPM_CHECK(impl_, "use of an undefined tensor");
  return impl_->storage->device();
}

std::string Tensor::describe() const {
  if (!impl_) return "undefined tensor";
  return std::string(dtype_name(dtype())) + shape_str(shape()) + " on " + device().str();
}

void* Tensor::raw_data() const {
  DDPM_CHECK(impl_, "use of an undefined tensor");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset_bytes;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor out = empty(shape(), dtype(), device);
  copy_bytes(out.raw_data(), device, raw_data(), this->device(), nbytes());
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  DDPM_CHECK(device().is_cpu() && host_computable(target) && host_computable(dtype()),
             "converting " << describe() << " to " << dtype_name(target) << " is not supported yet");
  Tensor out = empty(shape(), target, device());
  if (target == DType::f64)
    convert<float, double>(raw_data(), out.raw_data(), numel());
  else
    convert<double, float>(raw_data(), out.raw_data(), numel());
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  copy_bytes(out.raw_data(), device(), raw_data(), device(), nbytes());
  return out;
}

void Tensor::copy_from(const Tensor& src) {
  DDPM_CHECK(src.shape() == shape() && src.dtype() == dtype(),
             "copy_from: source " << src.describe() << " does not match destination " << describe());
  copy_bytes(raw_data(), device(), src.raw_data(), src.device(), nbytes());
}

void Tensor::zero_() { zero_bytes(raw_data(), device(), nbytes()); }

std::vector<double> Tensor::to_double_vector() const {
  Tensor host = cpu();
  std::vector<double> v(static_cast<std::size_t>(numel()));
  if (dtype() == DType::f64)
    copy_bytes(v.data(), Device::cpu(), host.raw_data(), Device::cpu(), nbytes());
  else if (dtype() == DType::f32)
    convert<float, double>(host.raw_data(), v.data(), numel());
  else
    DDPM_THROW(ValueError, "reading " << describe() << " on the host is not supported yet");
  return v;
}

std::vector<float> Tensor::to_vector() const {
  if (dtype() == DType::f32) {
    Tensor host = cpu();
    std::vector<float> v(static_cast<std::size_t>(numel()));
    copy_bytes(v.data(), Device::cpu(), host.raw_data(), Device::cpu(), nbytes());
    return v;
  }
  std::vector<double> d = to_double_vector();
  return std::vector<float>(d.begin(), d.end());
}

double Tensor::item() const {
  DDPM_CHECK(numel() == 1, "item() needs a single-element tensor, got " << describe());
  return to_double_vector()[0];
}

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  DDPM_CHECK(impl_, "set_requires_grad on an undefined tensor");
  DDPM_CHECK(!impl_->grad_fn || on, "set_requires_grad(false) on a non-leaf; use detach()");
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl_ && impl_->grad ? Tensor(impl_->grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  DDPM_CHECK(!g.defined() || (g.shape() == shape() && g.dtype() == dtype() && g.device() == device()),
             "set_grad: gradient " << g.describe() << " does not match the tensor " << describe());
  impl_->grad = g.impl();
}

bool Tensor::is_leaf() const { return impl_ && !impl_->grad_fn; }

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset_bytes = impl_->offset_bytes;
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  return Tensor(impl);
}

void Tensor::backward() const {
  DDPM_CHECK(numel() == 1, "backward() without a gradient needs a single-element tensor, got " << describe()
                                                                                              << "; pass a gradient");
  run_backward(*this, Tensor::full(shape(), 1.0, dtype(), device()));
}

void Tensor::backward(const Tensor& grad_output) const { run_backward(*this, grad_output); }

Tensor Tensor::reshape(const Shape& new_shape) const {
  Shape s = new_shape;
  int infer = -1;
  std::int64_t known = 1;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      DDPM_CHECK(infer < 0, "reshape " << shape_str(shape()) << " to " << shape_str(new_shape) << ": two -1 entries");
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    DDPM_CHECK(known > 0 && numel() % known == 0,
               "reshape " << shape_str(shape()) << " to " << shape_str(new_shape) << ": sizes are incompatible");
    s[static_cast<std::size_t>(infer)] = numel() / known;
  }
  DDPM_CHECK(shape_numel(s) == numel(),
             "reshape " << shape_str(shape()) << " (" << numel() << " elements) to " << shape_str(new_shape) << " ("
                        << shape_numel(s) << " elements): element counts differ");
  Tensor out = detach();
  out.impl()->shape = s;
  Shape in_shape = shape();
  record(out, "reshape", {*this}, [in_shape](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.reshape(in_shape)};
  });
  return out;
}

}  // namespace ddpm
