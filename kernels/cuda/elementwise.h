// kernels/cuda/elementwise.h: CUDA versions of kernels/cpu/elementwise.h (fp32).
// Same maps, same functors; every launch is checked. Instantiated for the functors in
// kernels/common/elementwise_ops.h (see elementwise.cu).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/common/broadcast.h"

namespace ddpm::cuda {

template <class Op>
void unary_forward(const float* x, float* y, std::int64_t n, float alpha, cudaStream_t stream);
template <class Op>
void unary_backward(const float* x, const float* y, const float* g, float* gx, std::int64_t n, float alpha,
                    cudaStream_t stream);
template <class Op>
void binary(const float* a, const float* b, float* out, const BroadcastMap& m, std::int64_t n, cudaStream_t stream);
void expand(const float* x, float* out, const BroadcastMap& m, std::int64_t n, cudaStream_t stream);
void accumulate(float* dst, const float* src, std::int64_t n, cudaStream_t stream);
void reduce_sum(const float* x, float* out, const ReduceMap& m, std::int64_t n_out, std::int64_t n_reduced,
                cudaStream_t stream);
void fill(float* out, std::int64_t n, float value, cudaStream_t stream);

}  // namespace ddpm::cuda
