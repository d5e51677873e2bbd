// models/diffusion/blur_augment.h: Gaussian blur conditioning augmentation of a
// super-resolution model's LOW-resolution input (the "blurring augmentation" of cascaded
// diffusion: Ho, Saharia, Chan, Fleet, Norouzi, Salimans 2022, "Cascaded Diffusion Models for
// High Fidelity Image Generation", sec. 3.1 / 4.4 and appendix; SR3, Saharia et al. 2021;
// DALL-E 2's first upsampler, Ramesh et al. 2022, appendix).
//
// Why: a base model's samples are softer than real downsampled images. An SR model trained
// only on sharp area-downsampled conditions treats that softness as content and reproduces
// it; trained on conditions that are sometimes blurred, it learns to put the detail back.
// The blur acts on the low-res image L x L, BEFORE the bilinear upsample, because that is the
// image the base model generates and where its blurriness lives:
//   low  = area_downsample(x_0, L)                                   (super_res.h)
//   low' = G_{sigma_i} * low_i   with probability p, else low_i        (per sample i)
//   cond = bilinear_upsample(low', H)                                  (super_res.h)
//
// The recipe as we could find it (searching the papers' text and public code):
//   - CDM sec. 3.1 introduces blurring augmentation for the 64 -> 256 (and 128) stage and
//     applies it to a fraction of the examples; lucidrains/DALLE2-pytorch, which follows CDM
//     and DALL-E 2, blurs with probability 0.5, a kernel of size 3 and sigma 0.6 by default,
//     optionally sigma ~ U[lo, hi] (its LowresConditioner, citing CDM sec. 3.1).
//   - The range sigma in [0.4, 0.6] of our default is our recollection of CDM's appendix
//     and could NOT be confirmed from the paper text here: treat the default range as our
//     choice. p defaults to 0 (off); 0.5 is the value the sources above use.
//   - Kernel: we use the sampled Gaussian of radius r = ceil(3 sigma) (the recipe's fixed
//     size 3 is radius 1). For sigma <= 1/3 both are 3 taps; for sigma = 0.6 our kernel has
//     5 taps, the outer pair carrying weight 2 exp(-4 / 0.72) / Z ~ 0.5% that the size-3
//     kernel truncates. Our choice: the operator stays a faithful Gaussian for any sigma the
//     flag allows instead of becoming a box-like 3-tap filter at large sigma.
//
// The operator (host, float64), on an NHWC batch [N, S, S, C] with one sigma per row:
//   kernel   k_j = exp(-j^2 / (2 sigma^2)) / Z,  j = -r..r,  r = ceil(3 sigma),
//            Z = sum_j exp(-j^2 / (2 sigma^2))    (normalised: a constant image is unchanged)
//   blur     separable: out = K_y (K_x img), i.e. the 2-D kernel is the outer product k k^T,
//            rows first (along x) then columns (along y), each channel independently.
//   border   REFLECT (torchvision's GaussianBlur and kornia's gaussian_blur2d default): the
//            image is mirrored about its edge pixels without repeating them, index -1 -> 1,
//            S -> S - 2, ... For r >= S (a wide kernel on a tiny image) the mirror folds again
//            (period 2 (S - 1)), where torchvision would refuse; a 1-pixel image is constant.
//            Reflect keeps a linear ramp's interior exact and, unlike zero padding, does not
//            darken the border.
//   sigma_i <= 0 leaves row i untouched (bit-identical). As sigma -> 0 the kernel tends to
//   the identity [.., 0, 1, 0, ..] and, once exp(-1 / (2 sigma^2)) underflows to 0, is it
//   exactly, so the result is bit-identical there too.
//
// Random numbers (ddpm-train --blur-augment p --blur-sigma a,b), from the trainer's
// generator inside the batch provider, in this order per batch of N rows:
//   u = rand({N}) (f64 on the host): row i is blurred iff u_i < p;
//   v = rand({N}) (f64 on the host): sigma_i = a + (b - a) v_i;
// always both, 2N values, whatever u says, so the stream position after a batch does not
// depend on the data or on p, and resume stays bit-identical. With --cond-augment too, these
// 2N come FIRST and the conditioning augmentation's levels and noise follow (super_res.h):
// blur, upsample, then noise. That order is forced by what the level plane means: the noise
// augmentation tells the network z_aug = sqrt(abar_a) z + sqrt(1 - abar_a) n with i.i.d.
// n (DDPM eq. 4); blurring after it would shrink and correlate that noise and make the level
// a lie. It is also the order of the cascade's failure modes: a base sample is soft first,
// and the noise then covers whatever else differs.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace ddpm::diffusion {

// The blurring augmentation's settings; prob = 0 is off (no draws at all).
struct BlurAugment {
  double prob = 0.0;                        // p: the probability that a row is blurred
  double sigma_min = 0.4, sigma_max = 0.6;  // sigma ~ U[a, b], in low-res pixels
  bool enabled() const { return prob > 0; }
};

// ValueError naming the flags for p outside [0, 1] or not 0 < a <= b (finite).
void validate_blur_augment(const BlurAugment& b);

// The normalised sampled Gaussian k_{-r..r}, r = ceil(3 sigma) (2r + 1 taps, symmetric,
// sum 1); ValueError for sigma <= 0 or not finite.
std::vector<double> gaussian_kernel_1d(double sigma);

// The reflected index of i in [0, n) (mirror about the edge pixels, folded as often as
// needed; 0 when n = 1).
std::int64_t reflect_index(std::int64_t i, std::int64_t n);

// x [N, S, S, C] (f32 or f64, any device) blurred row by row with sigmas[i] (<= 0: unchanged);
// same shape, dtype and device. ValueError for a non-square batch or a sigma count != N.
Tensor gaussian_blur(const Tensor& x, const std::vector<double>& sigmas);

// Training: draws 2N values from `gen` (the order above) and blurs the chosen rows of the
// low-res batch `low` [N, L, L, C]; returns the per-row sigmas it used through `used` when
// given (0 for an unblurred row).
Tensor draw_blurred_low_res(const Tensor& low, const BlurAugment& blur, Generator& gen,
                            std::vector<double>* used = nullptr);

// The training condition of a blur-augmented SR model: bilinear_upsample(draw_blurred_low_res(
// area_downsample(x0, L)), H) (super_res.h), same dtype and device as x0.
Tensor blurred_super_res_condition(const Tensor& x0, int low_res_size, const BlurAugment& blur, Generator& gen);

}  // namespace ddpm::diffusion
