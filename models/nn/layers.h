// models/nn/layers.h: parameter-holding wrappers over the engine's ops, named like their
// PyTorch counterparts (weight, bias) so state dicts line up.
//
// Layouts: Linear weight [out, in] (as nn.Linear); Conv2d weight [out, kh, kw, in] (KRSC,
// what cuDNN wants for NHWC; export converts to PyTorch's OIHW); GroupNorm weight/bias [C];
// LayerNorm weight/bias [C]; Embedding weight [num, dim]. Activations are NHWC; token
// sequences are [N, L, C].
#pragma once

#include "models/nn/module.h"

namespace ddpm::nn {

class LoraAdapter;  // models/nn/lora.h

class Linear : public Module {
 public:
  Linear(std::int64_t in, std::int64_t out, Generator& gen, Device device, bool bias = true);
  // [..., in] -> [..., out]: x W^T + b, plus adapter->delta(x) while a LoRA set adapts this
  // projection (models/nn/lora.h).
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  // Not owned: set and cleared by the LoraSet that holds the adapter; null otherwise.
  const LoraAdapter* adapter = nullptr;
};

class Conv2d : public Module {
 public:
  Conv2d(std::int64_t in, std::int64_t out, int kernel, int stride, int padding, Generator& gen, Device device);
  Tensor forward(const Tensor& x) const;  // [N, H, W, in] -> [N, Ho, Wo, out]
  // The same plus the fused epilogue addends of engine/ops/conv.h: sample_bias [N, out]
  // broadcast over pixels and residual [N, Ho, Wo, out]; either may be undefined.
  Tensor forward(const Tensor& x, const Tensor& sample_bias, const Tensor& residual) const;
  // Sets weight and bias to zero: the improved-DDPM init for layers that end a residual
  // branch, so every block starts as the identity.
  void zero_();
  Tensor weight, bias;
  int stride, padding;
};

class GroupNorm : public Module {
 public:
  GroupNorm(int num_groups, std::int64_t channels, Device device, double eps = 1e-5);
  // y = GN(x) [* (1 + scale) + shift] [then SiLU], one fused op.
  Tensor forward(const Tensor& x, bool silu = false, const Tensor& scale = Tensor(), const Tensor& shift = Tensor()) const;
  Tensor weight, bias;
  int num_groups;
  double eps;
};

// y = (x - mean) / sqrt(var + eps) * weight + bias over the LAST axis of x [..., C]
// (nn.LayerNorm(C), Ba et al. 2016): weight starts at ones and bias at zeros, as PyTorch's.
class LayerNorm : public Module {
 public:
  LayerNorm(std::int64_t channels, Device device, double eps = 1e-5);
  Tensor forward(const Tensor& x) const;  // [..., C] -> [..., C]
  Tensor weight, bias;
  double eps;
};

class Embedding : public Module {
 public:
  Embedding(std::int64_t num, std::int64_t dim, Generator& gen, Device device);
  Tensor forward(const std::vector<std::int64_t>& ids) const;  // -> [ids.size(), dim]
  Tensor weight;
};

}  // namespace ddpm::nn
