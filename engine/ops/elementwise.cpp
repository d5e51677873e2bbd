// engine/ops/elementwise.cpp: forward and backward of the elementwise ops.
#include "engine/ops/elementwise.h"

#include <algorithm>

#include "engine/ops/common.h"
#include "engine/ops/reduce.h"
#include "engine/profiler.h"
#include "kernels/cpu/elementwise.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/elementwise.h"
#endif

namespace ddpm {

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  std::size_t n = std::max(a.size(), b.size());
  DDPM_CHECK(n <= static_cast<std::size_t>(kMaxDims), op << ": at most " << kMaxDims << " dimensions are supported");
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    std::int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    DDPM_CHECK(da == db || da == 1 || db == 1, op << ": shapes " << shape_str(a) << " and " << shape_str(b)
                                                  << " do not broadcast (axis " << i << ": " << da << " vs " << db
                                                  << ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

// Element strides of `in` read as if it had shape `out` (0 along broadcast axes).
void fill_strides(const Shape& in, const Shape& out, std::int64_t* stride) {
  std::size_t lead = out.size() - in.size();
  std::int64_t s = 1;
  for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) {
    std::size_t du = static_cast<std::size_t>(d);
    if (du < lead) {
      stride[d] = 0;
      continue;
    }
    std::int64_t size = in[du - lead];
    stride[d] = size == 1 ? 0 : s;
    s *= size;
  }
}

// The map of out = f(a, b) with adjacent axes merged where both operands walk them as one:
// axes d-1 and d merge when, for a and for b, stride[d-1] == stride[d] * size[d] (contiguous
// across the pair, or both broadcast along it); axes of size 1 add no offset and are dropped.
// The offsets are the same with fewer axes: [N, H, W, C] + [N, H, W, C] becomes one axis of
// N*H*W*C elements, and [N, H, W, C] + [N, 1, 1, C] (the timestep embedding added to every
// pixel) becomes [N, H*W, C] with b's strides (C, 0, 1). The CPU kernels compute the offsets
// once per run of the last axis, so merging is what makes long runs.
BroadcastMap make_map(const Shape& a, const Shape& b, const Shape& out) {
  BroadcastMap full;
  full.ndim = static_cast<int>(out.size());
  for (std::size_t i = 0; i < out.size(); ++i) full.out_shape[i] = out[i];
  fill_strides(a, out, full.a_stride);
  fill_strides(b, out, full.b_stride);
  if (full.ndim <= 1) return full;
  BroadcastMap m;
  m.ndim = 1;
  m.out_shape[0] = full.out_shape[0];
  m.a_stride[0] = full.a_stride[0];
  m.b_stride[0] = full.b_stride[0];
  for (int d = 1; d < full.ndim; ++d) {
    const int k = m.ndim - 1;  // the merged axis so far; axis d follows it
    const std::int64_t size = full.out_shape[d];
    if (size == 1) continue;
    if (m.a_stride[k] == full.a_stride[d] * size && m.b_stride[k] == full.b_stride[d] * size) {
      m.out_shape[k] *= size;
      m.a_stride[k] = full.a_stride[d];
      m.b_stride[k] = full.b_stride[d];
    } else {
      m.out_shape[m.ndim] = size;
      m.a_stride[m.ndim] = full.a_stride[d];
      m.b_stride[m.ndim] = full.b_stride[d];
      ++m.ndim;
    }
  }
  return m;
}

template <class Op>
Tensor binary_forward(const char* name, const Tensor& a, const Tensor& b) {
  ops::check_float(name, a, "a");
  ops::check_float(name, b, "b");
  ops::check_same_device(name, a, "a", b, "b");
  ops::check_same_dtype(name, a, "a", b, "b");
  Shape out_shape = broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  BroadcastMap m = make_map(a.shape(), b.shape(), out_shape);
  OpScope scope(name, static_cast<double>(out.numel()), cost::bytes(a.numel() + b.numel() + out.numel(), a.dtype()),
                a.device());
  if (a.device().is_cuda()) {
    DDPM_ON_CUDA(name, cuda::binary<Op>(a.data<float>(), b.data<float>(), out.data<float>(), m, out.numel(),
                                        cuda::stream()));
  } else {
    ops::cpu_dispatch(name, a.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::binary<Op>(a.data<T>(), b.data<T>(), out.data<T>(), m, out.numel());
    });
  }
  return out;
}

template <class Op>
Tensor unary(const Tensor& x, double alpha) {
  ops::check_float(Op::name, x, "x");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  OpScope scope(Op::name, static_cast<double>(x.numel()), cost::bytes(2 * x.numel(), x.dtype()), x.device());
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA(Op::name, cuda::unary_forward<Op>(x.data<float>(), y.data<float>(), x.numel(),
                                                   static_cast<float>(alpha), cuda::stream()));
  } else {
    ops::cpu_dispatch(Op::name, x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::unary_forward<Op>(x.data<T>(), y.data<T>(), x.numel(), static_cast<T>(alpha));
    });
  }
  Tensor xs = x.detach(), ys = y.detach();
  record(y, Op::name, {x}, [xs, ys, alpha](const Tensor& g, const std::vector<bool>&) {
    static const std::string scope_name = std::string(Op::name) + ".backward";
    OpScope scope(scope_name.c_str(), 2.0 * static_cast<double>(xs.numel()), cost::bytes(4 * xs.numel(), xs.dtype()),
                  xs.device());
    Tensor gx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
    if (xs.device().is_cuda()) {
      DDPM_ON_CUDA(Op::name, cuda::unary_backward<Op>(xs.data<float>(), ys.data<float>(), g.data<float>(),
                                                      gx.data<float>(), xs.numel(), static_cast<float>(alpha),
                                                      cuda::stream()));
    } else {
      ops::cpu_dispatch(Op::name, xs.dtype(), [&](auto t) {
        using T = decltype(t);
        cpu::unary_backward<Op>(xs.data<T>(), ys.data<T>(), g.data<T>(), gx.data<T>(), xs.numel(),
                                static_cast<T>(alpha));
      });
    }
    return std::vector<Tensor>{gx};
  });
  return y;
}

}  // namespace

// d(a+b) = g, g     d(a-b) = g, -g     d(ab) = g b, g a     d(a/b) = g/b, -g a/b^2
// each summed back to its input's shape over the broadcast axes.
Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<ew::Add>("add", a, b);
  Shape sa = a.shape(), sb = b.shape();
  record(out, "add", {a, b}, [sa, sb](const Tensor& g, const std::vector<bool>& need) {
    OpScope scope("add.backward", static_cast<double>(g.numel()),
                  cost::bytes(g.numel() + shape_numel(sa) + shape_numel(sb), g.dtype()), g.device());
    return std::vector<Tensor>{need[0] ? sum_to(g, sa) : Tensor(), need[1] ? sum_to(g, sb) : Tensor()};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<ew::Sub>("sub", a, b);
  Shape sa = a.shape(), sb = b.shape();
  record(out, "sub", {a, b}, [sa, sb](const Tensor& g, const std::vector<bool>& need) {
    OpScope scope("sub.backward", 2.0 * static_cast<double>(g.numel()),
                  cost::bytes(g.numel() + shape_numel(sa) + shape_numel(sb), g.dtype()), g.device());
    return std::vector<Tensor>{need[0] ? sum_to(g, sa) : Tensor(), need[1] ? sum_to(neg(g), sb) : Tensor()};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<ew::Mul>("mul", a, b);
  Tensor ad = a.detach(), bd = b.detach();
  record(out, "mul", {a, b}, [ad, bd](const Tensor& g, const std::vector<bool>& need) {
    OpScope scope("mul.backward", 2.0 * static_cast<double>(g.numel()),
                  cost::bytes(g.numel() + 2 * (ad.numel() + bd.numel()), g.dtype()), g.device());
    return std::vector<Tensor>{need[0] ? sum_to(mul(g, bd), ad.shape()) : Tensor(),
                               need[1] ? sum_to(mul(g, ad), bd.shape()) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<ew::Div>("div", a, b);
  Shape sa = a.shape();
  Tensor bd = b.detach(), outd = out.detach();
  record(out, "div", {a, b}, [sa, bd, outd](const Tensor& g, const std::vector<bool>& need) {
    OpScope scope("div.backward", 4.0 * static_cast<double>(g.numel()),
                  cost::bytes(2 * g.numel() + 2 * bd.numel() + shape_numel(sa), g.dtype()), g.device());
    Tensor g_over_b = div(g, bd);
    // a/b^2 = out/b, so d(a/b)/db = -out/b.
    return std::vector<Tensor>{need[0] ? sum_to(g_over_b, sa) : Tensor(),
                               need[1] ? sum_to(neg(mul(g_over_b, outd)), bd.shape()) : Tensor()};
  });
  return out;
}

Tensor scale(const Tensor& x, double alpha) { return unary<ew::Scale>(x, alpha); }
Tensor add_scalar(const Tensor& x, double alpha) { return unary<ew::AddScalar>(x, alpha); }
Tensor neg(const Tensor& x) { return unary<ew::Scale>(x, -1.0); }
Tensor silu(const Tensor& x) { return unary<ew::Silu>(x, 0.0); }
Tensor gelu(const Tensor& x) { return unary<ew::Gelu>(x, 0.0); }
Tensor exp(const Tensor& x) { return unary<ew::Exp>(x, 0.0); }
Tensor log(const Tensor& x) { return unary<ew::Log>(x, 0.0); }
Tensor sqrt(const Tensor& x) { return unary<ew::Sqrt>(x, 0.0); }
Tensor square(const Tensor& x) { return unary<ew::Square>(x, 0.0); }
Tensor tanh(const Tensor& x) { return unary<ew::Tanh>(x, 0.0); }
Tensor sigmoid(const Tensor& x) { return unary<ew::Sigmoid>(x, 0.0); }
Tensor clamp_min(const Tensor& x, double lo) { return unary<ew::ClampMin>(x, lo); }
Tensor clamp_max(const Tensor& x, double hi) { return unary<ew::ClampMax>(x, hi); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  DDPM_CHECK(lo <= hi, "clamp: the lower bound " << lo << " is above the upper bound " << hi);
  return clamp_max(clamp_min(x, lo), hi);
}
Tensor greater_than(const Tensor& x, double c) { return unary<ew::GreaterThan>(x.detach(), c); }
Tensor less_than(const Tensor& x, double c) { return unary<ew::LessThan>(x.detach(), c); }

Tensor expand_to(const Tensor& x, const Shape& shape) {
  ops::check_float("expand_to", x, "x");
  Shape b = broadcast_shapes("expand_to", x.shape(), shape);
  DDPM_CHECK(b == shape, "expand_to: " << shape_str(x.shape()) << " cannot be broadcast to " << shape_str(shape));
  if (x.shape() == shape) return x;
  OpScope scope("expand_to", 0.0, cost::bytes(x.numel() + shape_numel(shape), x.dtype()), x.device());
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  BroadcastMap m = make_map(x.shape(), x.shape(), shape);
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA("expand_to", cuda::expand(x.data<float>(), out.data<float>(), m, out.numel(), cuda::stream()));
  } else {
    ops::cpu_dispatch("expand_to", x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::expand(x.data<T>(), out.data<T>(), m, out.numel());
    });
  }
  Shape sx = x.shape();
  record(out, "expand_to", {x}, [sx](const Tensor& g, const std::vector<bool>&) {
    OpScope scope("expand_to.backward", static_cast<double>(g.numel()),
                  cost::bytes(g.numel() + shape_numel(sx), g.dtype()), g.device());
    return std::vector<Tensor>{sum_to(g, sx)};
  });
  return out;
}

void add_(Tensor& dst, const Tensor& src) {
  ops::check_float("add_", dst, "dst");
  ops::check_same_device("add_", dst, "dst", src, "src");
  ops::check_same_dtype("add_", dst, "dst", src, "src");
  ops::check_shape("add_", src, "src", dst.shape());
  OpScope scope("add_", static_cast<double>(dst.numel()), cost::bytes(3 * dst.numel(), dst.dtype()), dst.device());
  if (dst.device().is_cuda()) {
    DDPM_ON_CUDA("add_", cuda::accumulate(dst.data<float>(), src.data<float>(), dst.numel(), cuda::stream()));
  } else {
    ops::cpu_dispatch("add_", dst.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::accumulate(dst.data<T>(), src.data<T>(), dst.numel());
    });
  }
}

}  // namespace ddpm
