// models/diffusion/guidance.h: the one place a guided prediction is formed. Every sampler
// reaches it through network_output (sampler.h): DDPM, DDIM, PLMS, RePaint and the Langevin
// corrector through denoise()/score_estimate(), the Karras-level solvers (Heun, Euler,
// DPM++, UniPC) through karras.cpp's VP conversion, EDM through edm_denoise, DDIM inversion
// and the ODE likelihood directly.
//
// Two networks' predictions are mixed by extrapolation from a weak one to a strong one:
//   pred = pred_weak + w (pred_strong - pred_weak)                               (1)
// w = SamplerConfig::guidance_scale. Which pair it is:
//   classifier-free guidance (Ho & Salimans 2022): strong = the conditional branch
//     net(x, t, y), weak = the unconditional branch net(x, t, null), one doubled batch
//     [x; x] with labels [y; null];
//   autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of
//     itself", sec. 3: D_w = w D_1 + (1 - w) D_0, i.e. (1) with D_1 the main model and D_0 a
//     weaker one of the same task, e.g. fewer training steps or fewer parameters):
//     SamplerConfig::autoguide is set; strong = the main network, weak = the guide, each
//     called once on [x] with the SAME labels (none for unconditional models, which is why
//     autoguidance also works without classes: the guide's errors, not a missing condition,
//     give the direction). It replaces CFG's unconditional branch: one or the other, never
//     both. The learned variance, if any, is the main network's; the guidance rescale (phi)
//     pulls pred back to the main network's per-sample std, as CFG's to the conditional one.
// (1) acts on the network output (eps, x_0 or v, or EDM's F): all are affine in the
// denoised D at fixed x and noise level, so guiding any of them guides D, as in both papers.
// w = 1 is the strong prediction alone, computed with ONE call (bit for bit unguided);
// w = 0 is the weak one alone.
//
// Guidance interval (Kynkaanniemi et al. 2024, "Applying guidance in a limited interval
// improves sample and distribution quality in diffusion models", sec. 3): guidance
// helps at middle noise levels and hurts at both ends (at high noise it collapses the
// distribution's modes, at low noise it does nothing useful), so (1) is used only while
//   sigma in [guidance_sigma_lo, guidance_sigma_hi]
// and elsewhere pred = pred_strong from ONE network call (the weak branch is not evaluated).
// sigma is the EDM noise level: sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) on a DDPM
// schedule (infinite at a zero-terminal-SNR step), sigma itself on Karras levels and for EDM
// runs. The default [0, inf] is every step, the samplers' old behaviour bit for bit.
// The same interval limits classifier guidance (classifier_guidance.h) on the samplers that
// support it (DDPM and DDIM, with their Langevin corrector): its gradient term s g is added
// only at steps whose sigma_t lies inside, and in_guidance_interval below is the one test
// both kinds of guidance ask.
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

// sigma_t of a DDPM step: sqrt((1 - alpha_bar) / alpha_bar); +inf at alpha_bar = 0.
double sigma_of_alpha_bar(double alpha_bar);

// ValueError naming the problem for a bad guidance setting: scale < 0 or not finite, phi
// outside [0, 1] or phi != 0 with scale 1, an interval with lo < 0, lo >= hi or NaN ends.
void check_guidance_settings(const SamplerConfig& config);

// Whether this config sets an interval narrower than every step.
bool has_guidance_interval(const SamplerConfig& config);

// Whether noise level sigma lies in [guidance_sigma_lo, guidance_sigma_hi] (always true
// without an interval). sigma NaN (a caller that does not know its level) is a ValueError
// when an interval is set. The one interval test of both kinds of guidance.
bool in_guidance_interval(const SamplerConfig& config, double sigma);

// Whether (1) is formed at noise level sigma: scale != 1 and sigma in the interval.
bool guidance_applies(const SamplerConfig& config, double sigma);

// Whether classifier guidance adds its term at noise level sigma: guidance.active() and
// sigma in the interval. The classifier is not called at all where this is false.
bool classifier_guidance_applies(const SamplerConfig& config, const ClassifierGuidance& guidance, double sigma);

// (1): weak + w (strong - weak), then the rescale towards strong's per-sample std when
// phi > 0 (sampler.h rescale_guided_prediction). Shapes must agree.
Tensor guided_combination(const Tensor& strong, const Tensor& weak, double w, double phi);
// The same step taken from another prediction: from + w (strong - weak), then the rescale
// towards strong. Guidance on two conditions chains (1) once per condition, each step
// starting where the previous one ended (InstructPix2Pix, Brooks et al. 2023, eq. 3; the
// frame guidance of models/run/video_run.h):
//   u    = guided_combination(e(c, null), e(null, null), s_I, 0)
//   pred = guided_combination(e(c, y), e(c, null), s_T, phi, u)
// from = weak is (1) itself, bit for bit.
Tensor guided_combination(const Tensor& strong, const Tensor& weak, double w, double phi, const Tensor& from);

// "LO,HI" of --guidance-interval: two finite numbers with 0 <= LO < HI (HI may be "inf").
// ValueError naming `flag` otherwise.
std::pair<double, double> parse_guidance_interval(const std::string& text, const std::string& flag);

}  // namespace ddpm::diffusion
