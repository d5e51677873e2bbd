#include "models/nn/layers.h"

#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/embedding.h"
#include "engine/ops/group_norm.h"
#include "engine/ops/layer_norm.h"
#include "engine/ops/linalg.h"
#include "models/nn/lora.h"

namespace ddpm::nn {

Linear::Linear(std::int64_t in, std::int64_t out, Generator& gen, Device device, bool with_bias) {
  weight = add_parameter("weight", init_fan_in({out, in}, in, gen, device));
  if (with_bias) bias = add_parameter("bias", init_fan_in({out}, in, gen, device));
}

Tensor Linear::forward(const Tensor& x) const {
  Tensor y = linear(x, weight, bias);
  return adapter != nullptr ? add(y, adapter->delta(x)) : y;
}

Conv2d::Conv2d(std::int64_t in, std::int64_t out, int kernel, int stride_, int padding_, Generator& gen,
               Device device)
    : stride(stride_), padding(padding_) {
  std::int64_t fan_in = in * kernel * kernel;
  weight = add_parameter("weight", init_fan_in({out, kernel, kernel, in}, fan_in, gen, device));
  bias = add_parameter("bias", init_fan_in({out}, fan_in, gen, device));
}

Tensor Conv2d::forward(const Tensor& x) const { return conv2d(x, weight, bias, stride, padding); }

Tensor Conv2d::forward(const Tensor& x, const Tensor& sample_bias, const Tensor& residual) const {
  return conv2d(x, weight, bias, stride, padding, sample_bias, residual);
}

void Conv2d::zero_() {
  weight.zero_();
  bias.zero_();
}

GroupNorm::GroupNorm(int groups, std::int64_t channels, Device device, double eps_)
    : num_groups(groups), eps(eps_) {
  weight = add_parameter("weight", Tensor::full({channels}, 1.0, DType::f32, device));
  bias = add_parameter("bias", Tensor::zeros({channels}, DType::f32, device));
}

Tensor GroupNorm::forward(const Tensor& x, bool silu, const Tensor& scale, const Tensor& shift) const {
  return group_norm(x, num_groups, weight, bias, eps, silu, scale, shift);
}

LayerNorm::LayerNorm(std::int64_t channels, Device device, double eps_) : eps(eps_) {
  weight = add_parameter("weight", Tensor::full({channels}, 1.0, DType::f32, device));
  bias = add_parameter("bias", Tensor::zeros({channels}, DType::f32, device));
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

Embedding::Embedding(std::int64_t num, std::int64_t dim, Generator& gen, Device device) {
  weight = add_parameter("weight", randn({num, dim}, gen, device));  // N(0, 1), as nn.Embedding
}

Tensor Embedding::forward(const std::vector<std::int64_t>& ids) const { return embedding(weight, ids); }

}  // namespace ddpm::nn
