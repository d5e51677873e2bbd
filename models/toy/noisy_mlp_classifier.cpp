// models/toy/noisy_mlp_classifier.cpp: see noisy_mlp_classifier.h for the architecture.
#include "models/toy/noisy_mlp_classifier.h"

#include <cmath>
#include <string>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "models/toy/mlp_denoiser.h"

namespace ddpm::toy {

namespace {

// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), shape [rows, cols] (as mlp_denoiser.cpp).
Tensor uniform_init(const Shape& shape, std::int64_t fan_in, Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  std::vector<double> u = rand(shape, gen, Device::cpu(), DType::f64).to_double_vector();
  for (double& e : u) e = (2.0 * e - 1.0) * bound;
  return Tensor::from_vector(u, shape, DType::f32, Device::cpu());
}

}  // namespace

NoisyMlpClassifier::NoisyMlpClassifier(const NoisyMlpClassifierConfig& c, Generator& gen) : config_(c) {
  DDPM_CHECK(c.hidden >= 1 && c.layers >= 1 && c.time_dim >= 2 && c.time_dim % 2 == 0 && c.num_classes >= 2,
             "NoisyMlpClassifier: needs hidden, layers >= 1, an even time_dim >= 2 and num_classes >= 2; got "
                 << c.hidden << ", " << c.layers << ", " << c.time_dim << ", " << c.num_classes);
  const std::int64_t H = c.hidden;
  w_t1_ = uniform_init({H, c.time_dim}, c.time_dim, gen);
  b_t1_ = uniform_init({H}, c.time_dim, gen);
  w_t2_ = uniform_init({H, H}, H, gen);
  b_t2_ = uniform_init({H}, H, gen);
  w_in_ = uniform_init({H, 2}, 2, gen);
  b_in_ = uniform_init({H}, 2, gen);
  for (int l = 0; l < c.layers; ++l) {
    w_.push_back(uniform_init({H, H}, H, gen));
    b_.push_back(uniform_init({H}, H, gen));
  }
  w_out_ = Tensor::zeros({c.num_classes, H}, DType::f32, Device::cpu());
  b_out_ = Tensor::zeros({c.num_classes}, DType::f32, Device::cpu());
}

NamedTensors NoisyMlpClassifier::parameters() const {
  NamedTensors p = {{"time.0.weight", w_t1_}, {"time.0.bias", b_t1_}, {"time.2.weight", w_t2_},
                    {"time.2.bias", b_t2_},   {"input.weight", w_in_}, {"input.bias", b_in_}};
  for (std::size_t l = 0; l < w_.size(); ++l) {
    p.push_back({"layers." + std::to_string(l) + ".weight", w_[l]});
    p.push_back({"layers." + std::to_string(l) + ".bias", b_[l]});
  }
  p.push_back({"output.weight", w_out_});
  p.push_back({"output.bias", b_out_});
  return p;
}

Tensor NoisyMlpClassifier::forward(const Tensor& x, const std::vector<double>& t) const {
  const NoisyMlpClassifierConfig& c = config_;
  DDPM_CHECK(x.ndim() == 2 && x.dim(1) == 2 && static_cast<std::int64_t>(t.size()) == x.dim(0),
             "NoisyMlpClassifier: x must be [N, 2] with N timesteps; got x " << shape_str(x.shape()) << " and "
                                                                            << t.size() << " timesteps");
  Tensor feats = sinusoidal_features(t, c.time_dim, c.max_period, x.dtype(), x.device());  // [N, time_dim]
  Tensor emb = linear(silu(linear(feats, w_t1_, b_t1_)), w_t2_, b_t2_);                   // [N, H]
  Tensor h = linear(x, w_in_, b_in_);                                                      // [N, H]
  for (std::size_t l = 0; l < w_.size(); ++l) h = silu(linear(add(h, emb), w_[l], b_[l]));
  return linear(h, w_out_, b_out_);  // [N, K]
}

diffusion::ClassifierFn NoisyMlpClassifier::fn() const {
  return [this](const Tensor& x, const std::vector<double>& t) { return forward(x, t); };
}

}  // namespace ddpm::toy
