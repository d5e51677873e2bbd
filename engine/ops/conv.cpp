// engine/ops/conv.cpp: conv2d forward and backward (equations in conv.h).
#include "engine/ops/conv.h"

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/common/conv2d_geometry.h"
#include "kernels/cpu/conv2d.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/conv2d.h"
#include "kernels/cuda/conv_epilogue.h"
#endif

namespace ddpm {

namespace {

// Checks one optional epilogue input: float, on x's device and dtype, of shape `expected`.
void check_epilogue_input(const Tensor& t, const char* arg, const Tensor& x, const Shape& expected,
                          const char* meaning) {
  const char* op = "conv2d";
  ops::check_float(op, t, arg);
  ops::check_same_device(op, x, "x", t, arg);
  ops::check_same_dtype(op, x, "x", t, arg);
  DDPM_CHECK(t.shape() == expected, op << ": '" << arg << "' must have shape " << shape_str(expected) << " ("
                                       << meaning << "), got " << shape_str(t.shape()));
}

// Validates the arguments and returns the sizes of the convolution.
Conv2dGeometry check_conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding,
                            const Tensor& sample_bias, const Tensor& residual) {
  const char* op = "conv2d";
  ops::check_float(op, x, "x");
  ops::check_float(op, weight, "weight");
  ops::check_same_device(op, x, "x", weight, "weight");
  ops::check_same_dtype(op, x, "x", weight, "weight");
  DDPM_CHECK(x.ndim() == 4, op << ": 'x' must be an NHWC image batch [N, H, W, Cin], got shape "
                               << shape_str(x.shape()));
  DDPM_CHECK(weight.ndim() == 4, op << ": 'weight' must be a filter bank [Cout, kh, kw, Cin], got shape "
                                    << shape_str(weight.shape()));
  for (int d = 0; d < 4; ++d) {
    DDPM_CHECK(x.dim(d) > 0, op << ": 'x' has an empty dimension: " << shape_str(x.shape()));
    DDPM_CHECK(weight.dim(d) > 0, op << ": 'weight' has an empty dimension: " << shape_str(weight.shape()));
  }
  DDPM_CHECK(weight.dim(3) == x.dim(3), op << ": 'x' " << shape_str(x.shape()) << " has " << x.dim(3)
                                           << " input channels but 'weight' " << shape_str(weight.shape())
                                           << " expects " << weight.dim(3));
  DDPM_CHECK(stride >= 1, op << ": stride must be at least 1, got " << stride);
  DDPM_CHECK(padding >= 0, op << ": padding must be non-negative, got " << padding);
  const std::int64_t kh = weight.dim(1), kw = weight.dim(2);
  DDPM_CHECK(kh <= x.dim(1) + 2 * padding && kw <= x.dim(2) + 2 * padding,
             op << ": the " << kh << "x" << kw << " kernel of 'weight' " << shape_str(weight.shape())
                << " is larger than the padded input (" << x.dim(1) + 2 * padding << "x" << x.dim(2) + 2 * padding
                << " from 'x' " << shape_str(x.shape()) << " with padding " << padding << ")");
  if (bias.defined()) {
    ops::check_float(op, bias, "bias");
    ops::check_same_device(op, x, "x", bias, "bias");
    ops::check_same_dtype(op, x, "x", bias, "bias");
    DDPM_CHECK(bias.shape() == Shape{weight.dim(0)}, op << ": 'bias' must have shape [" << weight.dim(0)
                                                        << "] (one per output channel of 'weight' "
                                                        << shape_str(weight.shape()) << "), got "
                                                        << shape_str(bias.shape()));
  }
  const Conv2dGeometry geo =
      make_conv2d_geometry(x.dim(0), x.dim(1), x.dim(2), x.dim(3), weight.dim(0), kh, kw, stride, padding);
  if (sample_bias.defined())
    check_epilogue_input(sample_bias, "sample_bias", x, {geo.n, geo.cout},
                         "[N, Cout]: one value per sample of 'x' and output channel of 'weight'");
  if (residual.defined())
    check_epilogue_input(residual, "residual", x, {geo.n, geo.ho, geo.wo, geo.cout},
                         "[N, Ho, Wo, Cout]: the convolution's output shape");
  return geo;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding,
              const Tensor& sample_bias, const Tensor& residual) {
  const Conv2dGeometry geo = check_conv2d(x, weight, bias, stride, padding, sample_bias, residual);
  const bool has_bias = bias.defined(), has_sb = sample_bias.defined(), has_res = residual.defined();
  const std::int64_t out_numel = geo.n * geo.ho * geo.wo * geo.cout;
  // Reads x, W and the residual, writes the output once (the epilogue's read-modify-write
  // of y is counted in the convolution's own output traffic).
  OpScope scope("conv2d", cost::conv2d_flops(geo.n, geo.ho, geo.wo, geo.cout, geo.kh, geo.kw, geo.cin),
                cost::bytes(x.numel() + weight.numel() + out_numel + (has_res ? out_numel : 0), x.dtype()),
                x.device());
  // out [N, Ho, Wo, Cout]
  Tensor out = Tensor::empty({geo.n, geo.ho, geo.wo, geo.cout}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    DDPM_ON_CUDA("conv2d", cuda::conv2d_forward(x.data<float>(), weight.data<float>(),
                                                has_bias ? bias.data<float>() : nullptr, out.data<float>(), geo,
                                                cuda::stream(), has_sb ? sample_bias.data<float>() : nullptr,
                                                has_res ? residual.data<float>() : nullptr));
  } else {
    ops::cpu_dispatch("conv2d", x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::conv2d_forward(x.data<T>(), weight.data<T>(), has_bias ? bias.data<T>() : nullptr, out.data<T>(), geo,
                          has_sb ? sample_bias.data<T>() : nullptr, has_res ? residual.data<T>() : nullptr);
    });
  }

  Tensor xs = x.detach(), ws = weight.detach();
  record(out, "conv2d", {x, weight, bias, sample_bias, residual},
         [xs, ws, geo](const Tensor& g, const std::vector<bool>& need) {
    // dx and dW are each a convolution of the forward's size; reads g, x, W, writes the
    // gradients; the sample-bias reduction reads g once more and writes [N, Cout].
    OpScope scope(
        "conv2d.backward",
        (int(need[0]) + int(need[1])) * cost::conv2d_flops(geo.n, geo.ho, geo.wo, geo.cout, geo.kh, geo.kw, geo.cin),
        cost::bytes(g.numel() + xs.numel() + ws.numel() + (need[0] ? xs.numel() : 0) + (need[1] ? ws.numel() : 0) +
                        (need[3] ? geo.n * geo.cout : 0),
                    xs.dtype()),
        xs.device());
    Tensor gx, gw, gb, gsb;
    if (need[0]) gx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
    if (need[1]) gw = Tensor::empty(ws.shape(), ws.dtype(), ws.device());
    if (need[2]) gb = Tensor::empty({geo.cout}, xs.dtype(), xs.device());
    if (need[3]) gsb = Tensor::empty({geo.n, geo.cout}, xs.dtype(), xs.device());
    // With the sample-bias gradient wanted, the bias gradient is its sum over n (from the
    // [N, Cout] array); otherwise the usual reduction of g over n, oy, ox.
    const bool bias_from_sb = need[2] && need[3];
    const std::int64_t pixels = geo.out_pixels();
    if (xs.device().is_cuda()) {
      DDPM_ON_CUDA("conv2d", {
        const float* gy = g.data<float>();
        if (need[0]) cuda::conv2d_backward_data(gy, ws.data<float>(), gx.data<float>(), geo, cuda::stream());
        if (need[1]) cuda::conv2d_backward_filter(xs.data<float>(), gy, gw.data<float>(), geo, cuda::stream());
        if (need[3])
          cuda::conv2d_backward_sample_bias(gy, gsb.data<float>(), bias_from_sb ? gb.data<float>() : nullptr, geo.n,
                                            pixels, geo.cout, cuda::stream());
        if (need[2] && !bias_from_sb) cuda::conv2d_backward_bias(gy, gb.data<float>(), geo, cuda::stream());
      });
    } else {
      ops::cpu_dispatch("conv2d", xs.dtype(), [&](auto t) {
        using T = decltype(t);
        const T* gy = g.data<T>();
        if (need[0]) cpu::conv2d_backward_data(gy, ws.data<T>(), gx.data<T>(), geo);
        if (need[1]) cpu::conv2d_backward_filter(xs.data<T>(), gy, gw.data<T>(), geo);
        if (need[3])
          cpu::conv2d_backward_sample_bias(gy, gsb.data<T>(), bias_from_sb ? gb.data<T>() : nullptr, geo.n, pixels,
                                           geo.cout);
        if (need[2] && !bias_from_sb) cpu::conv2d_backward_bias(gy, gb.data<T>(), geo);
      });
    }
    // d residual = g: the same values, so the same tensor (the tape never writes into a
    // gradient it received; sums are formed in fresh tensors, see engine/autograd.cpp).
    return std::vector<Tensor>{gx, gw, gb, gsb, need[4] ? g : Tensor()};
  });
  return out;
}

}  // namespace ddpm
