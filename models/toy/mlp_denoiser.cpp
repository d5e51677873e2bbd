// models/toy/mlp_denoiser.cpp: see mlp_denoiser.h for the architecture.
#include "models/toy/mlp_denoiser.h"

#include <cmath>
#include <string>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"

namespace ddpm::toy {

Tensor sinusoidal_features(const std::vector<double>& t, std::int64_t dim, double max_period, DType dtype,
                           Device device) {
  DDPM_CHECK(dim >= 2 && dim % 2 == 0, "sinusoidal_features: dim must be even and >= 2, got " << dim);
  const std::int64_t half = dim / 2, n = static_cast<std::int64_t>(t.size());
  std::vector<double> v(static_cast<std::size_t>(n * dim));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t k = 0; k < half; ++k) {
      // f_k = exp(-ln(max_period) k / half)
      const double arg = t[static_cast<std::size_t>(i)] *
                         std::exp(-std::log(max_period) * static_cast<double>(k) / static_cast<double>(half));
      v[static_cast<std::size_t>(i * dim + k)] = std::cos(arg);
      v[static_cast<std::size_t>(i * dim + half + k)] = std::sin(arg);
    }
  return Tensor::from_vector(v, {n, dim}, dtype, device);
}

namespace {

// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), shape [rows, cols].
Tensor uniform_init(const Shape& shape, std::int64_t fan_in, Generator& gen, DType dtype, Device device) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  std::vector<double> u = rand(shape, gen, Device::cpu(), DType::f64).to_double_vector();
  for (double& e : u) e = (2.0 * e - 1.0) * bound;
  return Tensor::from_vector(u, shape, dtype, device);
}

}  // namespace

MlpDenoiser::MlpDenoiser(const MlpDenoiserConfig& c, Generator& gen, Device device) : config_(c), device_(device) {
  DDPM_CHECK(c.data_dim >= 1 && c.hidden >= 1 && c.layers >= 1 && c.time_dim >= 2 && c.time_dim % 2 == 0 &&
                 c.num_classes >= 0,
             "MlpDenoiser: needs data_dim, hidden, layers >= 1, an even time_dim >= 2 and num_classes >= 0; got "
                 << c.data_dim << ", " << c.hidden << ", " << c.layers << ", " << c.time_dim << ", "
                 << c.num_classes);
  const std::int64_t H = c.hidden, D = c.data_dim;
  w_t1_ = uniform_init({H, c.time_dim}, c.time_dim, gen, c.dtype, device);
  b_t1_ = uniform_init({H}, c.time_dim, gen, c.dtype, device);
  w_t2_ = uniform_init({H, H}, H, gen, c.dtype, device);
  b_t2_ = uniform_init({H}, H, gen, c.dtype, device);
  if (c.num_classes > 0)
    class_embedding_ = randn({c.num_classes + 1, H}, gen, Device::cpu(), DType::f32).to(c.dtype).to(device);
  w_in_ = uniform_init({H, D}, D, gen, c.dtype, device);
  b_in_ = uniform_init({H}, D, gen, c.dtype, device);
  for (int l = 0; l < c.layers; ++l) {
    w_.push_back(uniform_init({H, H}, H, gen, c.dtype, device));
    b_.push_back(uniform_init({H}, H, gen, c.dtype, device));
  }
  const std::int64_t out = c.learned_sigma ? 2 * D : D;
  w_out_ = Tensor::zeros({out, H}, c.dtype, device);
  b_out_ = Tensor::zeros({out}, c.dtype, device);
}

NamedTensors MlpDenoiser::parameters() const {
  NamedTensors p = {{"time.0.weight", w_t1_}, {"time.0.bias", b_t1_}, {"time.2.weight", w_t2_},
                    {"time.2.bias", b_t2_}};
  if (class_embedding_.defined()) p.push_back({"class_embedding.weight", class_embedding_});
  p.push_back({"input.weight", w_in_});
  p.push_back({"input.bias", b_in_});
  for (std::size_t l = 0; l < w_.size(); ++l) {
    p.push_back({"layers." + std::to_string(l) + ".weight", w_[l]});
    p.push_back({"layers." + std::to_string(l) + ".bias", b_[l]});
  }
  p.push_back({"output.weight", w_out_});
  p.push_back({"output.bias", b_out_});
  return p;
}

Tensor MlpDenoiser::forward(const Tensor& x, const std::vector<double>& t,
                            const std::vector<std::int64_t>& labels) const {
  const MlpDenoiserConfig& c = config_;
  DDPM_CHECK(x.ndim() == 2 && x.dim(1) == c.data_dim && static_cast<std::int64_t>(t.size()) == x.dim(0),
             "MlpDenoiser: x must be [N, " << c.data_dim << "] with N timesteps; got x " << shape_str(x.shape())
                                           << " and " << t.size() << " timesteps");
  const std::int64_t n = x.dim(0);
  Tensor feats = sinusoidal_features(t, c.time_dim, c.max_period, x.dtype(), x.device());  // [N, time_dim]
  Tensor emb = linear(silu(linear(feats, w_t1_, b_t1_)), w_t2_, b_t2_);                   // [N, H]
  if (c.num_classes > 0) {
    DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
               "MlpDenoiser: a class-conditional model needs " << n << " labels, got " << labels.size());
    std::vector<double> onehot(static_cast<std::size_t>(n * (c.num_classes + 1)), 0.0);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t y = labels[static_cast<std::size_t>(i)];
      DDPM_CHECK(y >= 0 && y <= c.num_classes,
                 "MlpDenoiser: label " << y << " is outside [0, " << c.num_classes << "] (null = " << c.num_classes
                                       << ")");
      onehot[static_cast<std::size_t>(i * (c.num_classes + 1) + y)] = 1.0;
    }
    Tensor oh = Tensor::from_vector(onehot, {n, c.num_classes + 1}, x.dtype(), x.device());
    emb = add(emb, matmul(oh, class_embedding_));  // [N, H]
  } else {
    DDPM_CHECK(labels.empty(), "MlpDenoiser: labels were given to a model without classes");
  }
  Tensor h = linear(x, w_in_, b_in_);  // [N, H]
  for (std::size_t l = 0; l < w_.size(); ++l) h = silu(linear(add(h, emb), w_[l], b_[l]));
  return linear(h, w_out_, b_out_);  // [N, D] or [N, 2D]
}

diffusion::DenoiseFn MlpDenoiser::fn() const {
  return [this](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels) {
    return forward(x, t, labels);
  };
}

}  // namespace ddpm::toy
