// kernels/cuda/embedding.cu: sinusoidal timestep embedding, class-table gather and its
// deterministic scatter-add backward. Formulas in kernels/cpu/embedding.h.
#include "kernels/cuda/embedding.h"

#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/staging.h"

namespace ddpm::cuda {

namespace {

constexpr int kThreads = 256;

// One thread per (n, i) with i < half: writes column i and column half + i.
__global__ void timestep_embedding_kernel(const float* t, float* out, std::int64_t N, std::int64_t dim,
                                          double log_max_period, std::int64_t freq_denominator, bool sin_first) {
  std::int64_t half = dim / 2;
  for (std::int64_t k = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; k < N * half;
       k += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t n = k / half, i = k % half;
    double freq = exp(-log_max_period * static_cast<double>(i) / static_cast<double>(freq_denominator));
    double arg = static_cast<double>(t[n]) * freq;
    double s, c;
    sincos(arg, &s, &c);
    float* row = out + n * dim;
    row[i] = static_cast<float>(sin_first ? s : c);
    row[half + i] = static_cast<float>(sin_first ? c : s);
    if (i == 0 && dim % 2 == 1) row[dim - 1] = 0.f;  // zero pad of an odd dim
  }
}

__global__ void embedding_forward_kernel(const float* table, const std::int64_t* ids, float* out, std::int64_t n,
                                         std::int64_t dim) {
  for (std::int64_t k = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; k < n * dim;
       k += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t i = k / dim, d = k % dim;
    out[k] = table[ids[i] * dim + d];
  }
}

// gtable[r, d] = sum over i with ids[i] == r of g[i, d], in ascending i. Neighbouring
// threads share r and read neighbouring d, so every warp reads one id (broadcast) and one
// contiguous run of g per step.
__global__ void embedding_backward_kernel(const float* g, const std::int64_t* ids, float* gtable, std::int64_t n,
                                          std::int64_t num_classes, std::int64_t dim) {
  for (std::int64_t k = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; k < num_classes * dim;
       k += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t r = k / dim, d = k % dim;
    float acc = 0.f;
    for (std::int64_t i = 0; i < n; ++i)
      if (ids[i] == r) acc += g[i * dim + d];
    gtable[k] = acc;
  }
}

// The ids copied into pool scratch on `stream` through the staging ring
// (staging.h: no wait for the GPU); freed stream-ordered when this goes out of scope (also
// when a launch check throws). The caller's array may go away once the constructor returns.
class DeviceIds {
 public:
  DeviceIds(const std::int64_t* host_ids, std::int64_t n, cudaStream_t stream) {
    std::size_t bytes = static_cast<std::size_t>(n) * sizeof(std::int64_t);
    ptr_ = static_cast<std::int64_t*>(pool_alloc(bytes));
    try {
      upload(ptr_, host_ids, bytes, stream);
    } catch (...) {
      pool_free(ptr_);  // the destructor will not run
      throw;
    }
  }
  ~DeviceIds() { pool_free(ptr_); }
  DeviceIds(const DeviceIds&) = delete;
  DeviceIds& operator=(const DeviceIds&) = delete;
  const std::int64_t* get() const { return ptr_; }

 private:
  std::int64_t* ptr_ = nullptr;
};

}  // namespace

void timestep_embedding(const float* t, float* out, std::int64_t N, std::int64_t dim, double log_max_period,
                        std::int64_t freq_denominator, bool sin_first, cudaStream_t stream) {
  std::int64_t half = dim / 2;
  if (N * half == 0) {  // only a zero pad column (dim 1) or nothing at all
    if (N * dim > 0)
      DDPM_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<std::size_t>(N * dim) * sizeof(float), stream));
    return;
  }
  timestep_embedding_kernel<<<grid_for(N * half, kThreads), kThreads, 0, stream>>>(
      t, out, N, dim, log_max_period, freq_denominator, sin_first);
  DDPM_LAUNCH_CHECK("timestep_embedding");
}

void embedding_forward(const float* table, const std::int64_t* host_ids, float* out, std::int64_t n,
                       std::int64_t dim, cudaStream_t stream) {
  if (n * dim == 0) return;
  DeviceIds ids(host_ids, n, stream);
  embedding_forward_kernel<<<grid_for(n * dim, kThreads), kThreads, 0, stream>>>(table, ids.get(), out, n, dim);
  DDPM_LAUNCH_CHECK("embedding_forward");
}

void embedding_backward(const float* g, const std::int64_t* host_ids, float* gtable, std::int64_t n,
                        std::int64_t num_classes, std::int64_t dim, cudaStream_t stream) {
  if (num_classes * dim == 0) return;
  if (n == 0) {
    DDPM_CUDA_CHECK(cudaMemsetAsync(gtable, 0, static_cast<std::size_t>(num_classes * dim) * sizeof(float), stream));
    return;
  }
  DeviceIds ids(host_ids, n, stream);
  embedding_backward_kernel<<<grid_for(num_classes * dim, kThreads), kThreads, 0, stream>>>(g, ids.get(), gtable,
                                                                                             n, num_classes, dim);
  DDPM_LAUNCH_CHECK("embedding_backward");
}

}  // namespace ddpm::cuda
