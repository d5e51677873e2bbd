// kernels/cuda/conv2d.h: 2-D convolution on CUDA through cuDNN (fp32, NHWC tensors,
// KRSC filter), the fast path of kernels/cpu/conv2d.h with the same sizes and meaning.
//
// Each distinct geometry (n, h, w, cin, cout, kh, kw, stride, pad), under each combination
// of the settings of engine/math_mode.h (TF32, algorithm search, nondeterminism), gets a
// plan on first use: cuDNN descriptors, and per direction (forward, data gradient, filter
// gradient) an algorithm, its math type and its workspace size. Each direction's algorithm
// is chosen on that direction's first call, timed on the call's own buffers in benchmark
// mode (the default). Plans are cached for the life of the process; workspaces come from
// the stream-ordered pool (cuda::pool_alloc), which allocates on cuda::stream(), so
// `stream` must be cuda::stream(). kernels/cuda/conv2d.cpp states the selection rule.
// Math: exact fp32 (CUDNN_FMA_MATH) unless ddpm::allow_tf32(), then TF32 is permitted.
// Outputs are overwritten (not accumulated). The per-sample bias gradient of the fused
// epilogue is in kernels/cuda/conv_epilogue.h.
#pragma once

#include <cstddef>
#include <string>

#include <cuda_runtime_api.h>

#include "kernels/common/conv2d_geometry.h"

namespace ddpm::cuda {

// y [n, ho, wo, cout] = conv(x, w) + bias [+ sample_bias] [+ residual]: cuDNN's convolution,
// then one pass of the fused epilogue (kernels/cuda/conv_epilogue.h) for whatever of bias
// [cout], sample_bias [n, cout] and residual [n, ho, wo, cout] is not nullptr.
void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g,
                    cudaStream_t stream, const float* sample_bias = nullptr, const float* residual = nullptr);
// gx [n, h, w, cin] = dL/dx from gy [n, ho, wo, cout].
void conv2d_backward_data(const float* gy, const float* w, float* gx, const Conv2dGeometry& g, cudaStream_t stream);
// gw [cout, kh, kw, cin] = dL/dW, summed over the batch.
void conv2d_backward_filter(const float* x, const float* gy, float* gw, const Conv2dGeometry& g, cudaStream_t stream);
// gb [cout] = sum of gy over n, oy, ox.
void conv2d_backward_bias(const float* gy, float* gb, const Conv2dGeometry& g, cudaStream_t stream);

// Number of cached plans (one per distinct geometry and settings seen so far); for tests.
std::size_t conv2d_plan_count();

// What was chosen for one direction of a plan.
struct Conv2dAlgoInfo {
  bool chosen = false;          // false until that direction's first call
  int algo = -1;                // the cudnnConvolution*Algo_t value
  const char* name = "";        // its name, e.g. "IMPLICIT_PRECOMP_GEMM"
  bool deterministic = false;   // CUDNN_DETERMINISTIC
  bool tf32_permitted = false;  // math type other than CUDNN_FMA_MATH
  bool benchmarked = false;     // chosen by timing (false: by the heuristic)
  float find_ms = -1;           // its time in the benchmark, -1 when not benchmarked
  std::size_t workspace_bytes = 0;
};
struct Conv2dPlanInfo {
  bool exists = false;
  Conv2dAlgoInfo forward, backward_data, backward_filter;
  // Every chosen direction is deterministic (true when none is chosen yet).
  bool deterministic() const;
  // One line, e.g. "fwd IMPLICIT_PRECOMP_GEMM det fma 0.95ms ws 0.0MiB | dgrad ... | wgrad ...".
  std::string str() const;
};
// The plan of `g` under the current settings of engine/math_mode.h (exists = false when
// no call has made it yet). For tests and the benchmark's report.
Conv2dPlanInfo conv2d_plan_info(const Conv2dGeometry& g);

}  // namespace ddpm::cuda
