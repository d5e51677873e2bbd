#include "engine/device.h"

#include "engine/error.h"

#if DDPM_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ddpm {

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

bool cuda_compiled() { return DDPM_HAVE_CUDA != 0; }

namespace {
struct CudaProbe {
  int count = 0;
  std::string reason;
};

const CudaProbe& probe() {
  static const CudaProbe p = [] {
    CudaProbe r;
#if DDPM_HAVE_CUDA
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error so later calls start clean
      r.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(err);
    } else if (n == 0) {
      r.reason = "no CUDA device is present";
    }
    r.count = err == cudaSuccess ? n : 0;
#else
    r.reason = "this build has no CUDA backend (configured without nvcc or with DDPM_CUDA=OFF)";
#endif
    return r;
  }();
  return p;
}
}  // namespace

int cuda_device_count() { return probe().count; }
std::string cuda_unavailable_reason() { return probe().reason; }

Device parse_device(const std::string& spec) {
  if (spec == "cpu") return Device::cpu();
  if (spec == "auto") return cuda_available() ? Device::cuda(0) : Device::cpu();
  if (spec.rfind("cuda", 0) == 0) {
    int index = 0;
    if (spec.size() > 4) {
      DDPM_CHECK(spec[4] == ':' && spec.size() > 5,
                 "device '" << spec << "' is not one of auto, cpu, cuda, cuda:N");
      try {
        index = std::stoi(spec.substr(5));
      } catch (const std::exception&) {
        DDPM_THROW(ValueError, "device '" << spec << "': '" << spec.substr(5) << "' is not a device index");
      }
    }
    DDPM_CHECK(cuda_available(),
               "device '" << spec << "' was requested but no CUDA device is usable: "
                          << cuda_unavailable_reason() << ". Use --device cpu or auto.");
    DDPM_CHECK(index >= 0 && index < cuda_device_count(),
               "device '" << spec << "': index " << index << " is out of range (" << cuda_device_count()
                          << " CUDA device(s))");
    return Device::cuda(index);
  }
  DDPM_THROW(ValueError, "device '" << spec << "' is not one of auto, cpu, cuda, cuda:N");
}

}  // namespace ddpm
