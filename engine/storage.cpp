#include "engine/storage.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "engine/error.h"

#if DDPM_HAVE_CUDA
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/staging.h"
#endif

namespace ddpm {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  DDPM_THROW(ValueError, what << ": this build has no CUDA backend");
}

struct Counter {
  std::atomic<std::size_t> live{0}, peak{0};
};
Counter g_counters[2];  // DeviceType::cpu, DeviceType::cuda
Counter& counter(DeviceType type) { return g_counters[type == DeviceType::cpu ? 0 : 1]; }

void count_alloc(DeviceType type, std::size_t nbytes) {
  Counter& c = counter(type);
  const std::size_t now = c.live.fetch_add(nbytes) + nbytes;
  std::size_t peak = c.peak.load();
  while (now > peak && !c.peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

MemoryStats memory_stats(DeviceType type) {
  const Counter& c = counter(type);
  return MemoryStats{c.live.load(), c.peak.load()};
}

void reset_peak_memory(DeviceType type) {
  Counter& c = counter(type);
  c.peak.store(c.live.load());
}

Storage::Storage(std::size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (nbytes == 0) return;
  if (device.is_cpu()) {
    std::size_t rounded = (nbytes + 63) / 64 * 64;
    data_ = std::aligned_alloc(64, rounded);
    DDPM_CHECK_AS(data_ != nullptr, IoError, "out of host memory: requested " << nbytes << " bytes");
  } else {
#if DDPM_HAVE_CUDA
    data_ = cuda::pool_alloc(nbytes);
#else
    no_cuda("allocating a CUDA tensor");
#endif
  }
  count_alloc(device.type, nbytes);
}

Storage::~Storage() {
  if (!data_) return;
  counter(device_.type).live.fetch_sub(nbytes_);
  if (device_.is_cpu()) {
    std::free(data_);
  } else {
#if DDPM_HAVE_CUDA
    cuda::pool_free(data_);
#endif
  }
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
#if DDPM_HAVE_CUDA
  if (dst_device.is_cuda() && src_device.is_cpu()) {
    cuda::upload(dst, src, nbytes, cuda::stream());  // small arrays: staged, no wait for the GPU (staging.h)
    return;
  }
  cudaMemcpyKind kind = dst_device.is_cpu()   ? cudaMemcpyDeviceToHost
                        : src_device.is_cpu() ? cudaMemcpyHostToDevice
                                              : cudaMemcpyDeviceToDevice;
  DDPM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, cuda::stream()));
  // Device to host: the caller reads the host array next, so wait.
  if (kind == cudaMemcpyDeviceToHost) cuda::synchronize();
#else
  no_cuda("copying to or from a CUDA tensor");
#endif
}

void zero_bytes(void* dst, Device device, std::size_t nbytes) {
  if (nbytes == 0) return;
  if (device.is_cpu()) {
    std::memset(dst, 0, nbytes);
    return;
  }
#if DDPM_HAVE_CUDA
  DDPM_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, cuda::stream()));
#else
  no_cuda("zeroing a CUDA tensor");
#endif
}

}  // namespace ddpm
