// kernels/cuda/concat.h: the CUDA twin of kernels/cpu/concat.h (fp32): the strided row
// copy behind concat, split and slice, as one cudaMemcpy2DAsync on `stream` (device to
// device; captured like a kernel by CUDA graphs). Pitches and lengths count elements.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

void copy_rows(const float* src, std::int64_t src_pitch, float* dst, std::int64_t dst_pitch, std::int64_t rows,
               std::int64_t row_len, cudaStream_t stream);

}  // namespace ddpm::cuda
