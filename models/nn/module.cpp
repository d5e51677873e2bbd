#include "models/nn/module.h"

#include <cmath>

#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::nn {

Tensor& Module::add_parameter(const std::string& name, Tensor value) {
  for (const auto& p : params_) DDPM_CHECK(p.first != name, "module: parameter '" << name << "' registered twice");
  value.set_requires_grad(true);
  params_.emplace_back(name, std::move(value));
  return params_.back().second;
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  // Depth-first in registration order, with an explicit stack (no recursion).
  std::vector<std::pair<std::string, const Module*>> stack{{"", this}};
  while (!stack.empty()) {
    auto [prefix, m] = stack.back();
    stack.pop_back();
    for (const auto& p : m->params_) out.emplace_back(prefix + p.first, p.second);
    for (auto it = m->children_.rbegin(); it != m->children_.rend(); ++it)
      stack.emplace_back(it->first.empty() ? prefix : prefix + it->first + ".", it->second);
  }
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, Module*>> out, stack;
  // Depth-first in registration order, like named_parameters; a child registered under the
  // empty name takes its parent's name.
  const auto push_children = [&stack](const Module& m, const std::string& name) {
    for (auto it = m.children_.rbegin(); it != m.children_.rend(); ++it)
      stack.emplace_back(it->first.empty() ? name : name.empty() ? it->first : name + "." + it->first, it->second);
  };
  push_children(*this, "");
  while (!stack.empty()) {
    auto [name, m] = stack.back();
    stack.pop_back();
    out.emplace_back(name, m);
    push_children(*m, name);
  }
  return out;
}

std::int64_t Module::num_parameters() const {
  std::int64_t n = 0;
  for (const auto& p : named_parameters()) n += p.second.numel();
  return n;
}

bool Module::any_parameter_requires_grad() const {
  std::vector<const Module*> stack{this};
  while (!stack.empty()) {
    const Module* m = stack.back();
    stack.pop_back();
    for (const auto& p : m->params_)
      if (p.second.requires_grad()) return true;
    for (const auto& c : m->children_) stack.push_back(c.second);
  }
  return false;
}

Tensor init_uniform(const Shape& shape, double bound, Generator& gen, Device device) {
  // u in [0, 1) -> [-bound, bound)
  Tensor u = rand(shape, gen, device);
  return add_scalar(scale(u, 2 * bound), -bound);
}

Tensor init_fan_in(const Shape& shape, std::int64_t fan_in, Generator& gen, Device device) {
  return init_uniform(shape, 1.0 / std::sqrt(static_cast<double>(fan_in)), gen, device);
}

}  // namespace ddpm::nn
