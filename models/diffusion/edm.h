// models/diffusion/edm.h: training and sampling a network under EDM preconditioning (Karras,
// Aittala, Aila, Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative
// Models", table 1 right column and sec. 5).
//
// The denoiser. EDM trains D(x; sigma), the best estimate of clean data y from
// x = y + sigma n, n ~ N(0, I), at a CONTINUOUS noise level sigma (no schedule, no T). The
// network F is wrapped so that its input and its target both have unit variance at every
// sigma (EDM eq. 7 and appendix B.6):
//   D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))
//   c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)
//   c_out   = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
//   c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
//   c_noise = ln(sigma) / 4
// sigma_data = 0.5 is the std of the data (images in [-1, 1]). Why these: Var(x) =
// sigma_data^2 + sigma^2 (y and n independent), so c_in x has unit variance. The network's
// effective target is F_target = (y - c_skip x) / c_out; c_skip minimises its variance and
// c_out makes it exactly 1 (EDM eq. 131-138): at small sigma D is mostly the skip x (F only
// corrects), at large sigma D is mostly c_out F (F predicts y). The tests check both
// conditions in closed form.
//
// What the network's timestep input sees. The UNet is called with t = c_noise = ln(sigma)/4,
// a real number that is NEGATIVE below sigma = 1: for the training distribution (ln sigma ~
// N(-1.2, 1.2^2)) almost all of it lies in [-1.2, 0.6], and for the sampling range
// [0.002, 80] in [-1.55, 1.10]. The sinusoidal embedding sin/cos(t f_k), f_k = 10000^(-k/D),
// is defined for any real t (sin and cos are odd and even, so negative t is as good as
// positive); on this narrow interval its high-index columns are nearly constant and only
// the first few frequencies vary, which is what EDM's own networks feed their embedding too
// (EDMPrecond passes c_noise unscaled). The time MLP after it learns from those columns.
//
// Training (EDM sec. 5, table 1): ln sigma ~ N(P_mean, P_std^2), P_mean = -1.2, P_std = 1.2;
// n ~ N(0, I); x = y + sigma n; the loss
//   lambda(sigma) ||D(x; sigma) - y||^2,  lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2
// Since D - y = c_out (F - F_target) and lambda c_out^2 = 1, this is exactly
//   ||F(c_in x; c_noise) - (y - c_skip x) / c_out||^2
// which is what edm_training_loss computes (the network's own view, no 1/sigma blow-up at
// small sigma). Norm: we take the MEAN over the elements of a sample (as the project's DDPM
// L_simple, mean_flat); EDM's code sums them. The two differ by the constant H W C, i.e. only
// in the learning-rate scale.
//
// Sampling: edm_sample runs karras.h's Heun (or Euler) solver with churn on this D, over
// [sigma_min, sigma_max] = [0.002, 80] by default (EDM table 1). sigma is continuous, so
// there is no training grid to clamp to: any positive level is allowed and the churn's
// raised sigma^ is not capped. Classifier-free guidance works on D: the network sees the
// doubled batch [c_in x; c_in x] with labels [y; null] at c_noise, and
// D = D_u + s (D_c - D_u) = c_skip x + c_out (F_u + s (F_c - F_u)) (D is affine in F at a
// fixed x and sigma, so guiding F guides D). There is no variance to learn (learn_sigma is
// refused) and no mean type (F is always the preconditioned output).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

struct EdmConfig {
  double sigma_data = 0.5;  // std of the data
  double p_mean = -1.2;     // mean of ln sigma in training
  double p_std = 1.2;       // std of ln sigma in training
};
// ValueError naming the field unless sigma_data > 0, p_std > 0 and all finite.
void check_edm_config(const EdmConfig& c);

// The default sampling range of EDM (table 1): [0.002, 80].
constexpr double kEdmSigmaMin = 0.002;
constexpr double kEdmSigmaMax = 80.0;

// The preconditioning coefficients at one noise level (double; see the top of this file).
struct EdmPreconditioning {
  double c_skip, c_out, c_in, c_noise;
};
EdmPreconditioning edm_preconditioning(double sigma, double sigma_data);
// lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2.
double edm_loss_weight(double sigma, double sigma_data);

// n noise levels sigma_i = exp(P_mean + P_std z_i), z = randn({n}) in f64 from gen (one
// draw of n values: the generator advances by n normals). Also returns the z_i (the
// standardised ln sigma), from which the trainer's quartile metrics are taken.
struct EdmSigmaDraw {
  std::vector<double> sigma;
  std::vector<double> z;  // (ln sigma_i - P_mean) / P_std, ~ N(0, 1)
};
EdmSigmaDraw sample_edm_sigmas(std::int64_t n, const EdmConfig& c, Generator& gen);
// The quartile 0..3 of the training distribution of ln sigma that a standardised z falls in:
// the quartiles of N(0, 1) are split at -0.6745, 0 and +0.6745 (Phi^-1(1/4), Phi^-1(3/4)).
int edm_sigma_quartile(double z);

// The per-sample EDM loss [N] of net at clean data y [N, ..., C] with per-sample levels sigma
// (N values) and noise n (y's shape): mean over elements of (F - F_target)^2 with
// F = net(c_in x, c_noise, labels), x = y + sigma n, F_target = (y - c_skip x) / c_out.
// Recorded on the tape (differentiable through the network). ValueError when the network's
// output is not y's shape (a learned-variance network has 2C channels: refused).
Tensor edm_training_loss(const DenoiseFn& net, const EdmConfig& c, const Tensor& y, const std::vector<double>& sigma,
                         const Tensor& noise, const std::vector<std::int64_t>& labels);

// D(x; sigma) of the preconditioned network for the whole batch at ONE level sigma,
// classifier-free guided when config.guidance_scale != 1 (see above; sampler.h
// network_output does the doubled batch), thresholded by x0_threshold.h (static clamp or
// Imagen's dynamic) when resolve_clip_x0(config). config.learned_sigma must be false
// (ValueError). Not recorded on the tape when called under NoGradGuard (as the samplers do).
Tensor edm_denoise(const DenoiseFn& net, const EdmConfig& c, const SamplerConfig& config, const Tensor& x,
                   double sigma, const std::vector<std::int64_t>& labels);

// (sigma_min, sigma_max) for an EDM network: config's values, 0 meaning EDM's defaults 0.002
// and 80; ValueError unless 0 < sigma_min < sigma_max, finite.
std::pair<double, double> resolve_edm_sigma_range(const SamplerConfig& config);

// Draws shape[0] samples from the EDM-preconditioned network with config.heun_steps levels,
// rho, and the churn settings (karras.h; the churned sigma^ is not capped), by Heun or
// Euler. Labels and classifier-free guidance as in sample(). Random numbers as karras.h:
// x_0 = sigma_max z first, then one eps per churned level. StepCallback as karras.h (x shown
// as x / sqrt(1 + sigma_{i+1}^2), comparable with DDPM's x_t) except timestep = -1: the
// network sees c_noise, not a timestep; StepInfo::sigma is the level.
Tensor edm_sample(const DenoiseFn& net, const EdmConfig& c, const Shape& shape,
                  const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen,
                  Device device = Device::cpu(), const StepCallback& callback = {},
                  KarrasSolver solver = KarrasSolver::heun);

}  // namespace ddpm::diffusion
