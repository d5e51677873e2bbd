// models/diffusion/interpolation.h: spherical linear interpolation (slerp) of DDIM latents,
// for the latent interpolations of DDIM (Song et al. 2021, sec. 5.3 and fig. 6): two latents
// x_T^(0), x_T^(1) (from ddim_inversion.h or two seeds' noise) are interpolated and every
// point is decoded with the deterministic DDIM sampler, giving a smooth path of images.
//
// Slerp (Shoemake 1985), over all D elements of one latent as a single vector:
//   theta = arccos( <a, b> / (|a| |b|) )
//   slerp(a, b; f) = sin((1 - f) theta) / sin(theta) a + sin(f theta) / sin(theta) b,  f in [0, 1].
// For |a| = |b| it moves along the great circle from a to b at constant speed: the angle
// between a and slerp(a, b; f) is f theta, and the norm stays |a|.
//
// Why not lerp (1 - f) a + f b: the sampler expects x_T ~ N(0, I), whose norm concentrates
// at sqrt(D) (|x|^2 is chi-square with D degrees of freedom: mean D, standard deviation
// sqrt(2D), so |x| = sqrt(D) (1 + O(1/sqrt(D)))), and two independent draws are nearly
// orthogonal. The midpoint of lerp then has norm about sqrt(D / 2), a point the network never
// sees as x_T (it looks like the noise of a far less noisy step), and decodes to a washed-out,
// over-smoothed image; slerp keeps the norm and stays in the typical set.
//
// Nearly parallel inputs (sin(theta) < 1e-6) are interpolated linearly, the limit of the
// formula (it would divide 0 by 0). Opposite inputs (theta = pi) have no unique great circle;
// the formula still gives one of them.
#pragma once

#include <vector>

#include "engine/tensor.h"

namespace ddpm::diffusion {

// theta = arccos(<a, b> / (|a| |b|)) in [0, pi] over all elements. ValueError for
// different shapes or a zero vector.
double slerp_angle(const Tensor& a, const Tensor& b);

// slerp(a, b; f) for f in [0, 1] (ValueError otherwise), same shape, dtype and device as a.
Tensor slerp(const Tensor& a, const Tensor& b, double f);

// The F >= 2 evenly spaced fractions f_j = j / (F - 1), j = 0 .. F-1 (both ends included).
std::vector<double> interpolation_fractions(int frames);

}  // namespace ddpm::diffusion
