// engine/optim.h: the optimizer side of a training step, over the parameter slab
// (engine/parameters.h): gradient-norm clipping, AdamW, and the EMA of the weights.
//
// One training step, in order (ARCHITECTURE "data flow of one training step"):
//   slab.zero_grad(); loss.backward();                 gradients land in slab.grads()
//   double norm = clip_grad_norm(slab, 1.0);           skip the step if !std::isfinite(norm)
//   opt.set_lr(warmup(step)); opt.step();              AdamW over the whole slab
//   ema.update(slab, step);                            EMA with warm-up
//
// Every update is one loop on the CPU and one fused kernel on CUDA over the flat slab,
// never a loop over parameters. Nothing here is recorded on the tape.
#pragma once

#include <cstdint>

#include "engine/parameters.h"
#include "engine/tensor.h"

namespace ddpm {

// Global L2 norm of all gradients, ||g||_2 = sqrt(sum_i g_i^2), accumulated in double
// (on CUDA a two-level reduction in double). When norm > max_norm every gradient is scaled
// by max_norm / (norm + 1e-6), like torch.nn.utils.clip_grad_norm_. Returns the norm before
// clipping. A non-finite norm (a NaN or inf gradient) is returned as is and the gradients
// are left untouched, so the caller can detect it and skip the step.
double clip_grad_norm(ParameterSlab& params, double max_norm);
// The global norm alone, without clipping.
double grad_norm(const ParameterSlab& params);

struct AdamWConfig {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // decoupled: p -= lr * weight_decay * p
};

// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", Algorithm 2), with
// PyTorch's semantics. At step t = 1, 2, ...:
//   p     <- p - lr * wd * p
//   m     <- beta1 m + (1 - beta1) g                 v <- beta2 v + (1 - beta2) g^2
//   m_hat  = m / (1 - beta1^t)                       v_hat = v / (1 - beta2^t)
//   p     <- p - lr * m_hat / (sqrt(v_hat) + eps)
// The moments m and v are slab-shaped flat tensors on the slab's device. The optimizer keeps
// a pointer to the slab: the slab must outlive it and must not change device afterwards
// (create the optimizer after ParameterSlab::to).
class AdamW {
 public:
  explicit AdamW(ParameterSlab& params, const AdamWConfig& config = {});

  // One update of every parameter from the gradients in the slab; increments step_count().
  void step();

  // The learning rate may change before every step (warm-up and schedules live in the caller).
  void set_lr(double lr);
  double lr() const { return config_.lr; }
  const AdamWConfig& config() const { return config_; }

  // State for checkpoints: t (number of steps taken) and the moments m, v.
  std::int64_t step_count() const { return step_; }
  const Tensor& exp_avg() const { return m_; }     // m, flat [slab_numel]
  const Tensor& exp_avg_sq() const { return v_; }  // v, flat [slab_numel]
  // Restores a saved state; m and v are slab-shaped flat tensors on any device.
  void load_state(std::int64_t step_count, const Tensor& exp_avg, const Tensor& exp_avg_sq);

 private:
  ParameterSlab* params_;
  AdamWConfig config_;
  std::int64_t step_ = 0;
  Tensor m_, v_;
};

// Exponential moving average of the weights, used for sampling and evaluation:
//   ema <- decay ema + (1 - decay) p,   decay = min(rate, (1 + n) / (10 + n))
// The warm-up matters: at rate 0.9999 the plain average remembers the random initialization
// for tens of thousands of steps; with it, decay is 0.1 at n = 0, 0.55 at n = 10, 0.9 at
// n = 80 and reaches the rate after about 90 000 steps for 0.9999.
class Ema {
 public:
  // Starts as a copy of the current values, on the slab's device.
  explicit Ema(const ParameterSlab& params, double rate = 0.9999);

  static double warmup_decay(double rate, std::int64_t n);
  // One update at training step n (0-based); returns the decay it used.
  double update(const ParameterSlab& params, std::int64_t n);

  // Writes the EMA weights into the parameters (for sampling or export).
  void copy_to(ParameterSlab& params) const;
  // Exchanges the EMA weights and the parameters' values: swap, sample, swap back.
  void swap(ParameterSlab& params);

  double rate() const { return rate_; }
  const Tensor& values() const { return values_; }  // flat [slab_numel], slab's offsets
  // Restores saved EMA values (a slab-shaped flat tensor on any device).
  void load(const Tensor& values);

 private:
  double rate_;
  Tensor values_;
};

}  // namespace ddpm
