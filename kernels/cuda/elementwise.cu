// kernels/cuda/elementwise.cu: grid-stride elementwise kernels and a block-per-output
// reduction. The math is in kernels/common/elementwise_ops.h, shared with the CPU loops.
#include "kernels/cuda/elementwise.h"

#include <algorithm>

#include "kernels/common/elementwise_ops.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

constexpr int kThreads = 256;

template <class Op>
__global__ void unary_forward_kernel(const float* x, float* y, std::int64_t n, float alpha) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = Op::f(x[i], alpha);
}

template <class Op>
__global__ void unary_backward_kernel(const float* x, const float* y, const float* g, float* gx, std::int64_t n,
                                      float alpha) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    gx[i] = g[i] * Op::df(x[i], y[i], alpha);
}

template <class Op>
__global__ void binary_kernel(const float* a, const float* b, float* out, BroadcastMap m, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t ia, ib;
    broadcast_offsets(m, i, ia, ib);
    out[i] = Op::f(a[ia], b[ib]);
  }
}

// Same-shape fast path: no index arithmetic.
template <class Op>
__global__ void binary_same_kernel(const float* a, const float* b, float* out, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] = Op::f(a[i], b[i]);
}

__global__ void expand_kernel(const float* x, float* out, BroadcastMap m, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t ix, unused;
    broadcast_offsets(m, i, ix, unused);
    out[i] = x[ix];
  }
}

__global__ void accumulate_kernel(float* dst, const float* src, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    dst[i] += src[i];
}

__global__ void fill_kernel(float* out, std::int64_t n, float value) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] = value;
}

// One block per output element: threads stride over the reduced positions, then a
// shared-memory tree sums the per-thread partials.
__global__ void reduce_sum_kernel(const float* x, float* out, ReduceMap m, std::int64_t n_out,
                                  std::int64_t n_reduced) {
  __shared__ float partial[kThreads];
  for (std::int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {
    const float* base = x + mixed_radix_offset(o, m.n_kept, m.kept_size, m.kept_stride);
    float acc = 0.f;
    for (std::int64_t r = threadIdx.x; r < n_reduced; r += blockDim.x)
      acc += base[mixed_radix_offset(r, m.n_reduced, m.reduced_size, m.reduced_stride)];
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[o] = partial[0];
    __syncthreads();
  }
}

}  // namespace

template <class Op>
void unary_forward(const float* x, float* y, std::int64_t n, float alpha, cudaStream_t stream) {
  if (n == 0) return;
  unary_forward_kernel<Op><<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, n, alpha);
  DDPM_LAUNCH_CHECK(Op::name);
}

template <class Op>
void unary_backward(const float* x, const float* y, const float* g, float* gx, std::int64_t n, float alpha,
                    cudaStream_t stream) {
  if (n == 0) return;
  unary_backward_kernel<Op><<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, g, gx, n, alpha);
  DDPM_LAUNCH_CHECK(Op::name);
}

template <class Op>
void binary(const float* a, const float* b, float* out, const BroadcastMap& m, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  bool same = true;
  std::int64_t contiguous = 1;
  for (int d = m.ndim - 1; d >= 0; --d) {
    same = same && m.a_stride[d] == contiguous && m.b_stride[d] == contiguous;
    contiguous *= m.out_shape[d];
  }
  if (same)
    binary_same_kernel<Op><<<grid_for(n, kThreads), kThreads, 0, stream>>>(a, b, out, n);
  else
    binary_kernel<Op><<<grid_for(n, kThreads), kThreads, 0, stream>>>(a, b, out, m, n);
  DDPM_LAUNCH_CHECK("binary elementwise");
}

void expand(const float* x, float* out, const BroadcastMap& m, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  expand_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, out, m, n);
  DDPM_LAUNCH_CHECK("expand");
}

void accumulate(float* dst, const float* src, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  accumulate_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dst, src, n);
  DDPM_LAUNCH_CHECK("accumulate");
}

void fill(float* out, std::int64_t n, float value, cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(out, n, value);
  DDPM_LAUNCH_CHECK("fill");
}

void reduce_sum(const float* x, float* out, const ReduceMap& m, std::int64_t n_out, std::int64_t n_reduced,
                cudaStream_t stream) {
  if (n_out == 0) return;
  unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>(n_out, kMaxGridStrideBlocks));
  reduce_sum_kernel<<<blocks, kThreads, 0, stream>>>(x, out, m, n_out, n_reduced);
  DDPM_LAUNCH_CHECK("reduce_sum");
}

#define DDPM_INSTANTIATE_UNARY(Op)                                                                 \
  template void unary_forward<ew::Op>(const float*, float*, std::int64_t, float, cudaStream_t);   \
  template void unary_backward<ew::Op>(const float*, const float*, const float*, float*, std::int64_t, float, \
                                       cudaStream_t);
DDPM_INSTANTIATE_UNARY(Silu)
DDPM_INSTANTIATE_UNARY(Gelu)
DDPM_INSTANTIATE_UNARY(Exp)
DDPM_INSTANTIATE_UNARY(Log)
DDPM_INSTANTIATE_UNARY(Sqrt)
DDPM_INSTANTIATE_UNARY(Square)
DDPM_INSTANTIATE_UNARY(Scale)
DDPM_INSTANTIATE_UNARY(AddScalar)
DDPM_INSTANTIATE_UNARY(Tanh)
DDPM_INSTANTIATE_UNARY(Sigmoid)
DDPM_INSTANTIATE_UNARY(ClampMin)
DDPM_INSTANTIATE_UNARY(ClampMax)
DDPM_INSTANTIATE_UNARY(GreaterThan)
DDPM_INSTANTIATE_UNARY(LessThan)
#undef DDPM_INSTANTIATE_UNARY

template void binary<ew::Add>(const float*, const float*, float*, const BroadcastMap&, std::int64_t, cudaStream_t);
template void binary<ew::Sub>(const float*, const float*, float*, const BroadcastMap&, std::int64_t, cudaStream_t);
template void binary<ew::Mul>(const float*, const float*, float*, const BroadcastMap&, std::int64_t, cudaStream_t);
template void binary<ew::Div>(const float*, const float*, float*, const BroadcastMap&, std::int64_t, cudaStream_t);

}  // namespace ddpm::cuda
