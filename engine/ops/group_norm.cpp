// engine/ops/group_norm.cpp: checks, dispatch and the tape node of group_norm.
//
// One node with inputs {x, gamma, beta, scale, shift}. Saved for the backward: detached x,
// gamma, beta, scale, shift and the statistics mean, rstd [N, G]; the normalized activations
// are recomputed from them instead of being stored (one [N, G] pair instead of a copy of x).
#include "engine/ops/group_norm.h"

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/cpu/group_norm.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/group_norm.h"
#endif

namespace ddpm {

namespace {

constexpr const char* kOp = "group_norm";

// Checks a per-channel or per-sample parameter against x.
void check_param(const Tensor& x, const Tensor& p, const char* name, const Shape& expected) {
  ops::check_float(kOp, p, name);
  ops::check_same_device(kOp, x, "x", p, name);
  ops::check_same_dtype(kOp, x, "x", p, name);
  DDPM_CHECK(p.shape() == expected, kOp << ": '" << name << "' must have shape " << shape_str(expected)
                                        << " for x of shape " << shape_str(x.shape()) << ", got "
                                        << shape_str(p.shape()));
}

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

Tensor group_norm(const Tensor& x, int num_groups, const Tensor& gamma, const Tensor& beta, double eps,
                  bool fuse_silu, const Tensor& scale, const Tensor& shift) {
  ops::check_float(kOp, x, "x");
  DDPM_CHECK(x.ndim() == 3 || x.ndim() == 4, kOp << ": 'x' must be [N, H, W, C] or [N, S, C], got shape "
                                                 << shape_str(x.shape()));
  DDPM_CHECK(x.numel() > 0, kOp << ": 'x' of shape " << shape_str(x.shape()) << " is empty");
  const std::int64_t N = x.dim(0), C = x.dim(-1), HW = x.numel() / (N * C);
  DDPM_CHECK(num_groups > 0 && C % num_groups == 0,
             kOp << ": num_groups = " << num_groups << " must be positive and divide the " << C
                 << " channels of x " << shape_str(x.shape()));
  DDPM_CHECK(eps >= 0, kOp << ": eps must be non-negative, got " << eps);
  check_param(x, gamma, "gamma", {C});
  check_param(x, beta, "beta", {C});
  DDPM_CHECK(scale.defined() == shift.defined(),
             kOp << ": AdaGN needs both 'scale' and 'shift' [N, C] or neither; got only '"
                 << (scale.defined() ? "scale" : "shift") << "'");
  const bool adagn = scale.defined();
  if (adagn) {
    check_param(x, scale, "scale", {N, C});
    check_param(x, shift, "shift", {N, C});
  }
  const std::int64_t G = num_groups;

  // Statistics (~3 per element), normalize and affine (~4), plus the fused SiLU: ~8 per element.
  OpScope scope(kOp, 8.0 * static_cast<double>(x.numel()),
                cost::bytes(2 * x.numel() + 2 * C + (adagn ? 2 * N * C : 0), x.dtype()), x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({N, G}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({N, G}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA(kOp, cuda::group_norm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(),
                                               ptr_or_null<float>(scale), ptr_or_null<float>(shift),
                                               y.data<float>(), mean.data<float>(), rstd.data<float>(), N, HW, C,
                                               G, static_cast<float>(eps), fuse_silu, cuda::stream()));
  } else {
    ops::cpu_dispatch(kOp, x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::group_norm_forward<T>(x.data<T>(), gamma.data<T>(), beta.data<T>(), ptr_or_null<T>(scale),
                                 ptr_or_null<T>(shift), y.data<T>(), mean.data<T>(), rstd.data<T>(), N, HW, C, G,
                                 eps, fuse_silu);
    });
  }

  Tensor xs = x.detach(), gs = gamma.detach(), bs = beta.detach();
  Tensor ss = adagn ? scale.detach() : Tensor(), hs = adagn ? shift.detach() : Tensor();
  record(y, kOp, {x, gamma, beta, scale, shift},
         [xs, gs, bs, ss, hs, mean, rstd, N, HW, C, G, fuse_silu](const Tensor& dy, const std::vector<bool>&) {
           // All five gradients come out of the same passes over x and dy; computing the
           OpScope scope("group_norm.backward", 12.0 * static_cast<double>(xs.numel()),
                         cost::bytes(3 * xs.numel() + 4 * C + (ss.defined() ? 4 * N * C : 0), xs.dtype()), xs.device());
           // parameter ones when not needed costs only [C] and [N, C] writes.
           Tensor dx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
           Tensor dgamma = Tensor::empty({C}, xs.dtype(), xs.device());
           Tensor dbeta = Tensor::empty({C}, xs.dtype(), xs.device());
           Tensor dscale, dshift;
           if (ss.defined()) {
             dscale = Tensor::empty({N, C}, xs.dtype(), xs.device());
             dshift = Tensor::empty({N, C}, xs.dtype(), xs.device());
           }
           if (xs.device().is_cuda()) {
             DDPM_ON_CUDA(kOp, cuda::group_norm_backward(
                                   xs.data<float>(), gs.data<float>(), bs.data<float>(), ptr_or_null<float>(ss),
                                   ptr_or_null<float>(hs), mean.data<float>(), rstd.data<float>(),
                                   dy.data<float>(), dx.data<float>(), dgamma.data<float>(), dbeta.data<float>(),
                                   dscale.defined() ? dscale.data<float>() : nullptr,
                                   dshift.defined() ? dshift.data<float>() : nullptr, N, HW, C, G, fuse_silu,
                                   cuda::stream()));
           } else {
             ops::cpu_dispatch(kOp, xs.dtype(), [&](auto t) {
               using T = decltype(t);
               cpu::group_norm_backward<T>(xs.data<T>(), gs.data<T>(), bs.data<T>(), ptr_or_null<T>(ss),
                                           ptr_or_null<T>(hs), mean.data<T>(), rstd.data<T>(), dy.data<T>(),
                                           dx.data<T>(), dgamma.data<T>(), dbeta.data<T>(),
                                           dscale.defined() ? dscale.data<T>() : nullptr,
                                           dshift.defined() ? dshift.data<T>() : nullptr, N, HW, C, G, fuse_silu);
             });
           }
           return std::vector<Tensor>{dx, dgamma, dbeta, dscale, dshift};
         });
  return y;
}

}  // namespace ddpm
