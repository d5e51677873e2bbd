// engine/ops/reduce.cpp: reductions over axes (sum, mean, sum_to) and the MSE loss.
#include "engine/ops/reduce.h"

#include <algorithm>

#include "engine/ops/common.h"
#include "engine/ops/elementwise.h"
#include "engine/profiler.h"
#include "kernels/cpu/elementwise.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/elementwise.h"
#endif

namespace ddpm {

namespace {

// Sums x over the axes flagged in `reduced`; the result has x's shape with those axes
// set to 1 (keepdim form).
Tensor sum_keepdim(const Tensor& x, const std::vector<bool>& reduced) {
  ops::check_float("sum", x, "x");
  const Shape& s = x.shape();
  DDPM_CHECK(s.size() <= static_cast<std::size_t>(kMaxDims), "sum: at most " << kMaxDims << " dimensions");
  ReduceMap m;
  Shape out_shape = s;
  std::int64_t stride = 1, n_reduced = 1;
  std::vector<std::int64_t> strides(s.size());
  for (int d = static_cast<int>(s.size()) - 1; d >= 0; --d) {
    strides[static_cast<std::size_t>(d)] = stride;
    stride *= s[static_cast<std::size_t>(d)];
  }
  for (std::size_t d = 0; d < s.size(); ++d) {
    if (reduced[d]) {
      m.reduced_size[m.n_reduced] = s[d];
      m.reduced_stride[m.n_reduced++] = strides[d];
      n_reduced *= s[d];
      out_shape[d] = 1;
    } else {
      m.kept_size[m.n_kept] = s[d];
      m.kept_stride[m.n_kept++] = strides[d];
    }
  }
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  std::int64_t n_out = out.numel();
  OpScope scope("sum", static_cast<double>(x.numel()), cost::bytes(x.numel() + n_out, x.dtype()), x.device());
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA("sum", cuda::reduce_sum(x.data<float>(), out.data<float>(), m, n_out, n_reduced, cuda::stream()));
  } else {
    ops::cpu_dispatch("sum", x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::reduce_sum(x.data<T>(), out.data<T>(), m, n_out, n_reduced);
    });
  }
  Shape in_shape = s;
  record(out, "sum", {x}, [in_shape](const Tensor& g, const std::vector<bool>&) {
    OpScope scope("sum.backward", 0.0, cost::bytes(g.numel() + shape_numel(in_shape), g.dtype()), g.device());
    return std::vector<Tensor>{expand_to(g, in_shape)};
  });
  return out;
}

std::vector<bool> axes_mask(const char* op, const Tensor& x, const std::vector<int>& axes) {
  std::vector<bool> mask(static_cast<std::size_t>(x.ndim()), false);
  for (int a : axes) {
    int n = ops::normalize_axis(op, a, x.ndim());
    DDPM_CHECK(!mask[static_cast<std::size_t>(n)], op << ": axis " << a << " is listed twice");
    mask[static_cast<std::size_t>(n)] = true;
  }
  return mask;
}

Shape drop_axes(const Shape& s, const std::vector<bool>& mask) {
  Shape out;
  for (std::size_t d = 0; d < s.size(); ++d)
    if (!mask[d]) out.push_back(s[d]);
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  ops::check_defined("sum", x, "x");
  std::vector<bool> mask = axes_mask("sum", x, axes);
  Tensor out = sum_keepdim(x, mask);
  return keepdim ? out : out.reshape(drop_axes(x.shape(), mask));
}

Tensor mean(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  ops::check_defined("mean", x, "x");
  std::vector<bool> mask = axes_mask("mean", x, axes);
  std::int64_t count = 1;
  for (std::size_t d = 0; d < mask.size(); ++d)
    if (mask[d]) count *= x.shape()[d];
  DDPM_CHECK(count > 0, "mean: reducing over an empty axis of " << shape_str(x.shape()));
  return scale(sum(x, axes, keepdim), 1.0 / static_cast<double>(count));
}

Tensor sum(const Tensor& x) {
  ops::check_defined("sum", x, "x");
  std::vector<int> all(static_cast<std::size_t>(x.ndim()));
  for (int i = 0; i < x.ndim(); ++i) all[static_cast<std::size_t>(i)] = i;
  return sum(x, all, false);
}

Tensor mean(const Tensor& x) {
  ops::check_defined("mean", x, "x");
  DDPM_CHECK(x.numel() > 0, "mean of an empty tensor " << x.describe());
  return scale(sum(x), 1.0 / static_cast<double>(x.numel()));
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const Shape& gs = g.shape();
  DDPM_CHECK(gs.size() >= shape.size(), "sum_to: cannot reduce " << shape_str(gs) << " to " << shape_str(shape));
  std::size_t lead = gs.size() - shape.size();
  std::vector<bool> mask(gs.size(), false);
  for (std::size_t d = 0; d < gs.size(); ++d) {
    if (d < lead) {
      mask[d] = true;
    } else {
      std::int64_t want = shape[d - lead];
      DDPM_CHECK(want == gs[d] || want == 1, "sum_to: cannot reduce " << shape_str(gs) << " to " << shape_str(shape));
      mask[d] = want == 1 && gs[d] != 1;
    }
  }
  return sum_keepdim(g, mask).reshape(shape);
}

Tensor mse_loss(const Tensor& pred, const Tensor& target) {
  ops::check_defined("mse_loss", pred, "pred");
  ops::check_defined("mse_loss", target, "target");
  DDPM_CHECK(pred.shape() == target.shape(), "mse_loss: pred " << shape_str(pred.shape()) << " and target "
                                                               << shape_str(target.shape()) << " differ in shape");
  return mean(square(sub(pred, target)));
}

}  // namespace ddpm
