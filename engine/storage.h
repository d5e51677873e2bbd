// engine/storage.h: a block of bytes on one device. Tensors share storages (views,
// reshapes, parameter slabs); the block returns to its allocator when the last one goes.
// CPU blocks are 64-byte aligned; CUDA blocks come from the stream-ordered pool.
#pragma once

#include <cstddef>
#include <memory>

#include "engine/device.h"

namespace ddpm {

class Storage {
 public:
  Storage(std::size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  std::size_t nbytes_ = 0;
  Device device_;
};

// Copies bytes between any two devices (host<->device, device<->device, host<->host).
// Device copies are issued on the engine stream; copies to the host wait for it.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t nbytes);
// Sets nbytes to zero on the given device.
void zero_bytes(void* dst, Device device, std::size_t nbytes);

// Bytes held by live storages of one device type (all CUDA devices together), and the
// most held at once since the last reset_peak_memory: PyTorch's memory_allocated() and
// max_memory_allocated() for this engine's tensors. Requested sizes are counted, not the
// allocator's rounding, so the numbers are the same on every machine. Thread-safe.
struct MemoryStats {
  std::size_t live = 0;
  std::size_t peak = 0;
};
MemoryStats memory_stats(DeviceType type);
// Sets the peak to the bytes live now, to measure the peak of what comes next.
void reset_peak_memory(DeviceType type);

}  // namespace ddpm
