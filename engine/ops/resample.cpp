// engine/ops/resample.cpp: forward and backward of nearest 2x upsampling and 2x2 average
// pooling (NHWC). Gradient rules:
//   y = upsample(x):  dL/dx[n,h,w,c] = sum_{a,b in {0,1}} g[n, 2h+a, 2w+b, c]
//   y = avg_pool(x):  dL/dx[n,h,w,c] = g[n, h/2, w/2, c] / 4
// The two are adjoint up to the factor 4, so each backward reuses the other's kernel shape.
#include "engine/ops/resample.h"

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/cpu/resample.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/resample.h"
#endif

namespace ddpm {

namespace {

// Low-resolution sizes of an image pair, as the kernels take them.
struct LowRes {
  std::int64_t N, H, W, C;
};

void check_image(const char* op, const Tensor& x) {
  ops::check_float(op, x, "x");
  DDPM_CHECK(x.ndim() == 4, op << ": 'x' must be an NHWC image [N, H, W, C], got shape " << shape_str(x.shape()));
}

// Backward of upsample (sum of 2x2 blocks): g [N, 2H, 2W, C] -> [N, H, W, C].
Tensor upsample_backward(const Tensor& g, LowRes s) {
  Tensor gx = Tensor::empty({s.N, s.H, s.W, s.C}, g.dtype(), g.device());
  if (g.device().is_cuda()) {
    DDPM_ON_CUDA("upsample_nearest2x backward",
                 cuda::upsample_nearest2x_backward(g.data<float>(), gx.data<float>(), s.N, s.H, s.W, s.C,
                                                   cuda::stream()));
  } else {
    ops::cpu_dispatch("upsample_nearest2x backward", g.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::upsample_nearest2x_backward(g.data<T>(), gx.data<T>(), s.N, s.H, s.W, s.C);
    });
  }
  return gx;
}

// Backward of avg_pool (g/4 spread over 2x2 blocks): g [N, H, W, C] -> [N, 2H, 2W, C].
Tensor avg_pool_backward(const Tensor& g, LowRes s) {
  Tensor gx = Tensor::empty({s.N, 2 * s.H, 2 * s.W, s.C}, g.dtype(), g.device());
  if (g.device().is_cuda()) {
    DDPM_ON_CUDA("avg_pool2x backward", cuda::avg_pool2x_backward(g.data<float>(), gx.data<float>(), s.N, s.H, s.W,
                                                                  s.C, cuda::stream()));
  } else {
    ops::cpu_dispatch("avg_pool2x backward", g.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::avg_pool2x_backward(g.data<T>(), gx.data<T>(), s.N, s.H, s.W, s.C);
    });
  }
  return gx;
}

}  // namespace

Tensor upsample_nearest2x(const Tensor& x) {
  check_image("upsample_nearest2x", x);
  LowRes s{x.dim(0), x.dim(1), x.dim(2), x.dim(3)};
  Tensor y = Tensor::empty({s.N, 2 * s.H, 2 * s.W, s.C}, x.dtype(), x.device());  // [N, 2H, 2W, C]
  OpScope scope("upsample_nearest2x", 0.0, cost::bytes(x.numel() + y.numel(), x.dtype()), x.device());
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA("upsample_nearest2x", cuda::upsample_nearest2x_forward(x.data<float>(), y.data<float>(), s.N, s.H,
                                                                        s.W, s.C, cuda::stream()));
  } else {
    ops::cpu_dispatch("upsample_nearest2x", x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::upsample_nearest2x_forward(x.data<T>(), y.data<T>(), s.N, s.H, s.W, s.C);
    });
  }
  record(y, "upsample_nearest2x", {x}, [s](const Tensor& g, const std::vector<bool>&) {
    OpScope scope("upsample_nearest2x.backward", static_cast<double>(g.numel()),
                  cost::bytes(g.numel() + g.numel() / 4, g.dtype()), g.device());
    return std::vector<Tensor>{upsample_backward(g, s)};
  });
  return y;
}

Tensor avg_pool2x(const Tensor& x) {
  check_image("avg_pool2x", x);
  DDPM_CHECK(x.dim(1) % 2 == 0 && x.dim(2) % 2 == 0,
             "avg_pool2x: height and width of 'x' must be even to pool 2x2 blocks, got shape "
                 << shape_str(x.shape()) << " (H = " << x.dim(1) << ", W = " << x.dim(2) << ")");
  LowRes s{x.dim(0), x.dim(1) / 2, x.dim(2) / 2, x.dim(3)};
  Tensor y = Tensor::empty({s.N, s.H, s.W, s.C}, x.dtype(), x.device());  // [N, H/2, W/2, C]
  OpScope scope("avg_pool2x", static_cast<double>(x.numel()), cost::bytes(x.numel() + y.numel(), x.dtype()),
                x.device());
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA("avg_pool2x", cuda::avg_pool2x_forward(x.data<float>(), y.data<float>(), s.N, s.H, s.W, s.C,
                                                        cuda::stream()));
  } else {
    ops::cpu_dispatch("avg_pool2x", x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::avg_pool2x_forward(x.data<T>(), y.data<T>(), s.N, s.H, s.W, s.C);
    });
  }
  record(y, "avg_pool2x", {x}, [s](const Tensor& g, const std::vector<bool>&) {
    OpScope scope("avg_pool2x.backward", static_cast<double>(4 * g.numel()), cost::bytes(5 * g.numel(), g.dtype()),
                  g.device());
    return std::vector<Tensor>{avg_pool_backward(g, s)};
  });
  return y;
}

}  // namespace ddpm
