// engine/optim.cpp: gradient-norm clipping, AdamW and EMA over the parameter slab. Checks
// and per-step scalars (computed in double) live here; the loops are kernels/cpu/optim.h
// and kernels/cuda/optim.h.
#include "engine/optim.h"

#include <cmath>

#include "engine/ops/common.h"
#include "kernels/cpu/optim.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/optim.h"
#endif

namespace ddpm {

namespace {

void check_packed(const char* op, const ParameterSlab& params) {
  DDPM_CHECK(!params.empty(), op << ": the parameter slab is empty (call ParameterSlab::pack first)");
}

// A slab-shaped flat tensor: f32/f64 [slab_numel] like the parameter values.
void check_slab_shaped(const char* op, const ParameterSlab& params, const Tensor& t, const char* arg) {
  DDPM_CHECK(t.defined() && t.shape() == params.values().shape() && t.dtype() == params.dtype(),
             op << ": " << arg << " must be " << params.values().describe() << " like the parameter slab, got "
                << t.describe());
}

void check_same_device(const char* op, const ParameterSlab& params, const Tensor& state, const char* what) {
  DDPM_CHECK(state.device() == params.device(),
             op << ": the parameters are on " << params.device().str() << " but the " << what << " is on "
                << state.device().str() << "; create it after moving the slab with ParameterSlab::to");
}

void check_hyperparameters(const AdamWConfig& c) {
  DDPM_CHECK(c.lr >= 0 && std::isfinite(c.lr), "AdamW: lr must be finite and >= 0, got " << c.lr);
  DDPM_CHECK(c.beta1 >= 0 && c.beta1 < 1, "AdamW: beta1 must be in [0, 1), got " << c.beta1);
  DDPM_CHECK(c.beta2 >= 0 && c.beta2 < 1, "AdamW: beta2 must be in [0, 1), got " << c.beta2);
  // eps = 0 would turn every zero gradient (and the slab's padding) into 0 / 0 = NaN.
  DDPM_CHECK(c.eps > 0, "AdamW: eps must be > 0, got " << c.eps);
  DDPM_CHECK(c.weight_decay >= 0, "AdamW: weight_decay must be >= 0, got " << c.weight_decay);
}

}  // namespace

// --- gradient norm ---------------------------------------------------------------------

double grad_norm(const ParameterSlab& params) {
  check_packed("grad_norm", params);
  const Tensor& g = params.grads();
  double sum_sq = 0.0;
  if (g.device().is_cuda()) {
    DDPM_ON_CUDA("grad_norm", sum_sq = cuda::sum_squares(g.data<float>(), g.numel(), cuda::stream()));
  } else {
    ops::cpu_dispatch("grad_norm", g.dtype(), [&](auto t) {
      using T = decltype(t);
      sum_sq = cpu::sum_squares(g.data<T>(), g.numel());
    });
  }
  return std::sqrt(sum_sq);
}

double clip_grad_norm(ParameterSlab& params, double max_norm) {
  DDPM_CHECK(max_norm > 0 && std::isfinite(max_norm),
             "clip_grad_norm: max_norm must be finite and > 0, got " << max_norm);
  const double norm = grad_norm(params);
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const double coef = max_norm / (norm + 1e-6);  // g <- g * max_norm / (||g|| + 1e-6)
  const Tensor& g = params.grads();
  if (g.device().is_cuda()) {
    DDPM_ON_CUDA("clip_grad_norm",
                 cuda::scale_inplace(g.data<float>(), g.numel(), static_cast<float>(coef), cuda::stream()));
  } else {
    ops::cpu_dispatch("clip_grad_norm", g.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::scale_inplace(g.data<T>(), g.numel(), static_cast<T>(coef));
    });
  }
  return norm;
}

// --- AdamW -----------------------------------------------------------------------------

AdamW::AdamW(ParameterSlab& params, const AdamWConfig& config) : params_(&params), config_(config) {
  check_packed("AdamW", params);
  check_hyperparameters(config_);
  m_ = Tensor::zeros(params.values().shape(), params.dtype(), params.device());
  v_ = Tensor::zeros(params.values().shape(), params.dtype(), params.device());
}

void AdamW::set_lr(double lr) {
  DDPM_CHECK(lr >= 0 && std::isfinite(lr), "AdamW::set_lr: lr must be finite and >= 0, got " << lr);
  config_.lr = lr;
}

void AdamW::step() {
  ParameterSlab& ps = *params_;
  check_same_device("AdamW::step", ps, m_, "optimizer state");
  check_slab_shaped("AdamW::step", ps, m_, "the first moment");
  const std::int64_t t = step_ + 1;
  const AdamWConfig& c = config_;
  // Per-step scalars in double (see kernels/cpu/optim.h for how they enter the update).
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
  const double step_size = c.lr / bc1;
  const double inv_sqrt_bc2 = 1.0 / std::sqrt(bc2);
  const double decay = 1.0 - c.lr * c.weight_decay;
  const Tensor& p = ps.values();
  const Tensor& g = ps.grads();
  const std::int64_t n = p.numel();
  if (p.device().is_cuda()) {
    DDPM_ON_CUDA("AdamW::step", {
      cuda::AdamWScalars s{static_cast<float>(c.beta1), static_cast<float>(c.beta2),
                           static_cast<float>(1.0 - c.beta1), static_cast<float>(1.0 - c.beta2),
                           static_cast<float>(step_size), static_cast<float>(inv_sqrt_bc2),
                           static_cast<float>(c.eps), static_cast<float>(decay)};
      cuda::adamw_step(p.data<float>(), g.data<float>(), m_.data<float>(), v_.data<float>(), n, s, cuda::stream());
    });
  } else {
    ops::cpu_dispatch("AdamW::step", p.dtype(), [&](auto type) {
      using T = decltype(type);
      cpu::AdamWScalars<T> s{static_cast<T>(c.beta1),   static_cast<T>(c.beta2),        static_cast<T>(1.0 - c.beta1),
                             static_cast<T>(1.0 - c.beta2), static_cast<T>(step_size), static_cast<T>(inv_sqrt_bc2),
                             static_cast<T>(c.eps),     static_cast<T>(decay)};
      cpu::adamw_step(p.data<T>(), g.data<T>(), m_.data<T>(), v_.data<T>(), n, s);
    });
  }
  step_ = t;
}

void AdamW::load_state(std::int64_t step_count, const Tensor& exp_avg, const Tensor& exp_avg_sq) {
  DDPM_CHECK(step_count >= 0, "AdamW::load_state: step_count must be >= 0, got " << step_count);
  check_slab_shaped("AdamW::load_state", *params_, exp_avg, "exp_avg (m)");
  check_slab_shaped("AdamW::load_state", *params_, exp_avg_sq, "exp_avg_sq (v)");
  m_.copy_from(exp_avg);
  v_.copy_from(exp_avg_sq);
  step_ = step_count;
}

// --- EMA -------------------------------------------------------------------------------

Ema::Ema(const ParameterSlab& params, double rate) : rate_(rate) {
  check_packed("Ema", params);
  DDPM_CHECK(rate >= 0 && rate < 1, "Ema: rate must be in [0, 1), got " << rate);
  values_ = params.values().clone();
}

double Ema::warmup_decay(double rate, std::int64_t n) {
  DDPM_CHECK(n >= 0, "Ema::warmup_decay: step n must be >= 0, got " << n);
  const double warm = (1.0 + static_cast<double>(n)) / (10.0 + static_cast<double>(n));
  return rate < warm ? rate : warm;
}

double Ema::update(const ParameterSlab& params, std::int64_t n) {
  check_packed("Ema::update", params);
  check_slab_shaped("Ema::update", params, values_, "EMA");
  check_same_device("Ema::update", params, values_, "EMA");
  const double decay = warmup_decay(rate_, n);
  const Tensor& p = params.values();
  if (p.device().is_cuda()) {
    DDPM_ON_CUDA("Ema::update", cuda::ema_update(values_.data<float>(), p.data<float>(), p.numel(),
                                                  static_cast<float>(decay), static_cast<float>(1.0 - decay),
                                                  cuda::stream()));
  } else {
    ops::cpu_dispatch("Ema::update", p.dtype(), [&](auto type) {
      using T = decltype(type);
      cpu::ema_update(values_.data<T>(), p.data<T>(), p.numel(), static_cast<T>(decay), static_cast<T>(1.0 - decay));
    });
  }
  return decay;
}

void Ema::copy_to(ParameterSlab& params) const {
  check_packed("Ema::copy_to", params);
  check_slab_shaped("Ema::copy_to", params, values_, "EMA");
  Tensor dst = params.values();
  dst.copy_from(values_);
}

void Ema::swap(ParameterSlab& params) {
  check_packed("Ema::swap", params);
  check_slab_shaped("Ema::swap", params, values_, "EMA");
  check_same_device("Ema::swap", params, values_, "EMA");
  Tensor live = params.values();
  Tensor saved = live.clone();  // three device copies; no kernel needed
  live.copy_from(values_);
  values_.copy_from(saved);
}

void Ema::load(const Tensor& values) {
  DDPM_CHECK(values.defined() && values.shape() == values_.shape() && values.dtype() == values_.dtype(),
             "Ema::load: expected " << values_.describe() << ", got " << values.describe());
  values_.copy_from(values);
}

}  // namespace ddpm
