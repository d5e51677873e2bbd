// models/nn/lora.cpp: LoRA adapters (contract in lora.h).
#include "models/nn/lora.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"

namespace ddpm::nn {

const std::vector<std::string> kLoraTargetModules = {"to_q", "to_k", "to_v", "to_out.0"};

namespace {

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

LoraSet::LoraSet(Module& model, int rank, double alpha, Generator& gen) {
  DDPM_CHECK(rank >= 1, "LoRA: the rank must be at least 1, got " << rank);
  DDPM_CHECK(std::isfinite(alpha) && alpha > 0, "LoRA: alpha must be positive, got " << alpha);
  for (const auto& [name, m] : model.named_modules()) {
    bool target = false;
    for (const std::string& t : kLoraTargetModules) target = target || ends_with(name, "." + t) || name == t;
    auto* l = dynamic_cast<Linear*>(m);
    if (!target || l == nullptr) continue;
    DDPM_CHECK(l->adapter == nullptr, "LoRA: " << name << " already has an adapter (one LoRA set per model)");
    DDPM_CHECK(rank <= std::min(l->weight.dim(0), l->weight.dim(1)),
               "LoRA: rank " << rank << " exceeds the width of " << name << " " << shape_str(l->weight.shape())
                             << "; a low-rank adapter needs r <= min(in, out)");
    targets_.push_back(name);
    projections_.push_back(l);
    adapters_.push_back(std::make_unique<LoraAdapter>(l->weight, rank, alpha, gen));
    register_module(name, adapters_.back().get());
  }
  DDPM_CHECK(!targets_.empty(), "LoRA: the model has no attention projections (to_q, to_k, to_v, to_out.0) to "
                                "adapt");
  for (std::size_t i = 0; i < projections_.size(); ++i) projections_[i]->adapter = adapters_[i].get();
}

LoraSet::~LoraSet() {
  for (std::size_t i = 0; i < projections_.size(); ++i)
    if (projections_[i]->adapter == adapters_[i].get()) projections_[i]->adapter = nullptr;
}

void LoraSet::merge() {
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < adapters_.size(); ++i) {
    Tensor w = projections_[i]->weight;
    w.copy_from(add(w.detach(), adapters_[i]->delta_weight()));
  }
}

bool adapters_need_grad(const Module& m) {
  for (const auto& [name, child] : m.named_modules()) {
    const auto* l = dynamic_cast<const Linear*>(child);
    if (l != nullptr && l->adapter != nullptr && l->adapter->any_parameter_requires_grad()) return true;
  }
  return false;
}

}  // namespace ddpm::nn
