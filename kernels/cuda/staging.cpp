#include "kernels/cuda/staging.h"

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>

#include <cuda_runtime_api.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"

namespace ddpm::cuda {
namespace {

// The ring: one pinned block cut into slots, an event per slot marking the copy that last
// read it, and the next slot to hand out. Made on the first upload and kept for the life of
// the process (like the context it belongs to).
struct Ring {
  unsigned char* pinned = nullptr;
  std::array<cudaEvent_t, kStagingSlots> read_done{};
  std::array<bool, kStagingSlots> in_flight{};
  int next = 0;
  StagingStats stats;
  bool ready = false;
};

Ring& ring() {
  static Ring r;
  return r;
}

std::atomic<bool> g_enabled{true};

std::mutex& ring_mutex() {
  static std::mutex m;
  return m;
}

void make_ring(Ring& r) {
  (void)stream();  // the context (device, stream) first
  DDPM_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&r.pinned), kStagingSlotBytes * kStagingSlots));
  for (cudaEvent_t& e : r.read_done) DDPM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  r.ready = true;
}

}  // namespace

void upload(void* dst, const void* src, std::size_t bytes, cudaStream_t s) {
  if (bytes == 0) return;
  if (bytes > kStagingSlotBytes || !g_enabled.load(std::memory_order_relaxed)) {
    DDPM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
    DDPM_CUDA_CHECK(cudaStreamSynchronize(s));  // src is pageable and may go away on return
    return;
  }
  std::lock_guard<std::mutex> lock(ring_mutex());
  Ring& r = ring();
  if (!r.ready) make_ring(r);
  const int k = r.next;
  r.next = (k + 1) % kStagingSlots;
  if (r.in_flight[k]) {
    // The slot's previous copy may not have run yet: the host is kStagingSlots uploads ahead.
    const cudaError_t done = cudaEventQuery(r.read_done[k]);
    if (done == cudaErrorNotReady) {
      ++r.stats.waited_for_slot;
      DDPM_CUDA_CHECK(cudaEventSynchronize(r.read_done[k]));
    } else {
      DDPM_CUDA_CHECK(done);
    }
  }
  unsigned char* slot = r.pinned + static_cast<std::size_t>(k) * kStagingSlotBytes;
  std::memcpy(slot, src, bytes);
  DDPM_CUDA_CHECK(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, s));
  DDPM_CUDA_CHECK(cudaEventRecord(r.read_done[k], s));
  r.in_flight[k] = true;
  ++r.stats.staged;
}

void set_staging_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }

StagingStats staging_stats() {
  std::lock_guard<std::mutex> lock(ring_mutex());
  return ring().stats;
}

}  // namespace ddpm::cuda
