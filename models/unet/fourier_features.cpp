// models/unet/fourier_features.cpp: see fourier_features.h.
#include "models/unet/fourier_features.h"

#include <cmath>
#include <memory>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"

namespace ddpm::unet {

namespace {

constexpr double kTwoPi = 6.28318530717958647692;

// The angular frequencies 2 pi 2^n, n = n_min..n_max.
std::vector<double> frequencies(int n_min, int n_max) {
  std::vector<double> w;
  for (int n = n_min; n <= n_max; ++n) w.push_back(kTwoPi * std::ldexp(1.0, n));
  return w;
}

}  // namespace

std::int64_t fourier_feature_channels(std::int64_t channels, int n_min, int n_max) {
  DDPM_CHECK(n_min <= n_max, "Fourier features: n_min " << n_min << " must not exceed n_max " << n_max);
  return 2 * channels * (n_max - n_min + 1);
}

Tensor base2_fourier_features(const Tensor& x, int n_min, int n_max) {
  DDPM_CHECK(x.defined() && x.ndim() >= 1 && x.dim(x.ndim() - 1) >= 1,
             "Fourier features: the input must have a channel axis, got "
                 << (x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor")));
  const std::int64_t c = x.dim(x.ndim() - 1), out_c = fourier_feature_channels(c, n_min, n_max);
  const std::vector<double> w = frequencies(n_min, n_max);
  const auto k = static_cast<std::int64_t>(w.size());
  const std::int64_t rows = x.numel() / c, half = c * k;
  auto xs = std::make_shared<const std::vector<double>>(x.to_double_vector());
  std::vector<double> out(static_cast<std::size_t>(rows * out_c));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t f = 0; f < k; ++f) {
        const double a = w[static_cast<std::size_t>(f)] * (*xs)[static_cast<std::size_t>(r * c + ch)];
        out[static_cast<std::size_t>(r * out_c + ch * k + f)] = std::sin(a);
        out[static_cast<std::size_t>(r * out_c + half + ch * k + f)] = std::cos(a);
      }
  Shape shape = x.shape();
  shape.back() = out_c;
  Tensor y = Tensor::from_vector(out, shape, x.dtype(), x.device());
  const Shape in_shape = x.shape();
  const DType dtype = x.dtype();
  const Device device = x.device();
  record(y, "base2_fourier_features", {x},
         [xs, w, rows, c, k, out_c, half, in_shape, dtype, device](const Tensor& grad_out, const std::vector<bool>&) {
           const std::vector<double> go = grad_out.to_double_vector();
           std::vector<double> gx(static_cast<std::size_t>(rows * c), 0.0);
           for (std::int64_t r = 0; r < rows; ++r)
             for (std::int64_t ch = 0; ch < c; ++ch) {
               double acc = 0.0;
               for (std::int64_t f = 0; f < k; ++f) {
                 const double wf = w[static_cast<std::size_t>(f)];
                 const double a = wf * (*xs)[static_cast<std::size_t>(r * c + ch)];
                 acc += wf * (go[static_cast<std::size_t>(r * out_c + ch * k + f)] * std::cos(a) -
                              go[static_cast<std::size_t>(r * out_c + half + ch * k + f)] * std::sin(a));
               }
               gx[static_cast<std::size_t>(r * c + ch)] = acc;
             }
           return std::vector<Tensor>{Tensor::from_vector(gx, in_shape, dtype, device)};
         });
  return y;
}

}  // namespace ddpm::unet
