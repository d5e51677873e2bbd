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
#include "models/diffusion/gaussian_diffusion.h"

namespace ddpm::diffusion {

// Both take any device and f32 / f64 input and return a tensor of the same dtype and device;
// ValueError naming the shapes for a non-square or non-NHWC input or a size that does not fit.
Tensor area_downsample(const Tensor& x, int low_res_size);
Tensor bilinear_upsample(const Tensor& x, int size);
Tensor super_res_condition(const Tensor& x0, int low_res_size);

// The network closure of a super-resolution model: net(concat(x, cond), t, y). `cond` is
// [M, H, W, Cc] for the M images being sampled; the samplers may call it with a batch of
// k M rows (classifier-free guidance evaluates [x; x] in one doubled batch, gaussian_
// diffusion.h concat_rows), so cond is then repeated k times along the batch, matching the
// sampler's row order (copy j of the batch is rows [j M, (j + 1) M)). ValueError when the
// batch is not a multiple of M.
DenoiseFn concat_condition(DenoiseFn net, Tensor cond);

}  // namespace ddpm::diffusion
