// models/diffusion/x0_threshold.h: the x_0 clip policy of every sampler (static and dynamic
// thresholding of the denoised estimate x_0^).
//
// Owns the one function that turns a network's x_0 estimate [N, ...] (any rank >= 1, axis 0 the
// batch; f32 or f64; CPU or CUDA) into the x_0^ the sampler's update uses. Every place that
// used to write clamp(x_0^, -1, 1) calls apply_x0_threshold instead: DDPM/DDIM denoise() and
// their classifier-guided DDIM x_0^, PLMS's multistep x_0, the Karras-level D(x; sigma) of VP
// models (Heun, Euler, DPM-Solver++, UniPC, ...), EDM's D, and p_mean_variance's bool clip_x0.
//
// The three policies:
//   none     x_0^ as the network gives it (EDM/Heun's default: the ODE must stay smooth).
//   static   x_0^ <- clip(x_0^, -1, 1): DDPM's "static thresholding", the data range of
//            images scaled to [-1, 1] (improved DDPM's clip_denoised). Bit for bit the
//            clamp the samplers always made.
//   dynamic  Imagen's dynamic thresholding (Saharia et al. 2022, "Photorealistic
//            Text-to-Image Diffusion Models with Deep Language Understanding", sec. 2.3),
//            per sample n over ALL its elements (every channel and pixel together):
//              s_n = Quantile_p(|x_0^[n]|)          the p-th percentile of the magnitudes
//              s_n = min(max(s_n, 1), S)            never tighter than [-1, 1]; S caps it
//              x_0^[n] <- clip(x_0^[n], -s_n, s_n) / s_n
//            A sample whose estimate already lies mostly inside [-1, 1] (s_n = 1) is clamped
//            exactly like static; one pushed out by strong guidance is squeezed back by s_n
//            instead of having its whole tail flattened onto +-1 (saturated pixels).
//            S = inf (the default here) is Imagen's rule; diffusers' sample_max_value
//            defaults to 1, which makes the policy static.
//
// Why (Imagen sec. 2.3): classifier-free guidance with a large weight w extrapolates
// eps_u + w (eps_c - eps_u), and the resulting x_0^ leaves the range [-1, 1] the network was
// trained on (a train-test mismatch): x_t drifts off the training distribution from step to
// step. Static clipping keeps x_0^ in range but piles mass onto +-1, so images come out
// over-saturated; dividing by s keeps the relative structure of the saturated region.
//
// The quantile follows torch.quantile's "linear" interpolation (what diffusers'
// _threshold_sample calls): with the D magnitudes sorted, v_(0) <= ... <= v_(D-1),
//   r = p (D - 1),  k = floor(r),  w = r - k,  Q_p = lerp(v_(k), v_(min(k+1, D-1)), w),
// lerp as torch.lerp evaluates it (from the nearer end). Computed on the host in f64 with a
// selection (std::nth_element, O(D) per sample), not a full sort. Cost: one device-to-host
// copy of x_0^ per sampler step (N D values; on CUDA a synchronisation), then the division
// and clamp on x_0^'s own device in its own dtype. torch works in the input dtype (f32), so
// s can differ from diffusers' in the last f32 bit.
//
// Implementation of the division: clip(x, -s, s) / s equals clamp(x / s, -1, 1) exactly for
// s > 0 in IEEE arithmetic (division is correctly rounded and monotone, and s / s = 1), so
// the policy is one broadcast div by s [N, 1, ..., 1] and one clamp. When every s_n is 1
// the division is skipped: dynamic then IS the static clamp, bit for bit.
//
// Non-finite values: a sample whose x_0^ holds a NaN gets s_n = NaN (as torch.quantile
// returns) and so an all-NaN x_0^: a diverged sample is not hidden by the threshold.
#pragma once

#include <limits>
#include <vector>

#include "engine/tensor.h"

namespace ddpm::diffusion {

struct X0Threshold {
  enum class Kind { none, static_clip, dynamic };
  Kind kind = Kind::none;
  double percentile = 0.995;  // dynamic: p in (0, 1] (Imagen and diffusers use 0.995)
  double max_scale = std::numeric_limits<double>::infinity();  // dynamic: S >= 1, the cap on s

  static X0Threshold none() { return {}; }
  static X0Threshold static_clip() { return {Kind::static_clip, 0.995, std::numeric_limits<double>::infinity()}; }
  static X0Threshold dynamic(double p, double max_scale = std::numeric_limits<double>::infinity()) {
    return {Kind::dynamic, p, max_scale};
  }
};

const char* x0_threshold_kind_name(X0Threshold::Kind kind);  // "none", "static", "dynamic"

// ValueError unless p lies in (0, 1] and S >= 1 (S may be inf; NaN is refused). `who` names
// the caller in the message (a flag or a function).
void check_x0_threshold(const X0Threshold& policy, const char* who = "dynamic thresholding");

// The p-th quantile of `values` with torch.quantile's linear interpolation (see the top of
// the file). Reorders `values`; NaN if one of them is NaN. ValueError when empty or p is
// outside [0, 1].
double quantile_linear(std::vector<double>& values, double p);

// s_n = min(max(Quantile_p(|x0[n]|), 1), S) for every sample n of x0 [N, ...] (f32 or f64, any
// device: one copy to the host). N values.
std::vector<double> dynamic_threshold_scales(const Tensor& x0, double p, double max_scale);

// x0 [N, ...] under `policy`: itself, clamped to [-1, 1], or dynamically thresholded. Same
// shape, dtype and device. Checks the policy (ValueError).
Tensor apply_x0_threshold(const Tensor& x0, const X0Threshold& policy);

}  // namespace ddpm::diffusion
