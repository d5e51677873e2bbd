#include "engine/rng.h"

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/cpu/random.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/random.h"
#endif

namespace ddpm {

namespace {

Tensor draw(const char* op, bool normal, const Shape& shape, Generator& gen, Device device, DType dtype) {
  DDPM_CHECK(dtype == DType::f32 || (dtype == DType::f64 && device.is_cpu()),
             op << ": dtype " << dtype_name(dtype) << " on " << device.str() << " is not supported");
  Tensor out = Tensor::empty(shape, DType::f32, device);
  OpScope scope(op, 0.0, cost::bytes(out.numel(), DType::f32), device);
  std::uint64_t offset = gen.advance(static_cast<std::uint64_t>(out.numel()));
  if (device.is_cuda()) {
    DDPM_ON_CUDA(op, (normal ? cuda::philox_normal : cuda::philox_uniform)(out.data<float>(), out.numel(), gen.seed(),
                                                                          offset, cuda::stream()));
  } else {
    (normal ? cpu::philox_normal : cpu::philox_uniform)(out.data<float>(), out.numel(), gen.seed(), offset);
  }
  return dtype == DType::f32 ? out : out.to(dtype);
}

}  // namespace

Tensor randn(const Shape& shape, Generator& gen, Device device, DType dtype) {
  return draw("randn", true, shape, gen, device, dtype);
}

Tensor rand(const Shape& shape, Generator& gen, Device device, DType dtype) {
  return draw("rand", false, shape, gen, device, dtype);
}

}  // namespace ddpm
