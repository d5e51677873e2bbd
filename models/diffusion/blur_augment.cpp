// models/diffusion/blur_augment.cpp: the Gaussian blur of the low-res condition and its
// training draw (formulas, border rule and draw order in blur_augment.h).
#include "models/diffusion/blur_augment.h"

#include <cmath>

#include "engine/error.h"
#include "models/diffusion/super_res.h"

namespace ddpm::diffusion {

void validate_blur_augment(const BlurAugment& b) {
  DDPM_CHECK(std::isfinite(b.prob) && b.prob >= 0 && b.prob <= 1,
             "--blur-augment must be a probability in [0, 1] (the share of conditions blurred), got " << b.prob);
  DDPM_CHECK(std::isfinite(b.sigma_min) && std::isfinite(b.sigma_max) && b.sigma_min > 0 && b.sigma_min <= b.sigma_max,
             "--blur-sigma must be a range A,B with 0 < A <= B (sigma ~ U[A, B] in low-res pixels), got "
                 << b.sigma_min << "," << b.sigma_max);
}

std::vector<double> gaussian_kernel_1d(double sigma) {
  DDPM_CHECK(std::isfinite(sigma) && sigma > 0,
             "gaussian_kernel_1d: sigma must be a positive number of pixels, got " << sigma);
  const auto r = static_cast<std::int64_t>(std::ceil(3.0 * sigma));
  std::vector<double> k(static_cast<std::size_t>(2 * r + 1));
  double z = 0.0;
  for (std::int64_t j = -r; j <= r; ++j) {
    const double d = static_cast<double>(j);
    k[static_cast<std::size_t>(j + r)] = std::exp(-d * d / (2.0 * sigma * sigma));
    z += k[static_cast<std::size_t>(j + r)];
  }
  for (double& v : k) v /= z;  // the centre tap is exp(0) = 1, so z >= 1
  return k;
}

std::int64_t reflect_index(std::int64_t i, std::int64_t n) {
  if (n <= 1) return 0;
  const std::int64_t period = 2 * (n - 1);  // ... 2 1 [0 1 .. n-1] n-2 ... : mirror without repeating the edge
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

namespace {

// One 1-D pass of kernel k (radius r = k.size() / 2) along x or along y of one image
// [S, S, C] in `src`, written to `dst`; source indices outside [0, S) are reflected.
void blur_pass(const double* src, double* dst, std::int64_t S, std::int64_t C, const std::vector<double>& k,
               bool along_x) {
  const auto r = static_cast<std::int64_t>(k.size() / 2);
  for (std::int64_t y = 0; y < S; ++y)
    for (std::int64_t x = 0; x < S; ++x)
      for (std::int64_t c = 0; c < C; ++c) {
        double acc = 0.0;
        for (std::int64_t j = -r; j <= r; ++j) {
          const std::int64_t yy = along_x ? y : reflect_index(y + j, S);
          const std::int64_t xx = along_x ? reflect_index(x + j, S) : x;
          acc += k[static_cast<std::size_t>(j + r)] * src[(yy * S + xx) * C + c];
        }
        dst[(y * S + x) * C + c] = acc;
      }
}

}  // namespace

Tensor gaussian_blur(const Tensor& x, const std::vector<double>& sigmas) {
  DDPM_CHECK(x.defined() && x.ndim() == 4 && x.dim(1) == x.dim(2) && x.dim(1) >= 1,
             "gaussian_blur: expected square images [N, S, S, C], got "
                 << (x.defined() ? shape_str(x.shape()) : std::string("none")));
  DDPM_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64,
             "gaussian_blur: expected f32 or f64 images, got " << x.describe());
  DDPM_CHECK(static_cast<std::int64_t>(sigmas.size()) == x.dim(0),
             "gaussian_blur: " << sigmas.size() << " sigma(s) for a batch of " << x.dim(0) << " images (one per row)");
  const std::int64_t S = x.dim(1), C = x.dim(3), plane = S * S * C;
  std::vector<double> v = x.to_double_vector();
  std::vector<double> tmp(static_cast<std::size_t>(plane));
  for (std::size_t i = 0; i < sigmas.size(); ++i) {
    if (!(sigmas[i] > 0)) continue;  // sigma <= 0: the row is left as it is
    const std::vector<double> k = gaussian_kernel_1d(sigmas[i]);
    double* img = v.data() + static_cast<std::int64_t>(i) * plane;
    blur_pass(img, tmp.data(), S, C, k, /*along_x=*/true);
    blur_pass(tmp.data(), img, S, C, k, /*along_x=*/false);
  }
  return Tensor::from_vector(v, x.shape(), x.dtype(), Device::cpu()).to(x.device());
}

Tensor draw_blurred_low_res(const Tensor& low, const BlurAugment& blur, Generator& gen, std::vector<double>* used) {
  validate_blur_augment(blur);
  DDPM_CHECK(low.defined() && low.ndim() == 4,
             "draw_blurred_low_res: expected low-res images [N, L, L, C], got "
                 << (low.defined() ? shape_str(low.shape()) : std::string("none")));
  const std::int64_t n = low.dim(0);
  // Always 2N values, in this order (blur_augment.h): the decisions, then the widths.
  const std::vector<double> u = rand({n}, gen, Device::cpu(), DType::f64).to_double_vector();
  const std::vector<double> w = rand({n}, gen, Device::cpu(), DType::f64).to_double_vector();
  std::vector<double> sigmas(static_cast<std::size_t>(n), 0.0);
  for (std::size_t i = 0; i < sigmas.size(); ++i)
    if (u[i] < blur.prob) sigmas[i] = blur.sigma_min + (blur.sigma_max - blur.sigma_min) * w[i];  // U[a, b]
  if (used != nullptr) *used = sigmas;
  return gaussian_blur(low, sigmas);
}

Tensor blurred_super_res_condition(const Tensor& x0, int low_res_size, const BlurAugment& blur, Generator& gen) {
  DDPM_CHECK(x0.defined() && x0.ndim() == 4,
             "blurred_super_res_condition: expected images [N, H, H, C], got "
                 << (x0.defined() ? shape_str(x0.shape()) : std::string("none")));
  const Tensor low = draw_blurred_low_res(area_downsample(x0, low_res_size), blur, gen);
  return bilinear_upsample(low, static_cast<int>(x0.dim(1)));
}

}  // namespace ddpm::diffusion
