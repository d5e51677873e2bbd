// engine/parameters.cpp: packing named parameters into the value and gradient slabs.
#include "engine/parameters.h"

#include <unordered_set>

#include "engine/error.h"

namespace ddpm {

namespace {

// A view of `count` elements of `flat` starting at element `offset`, with `shape`.
Tensor view_of(const Tensor& flat, std::int64_t offset, const Shape& shape) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = flat.impl()->storage;
  impl->offset_bytes = flat.impl()->offset_bytes + static_cast<std::size_t>(offset) * dtype_size(flat.dtype());
  impl->shape = shape;
  impl->dtype = flat.dtype();
  return Tensor(impl);
}

std::int64_t round_up(std::int64_t n, std::int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

}  // namespace

void ParameterSlab::pack(const NamedTensors& params) {
  DDPM_CHECK(entries_.empty(), "ParameterSlab::pack: this slab already holds " << entries_.size()
                                                                                << " parameters; pack once");
  DDPM_CHECK(!params.empty(), "ParameterSlab::pack: the parameter list is empty");
  const Tensor& first = params.front().second;
  DDPM_CHECK(first.defined(), "ParameterSlab::pack: parameter '" << params.front().first << "' is undefined");
  const DType dtype = first.dtype();
  const Device device = first.device();
  DDPM_CHECK(dtype == DType::f32 || (dtype == DType::f64 && device.is_cpu()),
             "ParameterSlab::pack: parameters must be f32 (or f64 on the CPU), got " << first.describe());

  // Validate everything before touching any tensor, so a failed pack changes nothing.
  const std::int64_t align = static_cast<std::int64_t>(kAlignBytes / dtype_size(dtype));
  std::unordered_set<std::string> names;
  std::unordered_set<const TensorImpl*> impls;
  std::vector<std::int64_t> offsets;
  std::int64_t offset = 0, numel = 0;
  for (const auto& [name, t] : params) {
    DDPM_CHECK(!name.empty(), "ParameterSlab::pack: a parameter has an empty name");
    DDPM_CHECK(t.defined(), "ParameterSlab::pack: parameter '" << name << "' is undefined");
    DDPM_CHECK(names.insert(name).second, "ParameterSlab::pack: the name '" << name << "' is used twice");
    DDPM_CHECK(impls.insert(t.impl().get()).second,
               "ParameterSlab::pack: parameter '" << name << "' is the same tensor as an earlier one");
    DDPM_CHECK(t.is_leaf(), "ParameterSlab::pack: parameter '" << name << "' (" << t.describe()
                                                                << ") was produced by an op; parameters must be leaves");
    DDPM_CHECK(t.dtype() == dtype && t.device() == device,
               "ParameterSlab::pack: parameter '" << name << "' is " << t.describe() << " but '"
                                                  << params.front().first << "' is " << first.describe()
                                                  << "; all parameters must share dtype and device");
    offsets.push_back(offset);
    offset = round_up(offset + t.numel(), align);
    numel += t.numel();
  }

  // Zeroed slabs (so the padding is zero), then copy every parameter's values in.
  values_ = Tensor::zeros({offset}, dtype, device);
  grads_ = Tensor::zeros({offset}, dtype, device);
  slab_numel_ = offset;
  numel_ = numel;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& [name, t] = params[i];
    Tensor dst = view_of(values_, offsets[i], t.shape());
    copy_bytes(dst.raw_data(), device, t.raw_data(), device, t.nbytes());
    index_[name] = i;
    entries_.push_back(SlabEntry{name, t, Tensor(), offsets[i]});
  }
  bind();
}

void ParameterSlab::bind() {
  for (SlabEntry& e : entries_) {
    TensorImpl& impl = *e.value.impl();
    impl.storage = values_.impl()->storage;
    impl.offset_bytes = values_.impl()->offset_bytes + static_cast<std::size_t>(e.offset) * dtype_size(impl.dtype);
    impl.requires_grad = true;
    e.grad = view_of(grads_, e.offset, impl.shape);
    e.value.set_grad(e.grad);
  }
}

void ParameterSlab::to(Device device) {
  DDPM_CHECK(!entries_.empty(), "ParameterSlab::to: the slab is empty");
  if (device == values_.device()) return;
  DDPM_CHECK(device.is_cpu() || dtype() == DType::f32,
             "ParameterSlab::to: CUDA slabs are f32, this one is " << dtype_name(dtype()));
  values_ = values_.to(device);
  grads_ = grads_.to(device);
  bind();
}

void ParameterSlab::zero_grad() {
  if (grads_.defined()) grads_.zero_();
}

DType ParameterSlab::dtype() const {
  DDPM_CHECK(values_.defined(), "ParameterSlab: the slab is empty (call pack first)");
  return values_.dtype();
}

Device ParameterSlab::device() const {
  DDPM_CHECK(values_.defined(), "ParameterSlab: the slab is empty (call pack first)");
  return values_.device();
}

const SlabEntry& ParameterSlab::entry(std::size_t index) const {
  DDPM_CHECK(index < entries_.size(),
             "ParameterSlab::entry: index " << index << " is out of range for " << entries_.size() << " parameters");
  return entries_[index];
}

std::size_t ParameterSlab::index_of(const std::string& name) const {
  auto it = index_.find(name);
  DDPM_CHECK(it != index_.end(), "ParameterSlab: there is no parameter named '" << name << "' among "
                                                                                << entries_.size() << " parameters");
  return it->second;
}

const Tensor& ParameterSlab::at(const std::string& name) const { return entries_[index_of(name)].value; }

Tensor ParameterSlab::slice(const Tensor& flat, std::size_t index) const {
  const SlabEntry& e = entry(index);
  DDPM_CHECK(flat.defined() && flat.ndim() == 1 && flat.numel() == slab_numel_ && flat.dtype() == dtype(),
             "ParameterSlab::slice: expected a flat " << dtype_name(dtype()) << "[" << slab_numel_
                                                      << "] slab-shaped tensor, got " << flat.describe());
  return view_of(flat, e.offset, e.value.shape());
}

}  // namespace ddpm
