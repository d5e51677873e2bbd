// engine/parameters.h: every trainable parameter of a model in one contiguous slab.
//
// Models create their parameters as ordinary named tensors ("down_blocks.0.resnets.0.conv1.weight"),
// then hand the list to a ParameterSlab. pack() moves them into ONE value storage and ONE
// gradient storage (ARCHITECTURE decision 4):
//
//   values: [ p0 | pad | p1 | pad | ... | pN-1 | pad ]     flat, slab_numel() elements
//   grads:  [ g0 | pad | g1 | pad | ... | gN-1 | pad ]     same offsets
//
// Each parameter's TensorImpl is rewritten in place (storage + offset_bytes), so every handle
// the model holds now views the value slab and keeps its values. Its .grad is pre-bound to
// the matching view of the gradient slab; autograd accumulates leaf gradients with +=, so a
// backward pass writes straight into the slab. Zero-grad, AdamW, gradient-norm clipping, EMA
// and a future all-reduce then each see one flat buffer: one kernel or one call each.
//
// Each parameter starts a multiple of 256 bytes after the slab's start. CUDA pool blocks are
// at least 256-byte aligned, so cuBLAS and cuDNN see every weight aligned as a fresh
// allocation would be; CPU storages are 64-byte aligned. The padding elements are zero in
// both slabs and stay zero under AdamW (g = 0, p = 0), EMA and clipping.
//
// Devices and dtypes: f32 and f64 on the CPU (f64 for the reference tests), f32 on CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace ddpm {

// One parameter inside the slab. `value` is the model's own handle (its impl views the value
// slab); `grad` is the view of the gradient slab bound as value.grad().
struct SlabEntry {
  std::string name;
  Tensor value;
  Tensor grad;
  std::int64_t offset = 0;  // first element inside the slab
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class ParameterSlab {
 public:
  // Byte alignment of every parameter's first element inside the slab.
  static constexpr std::size_t kAlignBytes = 256;

  ParameterSlab() = default;
  explicit ParameterSlab(const NamedTensors& params) { pack(params); }
  ParameterSlab(const ParameterSlab&) = delete;
  ParameterSlab& operator=(const ParameterSlab&) = delete;
  ParameterSlab(ParameterSlab&&) = default;
  ParameterSlab& operator=(ParameterSlab&&) = default;

  // Moves the tensors into the slab on their own device (all must share device and dtype,
  // be leaves, and have distinct names). Values are kept; gradients start at zero; every
  // tensor gets requires_grad. May be called once, on an empty slab.
  void pack(const NamedTensors& params);

  // Moves both slabs to `device` and rewrites every parameter to view the new storage
  // (the model's handles follow). Gradients are carried over. CUDA needs f32.
  void to(Device device);

  // The whole slab as flat 1-D tensors of slab_numel() elements (views, not copies).
  const Tensor& values() const { return values_; }
  const Tensor& grads() const { return grads_; }

  // Sets every gradient to zero: one memset over the gradient slab.
  void zero_grad();

  std::size_t size() const { return entries_.size(); }  // number of parameters
  bool empty() const { return entries_.empty(); }
  std::int64_t numel() const { return numel_; }                // parameter elements, no padding
  std::int64_t slab_numel() const { return slab_numel_; }     // elements including padding
  DType dtype() const;
  Device device() const;

  // In packing order.
  const std::vector<SlabEntry>& entries() const { return entries_; }
  const SlabEntry& entry(std::size_t index) const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // The parameter called `name`; a ValueError when there is none.
  const Tensor& at(const std::string& name) const;
  std::size_t index_of(const std::string& name) const;

  // Parameter `index`'s view inside another slab-shaped flat tensor (AdamW moments, EMA
  // values): same offset and shape as the parameter itself. Used by checkpoints to save
  // and load per-parameter state.
  Tensor slice(const Tensor& flat, std::size_t index) const;

 private:
  // Points every entry's impl at values_ and binds its grad to a view of grads_.
  void bind();

  std::vector<SlabEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
  Tensor values_, grads_;
  std::int64_t numel_ = 0, slab_numel_ = 0;
};

}  // namespace ddpm
