// engine/ops/transpose.cpp: forward and backward of transpose (engine/ops/transpose.h).
// Both directions run the one kernel on the 5-D view [outer, d0, mid, d1, inner] of the
// tensor (kernels/cpu/transpose.h): forward with (d0, d1) the sizes of the swapped axes,
// backward on the gradient, whose view is [outer, d1, mid, d0, inner].
#include "engine/ops/transpose.h"

#include <algorithm>
#include <utility>

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/cpu/transpose.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/transpose.h"
#endif

namespace ddpm {

namespace {

// The 5-D view of a swap of axes a0 < a1.
struct SwapView {
  std::int64_t outer = 1, d0 = 1, mid = 1, d1 = 1, inner = 1;
};

SwapView swap_view(const Shape& s, int a0, int a1) {
  SwapView v;
  for (int k = 0; k < a0; ++k) v.outer *= s[k];
  v.d0 = s[a0];
  for (int k = a0 + 1; k < a1; ++k) v.mid *= s[k];
  v.d1 = s[a1];
  for (int k = a1 + 1; k < static_cast<int>(s.size()); ++k) v.inner *= s[k];
  return v;
}

// y [outer, d1, mid, d0, inner] from x [outer, d0, mid, d1, inner]; y is allocated by the caller.
void run_transpose(const char* op, const Tensor& x, Tensor& y, const SwapView& v) {
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA(op, cuda::transpose_axes(x.data<float>(), y.data<float>(), v.outer, v.d0, v.mid, v.d1, v.inner,
                                          cuda::stream()));
  } else {
    ops::cpu_dispatch(op, x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::transpose_axes(x.data<T>(), y.data<T>(), v.outer, v.d0, v.mid, v.d1, v.inner);
    });
  }
}

}  // namespace

Tensor transpose(const Tensor& x, int axis0, int axis1) {
  ops::check_float("transpose", x, "x");
  const int nd = x.ndim();
  DDPM_CHECK(axis0 >= -nd && axis0 < nd && axis1 >= -nd && axis1 < nd,
             "transpose: axes (" << axis0 << ", " << axis1 << ") are out of range for 'x' of shape "
                                 << shape_str(x.shape()) << " (valid axes: " << -nd << " to " << nd - 1 << ")");
  int a0 = ops::normalize_axis("transpose", axis0, nd);
  int a1 = ops::normalize_axis("transpose", axis1, nd);
  if (a0 > a1) std::swap(a0, a1);
  Shape out = x.shape();
  std::swap(out[a0], out[a1]);
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  // Swapping an axis with itself moves nothing: the same elements in the same order, one
  // contiguous copy (the result stays a distinct tensor).
  const SwapView v = a0 == a1 ? SwapView{1, 1, 1, 1, x.numel()} : swap_view(x.shape(), a0, a1);
  OpScope scope("transpose", 0.0, cost::bytes(2 * x.numel(), x.dtype()), x.device());
  run_transpose("transpose", x, y, v);
  record(y, "transpose", {x}, [v, in_shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
    OpScope scope("transpose.backward", 0.0, cost::bytes(2 * g.numel(), g.dtype()), g.device());
    const SwapView back{v.outer, v.d1, v.mid, v.d0, v.inner};  // g is [outer, d1, mid, d0, inner]
    Tensor gx = Tensor::empty(in_shape, g.dtype(), g.device());  // x's shape
    run_transpose("transpose backward", g, gx, back);
    return std::vector<Tensor>{gx};
  });
  return y;
}

}  // namespace ddpm
