// models/nn/lora.cpp: LoRA adapters (contract in lora.h).
#include "models/nn/lora.h"

#include <cmath>
#include <mutex>
#include <unordered_map>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"

namespace ddpm::nn {

const std::vector<std::string> kLoraTargetModules = {"to_q", "to_k", "to_v", "to_out.0"};

namespace {

// The adapters of the living LoraSets, by their projection's weight (lora.h).
struct AdapterTable {
  std::mutex mutex;
  std::unordered_map<const TensorImpl*, const LoraAdapter*> by_weight;
};

AdapterTable& adapter_table() {
  static AdapterTable table;
  return table;
}

const LoraAdapter* find_adapter(const Tensor& weight) {
  AdapterTable& t = adapter_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  if (t.by_weight.empty()) return nullptr;
  const auto it = t.by_weight.find(weight.impl().get());
  return it == t.by_weight.end() ? nullptr : it->second;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

LoraAdapter::LoraAdapter(const Tensor& base_weight, int rank, double alpha, Generator& gen)
    : scale_(alpha / rank) {
  const std::int64_t out = base_weight.dim(0), in = base_weight.dim(1);
  // PEFT: kaiming_uniform_(A, a = sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain sqrt(3 / fan_in)
  // = 1 / sqrt(in), fan_in = in for A [r, in]. B = 0.
  Tensor a = init_uniform({rank, in}, 1.0 / std::sqrt(static_cast<double>(in)), gen, base_weight.device());
  if (a.dtype() != base_weight.dtype()) a = a.to(base_weight.dtype());
  lora_A = add_parameter("lora_A.weight", a);
  lora_B = add_parameter("lora_B.weight", Tensor::zeros({out, rank}, base_weight.dtype(), base_weight.device()));
}

Tensor LoraAdapter::delta(const Tensor& x) const {
  // [..., in] -> [..., r] -> [..., out], then times s.
  return ddpm::scale(linear(linear(x, lora_A), lora_B), scale_);
}

Tensor LoraAdapter::delta_weight() const {
  return ddpm::scale(matmul(lora_B, lora_A), scale_);  // [out, r] x [r, in] = [out, in]
}

LoraSet::LoraSet(const Module& model, int rank, double alpha, Generator& gen) {
  DDPM_CHECK(rank >= 1, "LoRA: the rank must be at least 1, got " << rank);
  DDPM_CHECK(std::isfinite(alpha) && alpha > 0, "LoRA: alpha must be positive, got " << alpha);
  for (const auto& [name, p] : model.named_parameters()) {
    bool target = false;
    for (const std::string& m : kLoraTargetModules) target = target || ends_with(name, "." + m + ".weight") || name == m + ".weight";
    if (!target || p.ndim() != 2) continue;
    const std::string projection = name.substr(0, name.size() - std::string(".weight").size());
    DDPM_CHECK(rank <= std::min(p.dim(0), p.dim(1)),
               "LoRA: rank " << rank << " exceeds the width of " << projection << " " << shape_str(p.shape())
                             << "; a low-rank adapter needs r <= min(in, out)");
    targets_.push_back(projection);
    base_weights_.push_back(p);
    adapters_.push_back(std::make_unique<LoraAdapter>(p, rank, alpha, gen));
    register_module(projection, adapters_.back().get());
  }
  DDPM_CHECK(!targets_.empty(), "LoRA: the model has no attention projections (to_q, to_k, to_v, to_out.0) to "
                                "adapt");
  AdapterTable& t = adapter_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  for (std::size_t i = 0; i < targets_.size(); ++i)
    DDPM_CHECK(t.by_weight.count(base_weights_[i].impl().get()) == 0,
               "LoRA: " << targets_[i] << " already has an adapter (one LoRA set per model)");
  for (std::size_t i = 0; i < targets_.size(); ++i) t.by_weight[base_weights_[i].impl().get()] = adapters_[i].get();
}

LoraSet::~LoraSet() {
  AdapterTable& t = adapter_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  for (std::size_t i = 0; i < base_weights_.size(); ++i) {
    const auto it = t.by_weight.find(base_weights_[i].impl().get());
    if (it != t.by_weight.end() && it->second == adapters_[i].get()) t.by_weight.erase(it);
  }
}

void LoraSet::merge() {
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < adapters_.size(); ++i) {
    Tensor w = base_weights_[i];
    w.copy_from(add(base_weights_[i].detach(), adapters_[i]->delta_weight()));
  }
}

bool adapters_need_grad(const Module& m) {
  {
    AdapterTable& t = adapter_table();
    std::lock_guard<std::mutex> lock(t.mutex);
    if (t.by_weight.empty()) return false;
  }
  for (const auto& [name, p] : m.named_parameters()) {
    const LoraAdapter* a = find_adapter(p);
    if (a != nullptr && a->any_parameter_requires_grad()) return true;
  }
  return false;
}

Tensor lora_linear(const Linear& l, const Tensor& x) {
  Tensor y = linear(x, l.weight, l.bias);
  const LoraAdapter* a = find_adapter(l.weight);
  return a != nullptr ? add(y, a->delta(x)) : y;
}

}  // namespace ddpm::nn
