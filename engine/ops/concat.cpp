// engine/ops/concat.cpp: concat, slice and split as strided row copies.
//
// Around an axis a contiguous tensor is a matrix [outer, size(axis) * inner]; a range
// [start, start + length) of the axis is the column block [start * inner, (start + length)
// * inner) of every row. concat writes each input into its column block of the output;
// slice reads one block; their backwards are each other (concat's backward slices g,
// slice's backward writes g into a zero tensor).
#include "engine/ops/concat.h"

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/cpu/concat.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/concat.h"
#endif

namespace ddpm {

namespace {

struct AxisView {
  std::int64_t outer = 1, size = 0, inner = 1;  // the tensor as [outer, size, inner]
};

AxisView view_around(const Shape& s, int axis) {
  AxisView v;
  for (int d = 0; d < axis; ++d) v.outer *= s[static_cast<std::size_t>(d)];
  v.size = s[static_cast<std::size_t>(axis)];
  for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < s.size(); ++d) v.inner *= s[d];
  return v;
}

// Copies `rows` rows of `row_len` elements: dst[dst_at + r * dst_pitch + j] = src[src_at + r * src_pitch + j].
void copy_block(const char* op, const Tensor& src, std::int64_t src_at, std::int64_t src_pitch, Tensor& dst,
                std::int64_t dst_at, std::int64_t dst_pitch, std::int64_t rows, std::int64_t row_len) {
  if (src.device().is_cuda()) {
    DDPM_ON_CUDA(op, cuda::copy_rows(src.data<float>() + src_at, src_pitch, dst.data<float>() + dst_at, dst_pitch,
                                     rows, row_len, cuda::stream()));
  } else {
    ops::cpu_dispatch(op, src.dtype(), [&](auto tag) {
      using T = decltype(tag);
      cpu::copy_rows(src.data<T>() + src_at, src_pitch, dst.data<T>() + dst_at, dst_pitch, rows, row_len);
    });
  }
}

// dL/dx of slice: zeros of x's shape, with g [.., length, ..] copied to [start, start + length).
Tensor slice_backward(const Tensor& g, const Shape& x_shape, int axis, std::int64_t start) {
  Tensor gx = Tensor::zeros(x_shape, g.dtype(), g.device());
  AxisView v = view_around(x_shape, axis);
  std::int64_t length = g.dim(axis);
  copy_block("slice backward", g, 0, length * v.inner, gx, start * v.inner, v.size * v.inner, v.outer,
             length * v.inner);
  return gx;
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int axis) {
  const char* op = "concat";
  DDPM_CHECK(!xs.empty(), op << ": needs at least one tensor");
  ops::check_float(op, xs[0], "xs[0]");
  const Shape& s0 = xs[0].shape();
  int a = ops::normalize_axis(op, axis, xs[0].ndim());
  Shape out_shape = s0;
  out_shape[static_cast<std::size_t>(a)] = 0;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    std::string name = "xs[" + std::to_string(k) + "]";
    ops::check_float(op, xs[k], name.c_str());
    ops::check_same_device(op, xs[k], name.c_str(), xs[0], "xs[0]");
    ops::check_same_dtype(op, xs[k], name.c_str(), xs[0], "xs[0]");
    const Shape& sk = xs[k].shape();
    bool match = sk.size() == s0.size();
    for (std::size_t d = 0; match && d < sk.size(); ++d) match = d == static_cast<std::size_t>(a) || sk[d] == s0[d];
    DDPM_CHECK(match, op << ": " << name << " has shape " << shape_str(sk) << " but xs[0] has shape "
                         << shape_str(s0) << "; all dimensions except axis " << axis << " must match");
    out_shape[static_cast<std::size_t>(a)] += sk[static_cast<std::size_t>(a)];
  }
  Tensor out = Tensor::empty(out_shape, xs[0].dtype(), xs[0].device());
  AxisView vo = view_around(out_shape, a);
  OpScope scope(op, 0.0, cost::bytes(2 * out.numel(), out.dtype()), out.device());
  std::vector<std::int64_t> offsets, sizes;  // each input's range along the axis
  std::int64_t offset = 0;
  for (const Tensor& x : xs) {
    std::int64_t len = x.dim(a);
    copy_block(op, x, 0, len * vo.inner, out, offset * vo.inner, vo.size * vo.inner, vo.outer, len * vo.inner);
    offsets.push_back(offset);
    sizes.push_back(len);
    offset += len;
  }
  record(out, op, xs, [a, offsets, sizes](const Tensor& g, const std::vector<bool>& need) {
    OpScope scope("concat.backward", 0.0, cost::bytes(2 * g.numel(), g.dtype()), g.device());
    std::vector<Tensor> grads(offsets.size());
    for (std::size_t k = 0; k < offsets.size(); ++k)
      if (need[k]) grads[k] = slice(g, a, offsets[k], sizes[k]);
    return grads;
  });
  return out;
}

Tensor slice(const Tensor& x, int axis, std::int64_t start, std::int64_t length) {
  const char* op = "slice";
  ops::check_float(op, x, "x");
  int a = ops::normalize_axis(op, axis, x.ndim());
  AxisView v = view_around(x.shape(), a);
  DDPM_CHECK(start >= 0 && length >= 0 && start <= v.size && length <= v.size - start,
             op << ": range [" << start << ", " << start << " + " << length << ") is out of range for axis " << axis
                << " of size " << v.size << " in shape " << shape_str(x.shape()));
  Shape out_shape = x.shape();
  out_shape[static_cast<std::size_t>(a)] = length;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  OpScope scope(op, 0.0, cost::bytes(2 * out.numel(), x.dtype()), x.device());
  copy_block(op, x, start * v.inner, v.size * v.inner, out, 0, length * v.inner, v.outer, length * v.inner);
  Shape x_shape = x.shape();
  record(out, op, {x}, [x_shape, a, start](const Tensor& g, const std::vector<bool>&) {
    OpScope scope("slice.backward", 0.0, cost::bytes(g.numel() + shape_numel(x_shape), g.dtype()), g.device());
    return std::vector<Tensor>{slice_backward(g, x_shape, a, start)};
  });
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<std::int64_t>& sizes, int axis) {
  const char* op = "split";
  ops::check_float(op, x, "x");
  int a = ops::normalize_axis(op, axis, x.ndim());
  DDPM_CHECK(!sizes.empty(), op << ": needs at least one size");
  std::int64_t total = 0;
  for (std::int64_t s : sizes) {
    DDPM_CHECK(s >= 0, op << ": size " << s << " is negative");
    total += s;
  }
  DDPM_CHECK(total == x.dim(a), op << ": sizes add up to " << total << " but axis " << axis << " of shape "
                                   << shape_str(x.shape()) << " has size " << x.dim(a));
  std::vector<Tensor> parts;
  std::int64_t start = 0;
  for (std::int64_t s : sizes) {
    parts.push_back(slice(x, a, start, s));
    start += s;
  }
  return parts;
}

}  // namespace ddpm
