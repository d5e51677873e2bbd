// engine/ops/layer_norm.cpp: checks, dispatch and the tape node of layer_norm.
//
// One node with inputs {x, gamma, beta}. Saved for the backward: detached x and gamma and
// the statistics mean, rstd [R] (R = numel / C rows); xhat is recomputed from them instead
// of being stored (two values per row instead of a copy of x).
#include "engine/ops/layer_norm.h"

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/cpu/layer_norm.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/layer_norm.h"
#endif

namespace ddpm {

namespace {

constexpr const char* kOp = "layer_norm";

// gamma and beta must be [C] with C the last axis of x, on x's device, in x's dtype.
void check_param(const Tensor& x, const Tensor& p, const char* name) {
  ops::check_float(kOp, p, name);
  ops::check_same_device(kOp, x, "x", p, name);
  ops::check_same_dtype(kOp, x, "x", p, name);
  DDPM_CHECK(p.shape() == Shape{x.dim(-1)}, kOp << ": '" << name << "' must have shape [" << x.dim(-1)
                                                 << "] (the last axis of x " << shape_str(x.shape()) << "), got "
                                                 << shape_str(p.shape()));
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  ops::check_float(kOp, x, "x");
  DDPM_CHECK(x.ndim() >= 1, kOp << ": 'x' must be [..., C] with at least one axis, got a scalar");
  DDPM_CHECK(x.numel() > 0, kOp << ": 'x' of shape " << shape_str(x.shape()) << " is empty");
  DDPM_CHECK(eps >= 0, kOp << ": eps must be non-negative, got " << eps);
  check_param(x, gamma, "gamma");
  check_param(x, beta, "beta");
  const std::int64_t C = x.dim(-1), R = x.numel() / C;

  // Statistics (~3 per element), normalize and affine (~4): ~7 per element.
  OpScope scope(kOp, 7.0 * static_cast<double>(x.numel()), cost::bytes(2 * x.numel() + 2 * C + 2 * R, x.dtype()),
                x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({R}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({R}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA(kOp, cuda::layer_norm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(),
                                               y.data<float>(), mean.data<float>(), rstd.data<float>(), R, C,
                                               static_cast<float>(eps), cuda::stream()));
  } else {
    ops::cpu_dispatch(kOp, x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::layer_norm_forward<T>(x.data<T>(), gamma.data<T>(), beta.data<T>(), y.data<T>(), mean.data<T>(),
                                 rstd.data<T>(), R, C, eps);
    });
  }

  Tensor xs = x.detach(), gs = gamma.detach();
  record(y, kOp, {x, gamma, beta}, [xs, gs, mean, rstd, R, C](const Tensor& dy, const std::vector<bool>&) {
    // dx, dgamma and dbeta come out of the same two passes over x and dy; the parameter
    // ones cost only [C] writes when they are not needed.
    OpScope scope("layer_norm.backward", 10.0 * static_cast<double>(xs.numel()),
                  cost::bytes(3 * xs.numel() + 3 * C + 2 * R, xs.dtype()), xs.device());
    Tensor dx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
    Tensor dgamma = Tensor::empty({C}, xs.dtype(), xs.device());
    Tensor dbeta = Tensor::empty({C}, xs.dtype(), xs.device());
    if (xs.device().is_cuda()) {
      DDPM_ON_CUDA(kOp, cuda::layer_norm_backward(xs.data<float>(), gs.data<float>(), mean.data<float>(),
                                                  rstd.data<float>(), dy.data<float>(), dx.data<float>(),
                                                  dgamma.data<float>(), dbeta.data<float>(), R, C, cuda::stream()));
    } else {
      ops::cpu_dispatch(kOp, xs.dtype(), [&](auto t) {
        using T = decltype(t);
        cpu::layer_norm_backward<T>(xs.data<T>(), gs.data<T>(), mean.data<T>(), rstd.data<T>(), dy.data<T>(),
                                    dx.data<T>(), dgamma.data<T>(), dbeta.data<T>(), R, C);
      });
    }
    return std::vector<Tensor>{dx, dgamma, dbeta};
  });
  return y;
}

}  // namespace ddpm
