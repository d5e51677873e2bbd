// kernels/common/broadcast.h: index maps for broadcasting and for reductions over axes,
// shared by the CPU and CUDA kernels. Shapes are row-major; a stride of 0 repeats an
// element along that axis (numpy broadcasting).
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"

namespace ddpm {

constexpr int kMaxDims = 8;

// out[i] = f(a[a_offset(i)], b[b_offset(i)]) for i over the output's elements.
struct BroadcastMap {
  int ndim = 0;
  std::int64_t out_shape[kMaxDims] = {};
  std::int64_t a_stride[kMaxDims] = {};  // element strides, 0 along broadcast axes
  std::int64_t b_stride[kMaxDims] = {};
};

DDPM_HD void broadcast_offsets(const BroadcastMap& m, std::int64_t i, std::int64_t& ia, std::int64_t& ib) {
  ia = 0;
  ib = 0;
  for (int d = m.ndim - 1; d >= 0; --d) {
    std::int64_t idx = i % m.out_shape[d];
    i /= m.out_shape[d];
    ia += idx * m.a_stride[d];
    ib += idx * m.b_stride[d];
  }
}

// A reduction: output element o, reduced position r -> input offset
//   kept_offset(o) + reduced_offset(r)
// where the kept and the reduced axes each form a mixed-radix number.
struct ReduceMap {
  int n_kept = 0;
  std::int64_t kept_size[kMaxDims] = {};
  std::int64_t kept_stride[kMaxDims] = {};
  int n_reduced = 0;
  std::int64_t reduced_size[kMaxDims] = {};
  std::int64_t reduced_stride[kMaxDims] = {};
};

DDPM_HD std::int64_t mixed_radix_offset(std::int64_t i, int n, const std::int64_t* size, const std::int64_t* stride) {
  std::int64_t off = 0;
  for (int d = n - 1; d >= 0; --d) {
    off += (i % size[d]) * stride[d];
    i /= size[d];
  }
  return off;
}

}  // namespace ddpm
