// kernels/cuda/staging.h: host-to-device copies of small host arrays that do not wait for
// the GPU.
//
// cudaMemcpyAsync from pageable host memory synchronizes the stream before it starts (CUDA
// runtime API, "API synchronization behavior"), so every small upload (a sampling step's
// timesteps, the per-sample schedule coefficients, class labels) used to drain the whole
// queue of kernels: the GPU then idled while the host issued the next ops, and a denoising
// step cost host time + device time instead of the larger of the two. Here a small array is
// first copied into a slot of a pinned (page-locked) staging ring, and the device copy is
// enqueued from there, which is truly asynchronous.
//
// The ring has kStagingSlots slots of kStagingSlotBytes. A slot is reused only after the copy
// that last read it has run (a CUDA event recorded after it), so the host blocks only when it
// is kStagingSlots uploads ahead of the GPU. Larger arrays take the plain path (copy, then
// wait), as they are rare and their copy time dominates anyway.
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

constexpr std::size_t kStagingSlotBytes = 4096;  // 1,024 floats or 512 int64 labels
constexpr int kStagingSlots = 256;               // 1 MiB of pinned memory in all

// Copies `bytes` from host memory at `src` to device memory at `dst`, ordered on `stream`.
// The caller may free or reuse `src` as soon as this returns. Returns without waiting for
// the GPU when bytes <= kStagingSlotBytes (and the ring has a free slot); otherwise waits for
// the copy to finish.
void upload(void* dst, const void* src, std::size_t bytes, cudaStream_t stream);

// On by default. Off makes every upload take the plain path (copy, then wait): for
// benchmarks that compare the two in one run (bench-unet --chain).
void set_staging_enabled(bool on);

// How many uploads went through the ring, and how many of those had to wait for a slot
// (for tests and the profiler).
struct StagingStats {
  unsigned long long staged = 0;
  unsigned long long waited_for_slot = 0;
};
StagingStats staging_stats();

}  // namespace ddpm::cuda
