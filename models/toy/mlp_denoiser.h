// models/toy/mlp_denoiser.h: a small MLP denoiser for low-dimensional points (2-D toys).
//
// The toy stand-in for the UNet: same callable interface (diffusion::DenoiseFn), trains in
// seconds on the CPU, and lets the samplers and the trainer be tested end to end.
//
//   x [N, D], t [N] (original timesteps), labels [N] (optional)
//   temb = W_t2 silu(W_t1 sin_features(t) + b_t1) + b_t2            [N, H]
//          sin_features(t) = [cos(t f_0), ..., cos(t f_{h-1}), sin(t f_0), ..., sin(t f_{h-1})],
//          f_i = exp(-ln(max_period) i / h), h = time_dim / 2 (the improved-DDPM convention)
//   cemb = onehot(label) E, E [num_classes + 1, H]; row num_classes is the null label
//   h_0  = W_in x + b_in                                             [N, H]
//   h_l  = silu(W_l (h_{l-1} + temb + cemb) + b_l),  l = 1..layers  [N, H]
//   out  = W_out h_L + b_out                                         [N, D] (2D with learned sigma)
//
// The sinusoidal features and the one-hot matrix are built on the host (they are inputs, not
// parameters); the class embedding is a matmul with the one-hot rows, so its gradient is
// E's rows the batch used. Initialization: PyTorch's default for nn.Linear,
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from the Philox generator; E ~ N(0, 1); the output
// layer starts at zero.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"

namespace ddpm::toy {

struct MlpDenoiserConfig {
  std::int64_t data_dim = 2;
  std::int64_t hidden = 128;
  int layers = 3;
  std::int64_t time_dim = 32;  // even
  double max_period = 10000.0;
  int num_classes = 0;         // > 0: class embedding with num_classes + 1 rows (null label last)
  bool learned_sigma = false;  // output 2 * data_dim channels
  DType dtype = DType::f32;
};

// The sinusoidal timestep features [N, dim] (cos half first, then sin), f64 math on the host.
Tensor sinusoidal_features(const std::vector<double>& t, std::int64_t dim, double max_period, DType dtype,
                           Device device);

class MlpDenoiser {
 public:
  MlpDenoiser(const MlpDenoiserConfig& config, Generator& gen, Device device = Device::cpu());

  // Named parameters for a ParameterSlab ("time.0.weight", "layers.1.bias", ...).
  NamedTensors parameters() const;

  Tensor forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels) const;
  // A DenoiseFn calling forward on this object (which must outlive it).
  diffusion::DenoiseFn fn() const;

  const MlpDenoiserConfig& config() const { return config_; }

 private:
  MlpDenoiserConfig config_;
  Device device_;
  Tensor w_t1_, b_t1_, w_t2_, b_t2_;
  Tensor class_embedding_;  // [num_classes + 1, H] or undefined
  Tensor w_in_, b_in_;
  std::vector<Tensor> w_, b_;
  Tensor w_out_, b_out_;
};

}  // namespace ddpm::toy
