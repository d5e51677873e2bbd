// kernels/cuda/concat.cu: strided device-to-device row copies. A single row (a range of
// the first axis, or a contiguous whole) is a plain cudaMemcpyAsync, which also avoids the
// pitch limit of the 2D copy for very long rows.
#include "kernels/cuda/concat.h"

#include "kernels/cuda/check.h"

namespace ddpm::cuda {

void copy_rows(const float* src, std::int64_t src_pitch, float* dst, std::int64_t dst_pitch, std::int64_t rows,
               std::int64_t row_len, cudaStream_t stream) {
  if (rows == 0 || row_len == 0) return;
  const std::size_t width = static_cast<std::size_t>(row_len) * sizeof(float);
  if (rows == 1 || (src_pitch == row_len && dst_pitch == row_len)) {
    DDPM_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, width * static_cast<std::size_t>(rows), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  DDPM_CUDA_CHECK(cudaMemcpy2DAsync(dst, static_cast<std::size_t>(dst_pitch) * sizeof(float), src,
                                    static_cast<std::size_t>(src_pitch) * sizeof(float), width,
                                    static_cast<std::size_t>(rows), cudaMemcpyDeviceToDevice, stream));
}

}  // namespace ddpm::cuda
