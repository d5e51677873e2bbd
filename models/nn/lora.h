// models/nn/lora.h: LoRA, low-rank adapters on a frozen model's projections (Hu et al. 2021).
//
// An adapted Linear computes
//   y = x W^T + b + s (x A^T) B^T,    s = alpha / r                        (Hu et al. 2021, eq. 3)
//   A = lora_A.weight [r, in], B = lora_B.weight [out, r]: W' = W + s B A [out, in]
// composed of two bias-free linear ops, a scale and an add (no kernel of its own; the base
// x W^T + b is the projection's usual linear). The adapter's rank-r path costs
// 2 r (in + out) flops per token against the base's 2 in out.
// Initialisation as PEFT's default (init_lora_weights = True): A ~ kaiming_uniform(a = sqrt(5)),
// i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0. A fresh adapter therefore adds exactly zero: step 0
// of a LoRA run is the base model bit for bit (x A^T B^T with B = 0 is +0.0 everywhere).
//
// LoraSet(model, rank, alpha, gen) puts one adapter on every 2-D parameter of `model` whose
// name ends in ".to_q.weight", ".to_k.weight", ".to_v.weight" or ".to_out.0.weight": the
// query, key, value and output projections of every self- and cross-attention block, which
// are diffusers' default target modules for a UNet LoRA (the text encoder's q_proj/k_proj/...
// are not among them). The set is a Module whose parameters are the adapters alone, named
// "<projection>.lora_A.weight" and "<projection>.lora_B.weight" (PEFT's names without the
// adapter name), in the model's parameter order: a slab of the set is what a LoRA run trains.
// The set does not freeze the base: the caller clears requires_grad on the model's own
// parameters, and the tape then computes no weight gradient for them (each op's backward
// only forms the gradients its inputs need), so the frozen base costs no dW GEMMs.
//
// While a set lives, each adapted projection (an nn::Linear, found by name among the model's
// modules) points to its adapter (Linear::adapter), and Linear::forward adds the adapter's
// addend. The attention blocks (models/unet/blocks.h AttentionBlock, models/unet/transformer.h
// CrossAttention) need no change: a model without a set runs exactly as before. Destroying the
// set clears the pointers, so the model must outlive its set. A projection carries at most one
// adapter (ValueError for a second set on the same model).
//
// merge() writes W <- W + s B A into the model's projection weights (for export and sampling
// without the adapters); the set should then be destroyed, or the adapters would count twice.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/nn/layers.h"
#include "models/nn/module.h"

namespace ddpm::nn {

// The projection names a LoraSet adapts (the parameter's name without ".weight" ends in one).
extern const std::vector<std::string> kLoraTargetModules;  // to_q, to_k, to_v, to_out.0

class LoraAdapter : public Module {
 public:
  // An adapter of rank r for the projection whose weight is `base_weight` [out, in].
  LoraAdapter(const Tensor& base_weight, int rank, double alpha, Generator& gen);
  // s (x A^T) B^T: [..., in] -> [..., out], the adapter's addend.
  Tensor delta(const Tensor& x) const;
  // s B A [out, in]: what merge() adds to the base weight.
  Tensor delta_weight() const;
  double scale() const { return scale_; }
  Tensor lora_A, lora_B;  // [r, in], [out, r]

 private:
  double scale_;
};

class LoraSet : public Module {
 public:
  // ValueError when rank < 1, alpha <= 0, a projection is narrower than the rank, no module
  // of `model` is a target (a model without attention), or a target already has an adapter.
  LoraSet(Module& model, int rank, double alpha, Generator& gen);
  ~LoraSet() override;

  // The adapted projections' names ("mid_block.attentions.0.to_q"), in the model's order.
  const std::vector<std::string>& targets() const { return targets_; }
  // W <- W + s B A for every adapted projection (outside the tape).
  void merge();

 private:
  std::vector<std::string> targets_;
  std::vector<Linear*> projections_;  // the model's, which outlives the set
  std::vector<std::unique_ptr<LoraAdapter>> adapters_;
};

// True when some projection of `m` carries an adapter whose parameters require a gradient.
// For activation checkpointing (engine/recompute.h params_need_grad): a frozen block whose
// adapters train is then segmented too (recompute runs a block that needs no backward
// unsegmented, keeping its intermediates, when none of its inputs requires a gradient).
bool adapters_need_grad(const Module& m);

}  // namespace ddpm::nn
