// models/diffusion/super_res.h: the conditioning of a super-resolution diffusion model
// (cascaded diffusion: Saharia et al. 2021 "SR3"; Ho et al. 2021 "Cascaded Diffusion Models";
// Dhariwal & Nichol 2021 "Diffusion Models Beat GANs", sec. 5 / appendix, SuperResModel).
//
// A super-resolution model learns p(x_0 | low) where low is x_0 seen at a lower resolution.
// The network sees its input x_t CONCATENATED along channels with the low-resolution image
// brought back to the output size:
//   net_in = concat(x_t, up(low), channels)     [N, H, W, C + C]
// and predicts what an unconditional model would (eps, x_0, v; and the variance when learned).
// The condition is never noised, never scaled by a preconditioning (EDM's c_in scales x_t
// only) and gets no gradient.
//
// The two fixed maps, both on the HOST in float64 arithmetic (the training data comes from the
// host loader, the sampler's low-res inputs from files; they are cheap next to the network):
//
//   area_downsample(x, L)   [N, H, W, C] -> [N, L, L, C], H = W = k L for an integer k >= 1:
//       low[i, j] = (1 / k^2) sum_{a, b < k} x[k i + a, k j + b]
//     the mean of each k x k block. This is exactly PyTorch's F.interpolate(mode="area")
//     (= adaptive_avg_pool2d) when L divides H, which is what ADM's image_datasets.py /
//     super_res_sample.py use to make the low-res inputs. Any integer ratio is accepted
//     (not only powers of two); a non-divisible L is refused.
//
//   bilinear_upsample(x, S) [N, L, L, C] -> [N, S, S, C], PyTorch's
//     F.interpolate(mode="bilinear", align_corners=False), which ADM's SuperResModel.forward
//     applies to the low-res image. Per axis, output pixel d samples the input at
//         s = max(0, (d + 1/2) (L / S) - 1/2)        (pixel CENTRES aligned: align_corners=False)
//         i0 = floor(s), i1 = min(i0 + 1, L - 1), w = s - i0
//         out = (1 - w) x[i0] + w x[i1]
//     separably in y then x. Edges: the clamp at 0 and the min(., L - 1) replicate the border
//     pixels, there is no zero padding: with r = S / L > 1 the outputs d < (r - 1) / 2 equal
//     the first input pixel, and symmetrically at the far end. Between the centres of the
//     first and last input pixels a linear ramp is reproduced exactly.
//
//   super_res_condition(x0, L) = bilinear_upsample(area_downsample(x0, L), H): what training
//     concatenates to x_t (same dtype and device as x0).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "engine/rng.h"
#include "models/diffusion/gaussian_diffusion.h"

namespace ddpm::diffusion {

// Both take any device and f32 / f64 input and return a tensor of the same dtype and device;
// ValueError naming the shapes for a non-square or non-NHWC input or a size that does not fit.
Tensor area_downsample(const Tensor& x, int low_res_size);
Tensor bilinear_upsample(const Tensor& x, int size);
Tensor super_res_condition(const Tensor& x0, int low_res_size);

// The network closure of a model with a concatenated condition: net(concat(x, cond), t, y).
// `cond` is [M, H, W, Cc] for the M images being sampled (a super-resolution model's
// upsampled low-res image), or [M, F, H, W, Cc] for M video clips (a first-frame conditioned
// video model, unet.h); the samplers may call it with a batch of
// k M rows (classifier-free guidance evaluates [x; x] in one doubled batch, gaussian_
// diffusion.h concat_rows), so cond is then repeated k times along the batch, matching the
// sampler's row order (copy j of the batch is rows [j M, (j + 1) M)). ValueError when the
// batch is not a multiple of M.
DenoiseFn concat_condition(DenoiseFn net, Tensor cond);

// --- Gaussian conditioning augmentation (Ho, Saharia, Chan, Fleet, Norouzi, Salimans 2022,
// "Cascaded Diffusion Models for High Fidelity Image Generation", sec. 3.2 / 4.4) ---------
//
// Trained on perfectly downsampled real images, an SR model meets the base model's imperfect
// samples at test time and amplifies their artefacts. CDM corrupts the upsampled condition z
// with the model's own forward process at a random level a and TELLS the network a:
//   z_aug = sqrt(alpha_bar_a) z + sqrt(1 - alpha_bar_a) n,   n ~ N(0, I)      (DDPM eq. 4)
// (CDM's "Gaussian augmentation", non-truncated form). Choices made here:
//   - the augmentation schedule is the model's own noise schedule (alpha_bar of the
//     diffusion's betas), restricted to its first levels: a ~ U{0, ..., A} with
//     A = round(max_aug (T - 1)) for --cond-augment max_aug in (0, 1]; a level given as a
//     fraction f (ddpm-sample --low-res-noise-level f, f in [0, max_aug]) is
//     a = round(f (T - 1)), so f = max_aug is the largest level training drew. Level 0 is
//     the schedule's first step (sqrt(1 - alpha_bar_0) = sqrt(beta_1), 0.01 for the linear
//     schedule), not a clean condition: every level was seen in training.
//   - the level travels WITH the condition as one extra constant channel, the "level plane":
//     cond = concat(z_aug, a * ones[N, H, W, 1]) [N, H, W, C + 1]. Everything that slices,
//     repeats or moves the condition (the trainer's microbatches and data-parallel ranks,
//     classifier-free guidance's doubled batch in concat_condition) then carries each row's
//     level along, and DenoiseFn keeps its (x, t, y) signature. The UNet (unet.h,
//     cond_augment) cuts the plane off before conv_in and embeds the level of pixel (0, 0).
// All of it in float64 on the host, like the degradation maps above.

// a = round(f (T - 1)); ValueError naming `what` for f outside [0, 1].
std::int64_t cond_augment_level(double fraction, std::int64_t num_timesteps, const char* what);

// z [N, H, W, C] -> [N, H, W, C + 1]: sqrt(abar_{a_i}) z_i + sqrt(1 - abar_{a_i}) noise_i,
// then the level plane a_i. `noise` has z's shape; levels[i] in [0, T). Same dtype and
// device as z.
Tensor augment_condition(const Tensor& z, const std::vector<std::int64_t>& levels, const Tensor& noise,
                         const std::vector<double>& alphas_cumprod);

// Training (ddpm-train --cond-augment max_aug): draws from `gen`, in this order, N values of
// rand (f64, on the host) for the levels, a_i = min(floor(u_i (A + 1)), A), then randn of
// z's shape (f64, on the host) for n; returns augment_condition(z, a, n). With --blur-augment
// the blur's 2N values (blur_augment.h) come before all of these: blur, then noise.
Tensor draw_augmented_condition(const Tensor& z, double max_aug, const std::vector<double>& alphas_cumprod,
                                Generator& gen);

// The level plane without noise: z with a constant channel of `level` appended (the
// training sample grids, which condition on clean images at level 0 and draw nothing, so
// the trainer's generator is untouched and resume stays bit-identical).
Tensor with_level_plane(const Tensor& z, std::int64_t level);

// Sampling (ddpm-sample --low-res-noise-level f): concat_condition with z augmented at one
// fixed level for all M rows. The noise n (randn of z's shape, f64 on the host, from `gen`)
// is drawn at the closure's FIRST call: every sampler draws x_T before it calls the network,
// so the order per batch is x_T (and any noise a sampler adds before its first network call,
// such as Heun's S_churn), then n, then the sampler's step noise. `gen` must outlive the
// closure.
DenoiseFn concat_augmented_condition(DenoiseFn net, Tensor z, std::int64_t level,
                                     const std::vector<double>& alphas_cumprod, Generator& gen);
// The same for several networks that must see ONE condition (autoguidance of a super-
// resolution model, models/run/autoguide_run.h: the main network and its guide): closure i
// calls nets[i], and n is drawn once, at the first call of whichever closure comes first, so
// every closure concatenates the same z_aug. concat_augmented_condition is this with one net.
std::vector<DenoiseFn> concat_augmented_conditions(std::vector<DenoiseFn> nets, Tensor z, std::int64_t level,
                                                  const std::vector<double>& alphas_cumprod, Generator& gen);

}  // namespace ddpm::diffusion
