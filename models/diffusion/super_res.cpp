// models/diffusion/super_res.cpp: the degradation maps and the conditioned closure (see
// super_res.h for the formulas and PyTorch's conventions they follow).
#include "models/diffusion/super_res.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>

#include "engine/error.h"
#include "engine/ops/concat.h"

namespace ddpm::diffusion {

namespace {

// A square NHWC image batch, checked: returns (N, size, C).
struct Nhwc {
  std::int64_t n, size, c;
};
Nhwc square_nhwc(const Tensor& x, const char* what) {
  DDPM_CHECK(x.defined() && x.ndim() == 4 && x.dim(1) == x.dim(2) && x.dim(1) >= 1,
             what << ": expected square images [N, S, S, C], got "
                  << (x.defined() ? shape_str(x.shape()) : std::string("none")));
  DDPM_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64,
             what << ": expected f32 or f64 images, got " << x.describe());
  return {x.dim(0), x.dim(1), x.dim(3)};
}

// Host values -> a tensor of x's dtype and device.
Tensor like(const std::vector<double>& v, const Shape& shape, const Tensor& x) {
  return Tensor::from_vector(v, shape, x.dtype(), Device::cpu()).to(x.device());
}

// PyTorch's linear source index with align_corners=False (area_pixel_compute_source_index):
// output pixel d of `out` samples input coordinate max(0, (d + 1/2) in / out - 1/2).
struct Tap {
  std::int64_t i0, i1;
  double w;  // weight of i1
};
std::vector<Tap> bilinear_taps(std::int64_t in, std::int64_t out) {
  std::vector<Tap> taps(static_cast<std::size_t>(out));
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (std::int64_t d = 0; d < out; ++d) {
    const double s = std::max(0.0, (static_cast<double>(d) + 0.5) * scale - 0.5);
    const std::int64_t i0 = std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(s)), in - 1);
    taps[static_cast<std::size_t>(d)] = {i0, std::min<std::int64_t>(i0 + 1, in - 1), s - static_cast<double>(i0)};
  }
  return taps;
}

}  // namespace

Tensor area_downsample(const Tensor& x, int low_res_size) {
  const Nhwc s = square_nhwc(x, "area_downsample");
  DDPM_CHECK(low_res_size >= 1 && low_res_size <= s.size && s.size % low_res_size == 0,
             "area_downsample: the low resolution " << low_res_size << " must divide the image size " << s.size
                                                    << " (an integer block of pixels is averaged per output pixel)");
  const std::int64_t L = low_res_size, k = s.size / L, C = s.c;
  const std::vector<double> v = x.to_double_vector();
  std::vector<double> out(static_cast<std::size_t>(s.n * L * L * C), 0.0);
  const double inv = 1.0 / static_cast<double>(k * k);
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t y = 0; y < s.size; ++y)
      for (std::int64_t xx = 0; xx < s.size; ++xx)
        for (std::int64_t c = 0; c < C; ++c)
          out[static_cast<std::size_t>(((n * L + y / k) * L + xx / k) * C + c)] +=
              v[static_cast<std::size_t>(((n * s.size + y) * s.size + xx) * C + c)] * inv;
  return like(out, {s.n, L, L, C}, x);
}

Tensor bilinear_upsample(const Tensor& x, int size) {
  const Nhwc s = square_nhwc(x, "bilinear_upsample");
  DDPM_CHECK(size >= 1, "bilinear_upsample: the output size must be positive, got " << size);
  const std::int64_t L = s.size, S = size, C = s.c;
  const std::vector<Tap> taps = bilinear_taps(L, S);
  const std::vector<double> v = x.to_double_vector();
  std::vector<double> out(static_cast<std::size_t>(s.n * S * S * C));
  auto at = [&](std::int64_t n, std::int64_t y, std::int64_t xx, std::int64_t c) {
    return v[static_cast<std::size_t>(((n * L + y) * L + xx) * C + c)];
  };
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t oy = 0; oy < S; ++oy) {
      const Tap& ty = taps[static_cast<std::size_t>(oy)];
      for (std::int64_t ox = 0; ox < S; ++ox) {
        const Tap& tx = taps[static_cast<std::size_t>(ox)];
        for (std::int64_t c = 0; c < C; ++c) {
          const double top = (1 - tx.w) * at(n, ty.i0, tx.i0, c) + tx.w * at(n, ty.i0, tx.i1, c);
          const double bottom = (1 - tx.w) * at(n, ty.i1, tx.i0, c) + tx.w * at(n, ty.i1, tx.i1, c);
          out[static_cast<std::size_t>(((n * S + oy) * S + ox) * C + c)] = (1 - ty.w) * top + ty.w * bottom;
        }
      }
    }
  return like(out, {s.n, S, S, C}, x);
}

Tensor super_res_condition(const Tensor& x0, int low_res_size) {
  const Nhwc s = square_nhwc(x0, "super_res_condition");
  return bilinear_upsample(area_downsample(x0, low_res_size), static_cast<int>(s.size));
}

DenoiseFn concat_condition(DenoiseFn net, Tensor cond) {
  DDPM_CHECK(cond.defined() && cond.ndim() >= 4 && cond.dim(0) >= 1,
             "concat_condition: the condition must be [M, H, W, C] (or [M, F, H, W, C] for video), got "
                 << (cond.defined() ? shape_str(cond.shape()) : std::string("none")));
  return [net = std::move(net), cond = std::move(cond)](const Tensor& x, const std::vector<double>& t,
                                                        const std::vector<std::int64_t>& y) {
    const std::int64_t m = cond.dim(0), n = x.ndim() == cond.ndim() ? x.dim(0) : -1;
    bool fits = n >= m && n % m == 0;
    for (int a = 1; fits && a + 1 < x.ndim(); ++a) fits = x.dim(a) == cond.dim(a);
    DDPM_CHECK(fits, "concat_condition: x_t " << shape_str(x.shape()) << " does not fit the condition "
                                              << shape_str(cond.shape())
                                              << " (same size, and a batch that is a multiple of its rows)");
    Tensor c = cond.dtype() == x.dtype() && cond.device() == x.device() ? cond : cond.to(x.device()).to(x.dtype());
    if (n > m) {  // classifier-free guidance's doubled batch [x; x]: the condition repeats the same way
      std::vector<Tensor> copies(static_cast<std::size_t>(n / m), c);
      c = concat(copies, 0);
    }
    return net(concat({x, c}, -1), t, y);
  };
}

// --- Gaussian conditioning augmentation (super_res.h) --------------------------------------

std::int64_t cond_augment_level(double fraction, std::int64_t num_timesteps, const char* what) {
  DDPM_CHECK(fraction >= 0 && fraction <= 1 && num_timesteps >= 1,
             what << " must be a fraction of the diffusion's " << num_timesteps << " steps in [0, 1], got "
                  << fraction);
  return std::llround(fraction * static_cast<double>(num_timesteps - 1));
}

Tensor augment_condition(const Tensor& z, const std::vector<std::int64_t>& levels, const Tensor& noise,
                         const std::vector<double>& alphas_cumprod) {
  const Nhwc s = square_nhwc(z, "augment_condition");
  DDPM_CHECK(noise.defined() && noise.shape() == z.shape() && static_cast<std::int64_t>(levels.size()) == s.n,
             "augment_condition: the condition " << shape_str(z.shape()) << " needs noise of its shape and one level "
                                                 << "per row, got " << (noise.defined() ? shape_str(noise.shape()) : "none")
                                                 << " and " << levels.size() << " level(s)");
  const std::vector<double> zv = z.to_double_vector(), nv = noise.to_double_vector();
  const std::int64_t C = s.c, pixels = s.size * s.size;
  std::vector<double> out(static_cast<std::size_t>(s.n * pixels * (C + 1)));
  for (std::int64_t i = 0; i < s.n; ++i) {
    const std::int64_t a = levels[static_cast<std::size_t>(i)];
    DDPM_CHECK(a >= 0 && a < static_cast<std::int64_t>(alphas_cumprod.size()),
               "augment_condition: level " << a << " is outside the schedule's [0, " << alphas_cumprod.size() << ")");
    const double abar = alphas_cumprod[static_cast<std::size_t>(a)];
    const double keep = std::sqrt(abar), sigma = std::sqrt(1.0 - abar);  // DDPM eq. 4
    for (std::int64_t p = 0; p < pixels; ++p) {
      const std::size_t src = static_cast<std::size_t>((i * pixels + p) * C);
      const std::size_t dst = static_cast<std::size_t>((i * pixels + p) * (C + 1));
      for (std::int64_t c = 0; c < C; ++c) out[dst + c] = keep * zv[src + c] + sigma * nv[src + c];
      out[dst + C] = static_cast<double>(a);  // the level plane
    }
  }
  return like(out, {s.n, s.size, s.size, C + 1}, z);
}

Tensor draw_augmented_condition(const Tensor& z, double max_aug, const std::vector<double>& alphas_cumprod,
                                Generator& gen) {
  const Nhwc s = square_nhwc(z, "draw_augmented_condition");
  const std::int64_t A =
      cond_augment_level(max_aug, static_cast<std::int64_t>(alphas_cumprod.size()), "--cond-augment");
  const std::vector<double> u = rand({s.n}, gen, Device::cpu(), DType::f64).to_double_vector();
  std::vector<std::int64_t> levels(u.size());
  for (std::size_t i = 0; i < u.size(); ++i)  // a ~ U{0, ..., A}
    levels[i] = std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(u[i] * static_cast<double>(A + 1))), A);
  const Tensor noise = randn(z.shape(), gen, Device::cpu(), DType::f64);
  return augment_condition(z, levels, noise, alphas_cumprod);
}

Tensor with_level_plane(const Tensor& z, std::int64_t level) {
  const Nhwc s = square_nhwc(z, "with_level_plane");
  const std::vector<double> zv = z.to_double_vector();
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(s.n * s.size * s.size * (s.c + 1)));
  for (std::size_t p = 0; p < zv.size(); p += static_cast<std::size_t>(s.c)) {
    out.insert(out.end(), zv.begin() + static_cast<std::ptrdiff_t>(p), zv.begin() + static_cast<std::ptrdiff_t>(p + s.c));
    out.push_back(static_cast<double>(level));
  }
  return like(out, {s.n, s.size, s.size, s.c + 1}, z);
}

std::vector<DenoiseFn> concat_augmented_conditions(std::vector<DenoiseFn> nets, Tensor z, std::int64_t level,
                                                  const std::vector<double>& alphas_cumprod, Generator& gen) {
  const Nhwc s = square_nhwc(z, "concat_augmented_condition");
  DDPM_CHECK(level >= 0 && level < static_cast<std::int64_t>(alphas_cumprod.size()),
             "concat_augmented_condition: level " << level << " is outside the schedule's [0, "
                                                  << alphas_cumprod.size() << ")");
  // The augmented condition is made once, at the first call of ANY of the closures (after
  // the sampler's x_T), and reused by every later call of all of them: one draw of n, so
  // every network sees the same z_aug. Shared state, so that copies of a closure agree too.
  auto aug = std::make_shared<Tensor>();  // undefined until the first call
  auto condition = [z = std::move(z), level, abar = alphas_cumprod, gen = &gen, aug, n = s.n]() -> const Tensor& {
    if (!aug->defined()) {
      const Tensor noise = randn(z.shape(), *gen, Device::cpu(), DType::f64);
      *aug = augment_condition(z.cpu(), std::vector<std::int64_t>(static_cast<std::size_t>(n), level), noise, abar)
                 .to(z.device());
    }
    return *aug;
  };
  std::vector<DenoiseFn> out;
  for (DenoiseFn& net : nets) {
    auto bound = std::make_shared<DenoiseFn>();  // concat_condition(net, z_aug) once z_aug exists
    out.push_back([net = std::move(net), condition, bound](const Tensor& x, const std::vector<double>& t,
                                                           const std::vector<std::int64_t>& y) {
      if (!*bound) *bound = concat_condition(net, condition());
      return (*bound)(x, t, y);
    });
  }
  return out;
}

DenoiseFn concat_augmented_condition(DenoiseFn net, Tensor z, std::int64_t level,
                                     const std::vector<double>& alphas_cumprod, Generator& gen) {
  return concat_augmented_conditions({std::move(net)}, std::move(z), level, alphas_cumprod, gen).front();
}

}  // namespace ddpm::diffusion
