// engine/device.h: where a tensor lives, and which devices this process can use.
//
// A CUDA device is reported available only when cudaGetDeviceCount succeeds with a
// count > 0. It fails for many reasons (no driver gives cudaErrorInsufficientDriver, not
// cudaErrorNoDevice); every failure means "no GPU", never a crash.
#pragma once

#include <string>

namespace ddpm {

enum class DeviceType { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::cuda, i}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

// True when the library was compiled with the CUDA backend.
bool cuda_compiled();
// Number of usable CUDA devices; 0 when none, when the driver is missing, or when the
// library was built without CUDA.
int cuda_device_count();
inline bool cuda_available() { return cuda_device_count() > 0; }
// Why no CUDA device is usable (the CUDA error string), or "" when one is.
std::string cuda_unavailable_reason();

// Parses "auto", "cpu", "cuda" or "cuda:N". "auto" picks CUDA device 0 when one is
// available and the CPU otherwise. Asking for CUDA without a usable device throws a
// ValueError that says why.
Device parse_device(const std::string& spec);

}  // namespace ddpm
