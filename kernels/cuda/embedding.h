// kernels/cuda/embedding.h: CUDA versions of kernels/cpu/embedding.h (fp32 tensors).
//
// The embedding functions take the ids as a HOST array (the engine keeps class labels on
// the host, where their range is checked); they copy them into pool scratch on `stream`
// before the launch and free it stream-ordered afterwards.
// timestep_embedding computes arguments and sines in double, like the CPU reference, so
// the two agree to the last float bit or one ulp.
// embedding_backward writes every element of gtable: one thread per table element sums the
// matching rows of g in ascending i, the CPU's order (deterministic, no atomics).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

void timestep_embedding(const float* t, float* out, std::int64_t N, std::int64_t dim, double log_max_period,
                        std::int64_t freq_denominator, bool sin_first, cudaStream_t stream);

void embedding_forward(const float* table, const std::int64_t* host_ids, float* out, std::int64_t n,
                       std::int64_t dim, cudaStream_t stream);
void embedding_backward(const float* g, const std::int64_t* host_ids, float* gtable, std::int64_t n,
                        std::int64_t num_classes, std::int64_t dim, cudaStream_t stream);

}  // namespace ddpm::cuda
