// models/nn/module.h: the smallest module system that names parameters like PyTorch.
//
// A Module registers its own parameters (name -> Tensor) and its child modules
// (name -> Module*), in construction order. named_parameters() walks the tree iteratively
// and returns "child.grandchild.weight" names, which match diffusers' UNet2DModel wherever
// the architecture matches. Modules own their children (unique_ptr members); they are not
// copyable. Packing the parameters into one slab (engine/parameters.h) rewrites each
// parameter's storage in place, so the modules keep working on the slab views.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace ddpm::nn {

using NamedTensor = std::pair<std::string, Tensor>;

// Per-call state: training switches dropout on; the generator draws the dropout masks.
// recompute: activation checkpointing (engine/recompute.h): blocks that support it (the
// UNet's residual and attention blocks) keep only their input for the backward and rerun
// their forward there. Same gradients, less memory, about a third more compute.
struct Context {
  bool training = false;
  Generator* gen = nullptr;
  bool recompute = false;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter of this module and its descendants, with dotted names.
  std::vector<NamedTensor> named_parameters() const;
  std::int64_t num_parameters() const;
  // True when some parameter of this module or its descendants requires a gradient.
  bool any_parameter_requires_grad() const;
  // Every descendant module (this one excluded) with its dotted name ("mid_block.attentions.0.to_q"),
  // depth-first in registration order: the order of named_parameters(). The pointers are the
  // children as registered (a LoRA set attaches adapters to the Linears it finds here).
  std::vector<std::pair<std::string, Module*>> named_modules() const;

 protected:
  Tensor& add_parameter(const std::string& name, Tensor value);
  template <class M>
  M* add_module(const std::string& name, std::unique_ptr<M> m) {
    M* raw = m.get();
    owned_.push_back(std::move(m));
    children_.emplace_back(name, raw);
    return raw;
  }
  // Registers a child owned elsewhere (e.g. an element of a ModuleList). A child registered
  // under the empty name adds its parameters with no prefix of its own: a wrapper that puts
  // two models side by side (a UNet and its text encoder) keeps each model's own names.
  void register_module(const std::string& name, Module* m) { children_.emplace_back(name, m); }

 private:
  std::vector<NamedTensor> params_;
  std::vector<std::pair<std::string, Module*>> children_;
  std::vector<std::unique_ptr<Module>> owned_;
};

// Parameter initialization. PyTorch's default for Linear and Conv: weight and bias
// uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)].
Tensor init_uniform(const Shape& shape, double bound, Generator& gen, Device device);
Tensor init_fan_in(const Shape& shape, std::int64_t fan_in, Generator& gen, Device device);

}  // namespace ddpm::nn
