// bench/bench_util.h: timing for the kernel benchmark.
//
// Method: each repetition first overwrites a 256 MiB buffer and then reads it back (larger
// than any GPU's L2, so every run starts with a cold cache as in a real training step; the
// read matters: after a write alone L2 still holds up to its size in dirty lines, whose
// write-back to DRAM would then be charged to the timed kernel), then records CUDA events
// around the kernel call only; the figure is the median over the repetitions, after a few
// warm-up calls (algorithm selection, pool growth). Rates are reported against what this
// device measurably achieves (device-to-device copy bandwidth, SGEMM rate), not datasheets.
#pragma once

#include <algorithm>
#include <functional>
#include <vector>

#include <cuda_runtime_api.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/optim.h"

namespace ddpm::bench {

class Timer {
 public:
  explicit Timer(int reps) : reps_(reps) {
    DDPM_CUDA_CHECK(cudaMalloc(&flush_, kFlushBytes));
    DDPM_CUDA_CHECK(cudaEventCreate(&start_));
    DDPM_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~Timer() {
    cudaFree(flush_);
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Median milliseconds of fn() over the repetitions, L2 flushed before each.
  double median_ms(const std::function<void()>& fn) {
    cudaStream_t s = cuda::stream();
    for (int i = 0; i < 3; ++i) fn();
    std::vector<double> ms;
    for (int i = 0; i < reps_; ++i) {
      DDPM_CUDA_CHECK(cudaMemsetAsync(flush_, i & 0xff, kFlushBytes, s));
      (void)cuda::sum_squares(static_cast<const float*>(flush_), kFlushBytes / sizeof(float), s);  // read: clean L2
      DDPM_CUDA_CHECK(cudaEventRecord(start_, s));
      fn();
      DDPM_CUDA_CHECK(cudaEventRecord(stop_, s));
      DDPM_CUDA_CHECK(cudaEventSynchronize(stop_));
      float t = 0;
      DDPM_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_));
      ms.push_back(t);
    }
    std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
    return ms[ms.size() / 2];
  }

 private:
  static constexpr std::size_t kFlushBytes = std::size_t(256) << 20;
  int reps_;
  void* flush_ = nullptr;
  cudaEvent_t start_{}, stop_{};
};

}  // namespace ddpm::bench
