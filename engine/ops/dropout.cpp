// engine/ops/dropout.cpp: forward and backward of inverted dropout (conventions in
// engine/ops/dropout.h). The mask is never stored: the backward regenerates it from the
// saved (seed, offset), since the Philox stream is addressable at any element. That costs
// one more Philox evaluation per element in the backward but saves a mask as large as the
// activation for every dropout layer on the tape (a byte or a float per element), and
// forward and backward become the same kernel.
#include "engine/ops/dropout.h"

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/cpu/dropout.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/dropout.h"
#endif

namespace ddpm {

namespace {

// y = x * mask(seed, offset) / (1 - p); also the backward with x = g.
Tensor apply_mask(const char* op, const Tensor& x, double p, std::uint64_t seed, std::uint64_t offset) {
  double scale = 1.0 / (1.0 - p);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA(op, cuda::dropout_apply(x.data<float>(), y.data<float>(), x.numel(), seed, offset, p,
                                         static_cast<float>(scale), cuda::stream()));
  } else {
    ops::cpu_dispatch(op, x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      cpu::dropout_apply(x.data<T>(), y.data<T>(), x.numel(), seed, offset, p, static_cast<T>(scale));
    });
  }
  return y;
}

}  // namespace

Tensor dropout(const Tensor& x, double p, Generator& gen, bool training) {
  ops::check_float("dropout", x, "x");
  DDPM_CHECK(p >= 0.0 && p < 1.0, "dropout: probability p = " << p << " must be in [0, 1)");
  if (!training || p == 0.0) return x;
  std::uint64_t seed = gen.seed();
  std::uint64_t offset = gen.advance(static_cast<std::uint64_t>(x.numel()));
  OpScope scope("dropout", static_cast<double>(x.numel()), cost::bytes(2 * x.numel(), x.dtype()), x.device());
  Tensor y = apply_mask("dropout", x, p, seed, offset);
  record(y, "dropout", {x}, [p, seed, offset](const Tensor& g, const std::vector<bool>&) {
    OpScope scope("dropout.backward", static_cast<double>(g.numel()), cost::bytes(2 * g.numel(), g.dtype()),
                  g.device());
    return std::vector<Tensor>{apply_mask("dropout backward", g, p, seed, offset)};
  });
  return y;
}

}  // namespace ddpm
