// models/diffusion/ode_likelihood.h: the exact log-likelihood of a diffusion model through its
// probability-flow ODE (Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole 2021, "Score-Based
// Generative Modeling through Stochastic Differential Equations", sec. 4.3 and appendix D.2),
// with the divergence estimated as in FFJORD (Grathwohl et al. 2019, sec. 3.1), for any
// denoiser D(x; sigma) of karras.h: a DDPM-trained eps / x_0 / v network through the VP
// adapter below, or an EDM-preconditioned one (edm.h edm_denoise).
//
// The flow. In the variance-exploding variable x (karras.h: x = x_0 + sigma n) the
// probability-flow ODE is
//   dx/dsigma = f(x, sigma) = (x - D(x; sigma)) / sigma                      (EDM eq. 4)
// and moves the marginal p_sigma along with it. The instantaneous change of variables
// (Chen et al. 2018, "Neural ODEs", theorem 1; Song et al. eq. 39) says
//   d log p_sigma(x(sigma)) / dsigma = -div_x f(x(sigma), sigma),
// so, integrating UP from the data end sigma_min to sigma_max,
//   log p_{sigma_min}(x(sigma_min)) = log p_{sigma_max}(x(sigma_max))
//                                     + int_{sigma_min}^{sigma_max} div_x f(x(sigma), sigma) dsigma
// with div_x f = (dim - div_x D) / sigma (div_x x = dim, the number of elements of one sample).
//
// The prior. p_{sigma_max} is the data convolved with N(0, sigma_max^2 I); we replace it by
// the Gaussian of the same mean-zero second moment, N(0, (sigma_max^2 + data_std^2) I).
// data_std = 0 is Song et al.'s N(0, sigma_max^2 I) (their "data spread is negligible"); we
// keep the data variance because it is the moment-matched (KL-closest) Gaussian to the true
// marginal, and because it makes the prior EXACT for data N(0, data_std^2 I), which is how the
// tests isolate the solver's error. At sigma_max = 80 and data_std = 0.5 the two priors differ
// by 0.5 * (0.25 / 6400) * (|x|^2 / sigma_max^2 - 1) nats per dimension, about 4e-5: either
// choice reproduces published numbers to the digits they print.
//
// What the number is. x(sigma_min) is the data point itself: the result is the density of the
// data under the model's p_{sigma_min}, which for a perfect denoiser is the data distribution
// blurred by N(0, sigma_min^2 I). sigma_min = 0.002 (EDM) is a quarter of a bin of 8-bit data
// in [-1, 1] (width 2/256); for a DDPM-trained network sigma_min is its smallest training level
// (0.01 for the linear schedule), below which it was never trained.
//
// The divergence. div_x D = tr(dD/dx). Exactly: sum_j e_j^T (dD/dx) e_j, one vector-Jacobian
// product per unit vector e_j (dim of them: the tests' tiny dimensions only). Hutchinson
// (1990; FFJORD eq. 7): tr(J) = E_eps[eps^T J eps] for any eps with E[eps eps^T] = I:
// Rademacher (+-1 with probability 1/2 each) or Gaussian N(0, I); for a symmetric J their
// variances are 2 sum_{i != j} J_ij^2 and 2 ||J||_F^2 (Rademacher drops the diagonal: exact
// for a diagonal J). eps^T J is one VJP: the gradient of sum(D * eps) with respect to x, i.e.
// D's backward pass seeded with eps, taken on the tape under EnableGradGuard with x a fresh
// leaf (the caller runs under NoGradGuard). FFJORD draws
// ONE eps per sample and keeps it along the whole trajectory: the integral is then an unbiased
// estimate of the exact one (the expectation passes through the integral), with no extra
// variance from redrawing at every evaluation.
//
// The solver. x and the log-density increment
//   delta(sigma) = int_{sigma_min}^{sigma} div_x f dsigma'
// are integrated jointly by Heun's method (second order, as karras.h) on the K + 1 Karras
// levels (EDM eq. 5, rho = 7) taken in ASCENDING order sigma_min = s_0 < ... < s_K = sigma_max:
//   h = s_{i+1} - s_i
//   (f_i, q_i)   = (f, sigma div f) at (x_i, s_i)
//   x'           = x_i + h f_i                                     (Euler predictor)
//   (f', q')     = (f, sigma div f) at (x', s_{i+1})
//   x_{i+1}      = x_i + h (f_i + f') / 2                          (trapezoidal corrector)
//   delta       += ln(s_{i+1} / s_i) (q_i + q') / 2,   q = sigma div f = dim - div D
// The divergence is integrated by the trapezoid rule in ln sigma (d sigma = sigma d ln sigma),
// not in sigma: still second order and at the same points, but q is smooth and bounded (it
// tends to dim as D stops depending on x at large sigma), while div f ~ dim / sigma is not.
// With rho = 7 the top levels are far apart (80 -> 40 is one step at K = 32), and the
// trapezoid in sigma overestimates int dim / sigma dsigma there by dim (r - 1/r) / 2 - dim ln r
// per step of ratio r (0.06 dim nats for r = 2); in ln sigma it is exact. For x the sigma
// variable is the right one (EDM sec. 3: x is nearly linear in sigma at large sigma).
// rho = 7 crowds the levels near sigma_min, where f changes fastest. Cost per sample: 2K
// evaluations of D, each with one VJP (a backward pass through the network, ~2 forwards);
// the exact mode does one forward and one VJP per unit vector instead.
//
// Accuracy. x grows by sigma_max / sigma_data along the flow, and the prior term sees its
// RELATIVE error: the prior's error is about dim times the relative error of x(sigma_max).
// For Gaussian data (the tests) Heun's relative error is about 2.5% at K = 32 and 0.6% at
// K = 64 (second order), i.e. a bias of that order in nats per dimension: fine for comparing
// checkpoints with one setting, too coarse for published numbers. The adaptive solver is for
// those: Dormand-Prince RK5(4) with error control (rtol = atol = 1e-5, as Song et al. with
// scipy's RK45), integrating (x, delta) in s = ln sigma (dx/ds = x - D, d delta/ds = dim -
// div D: the variable of Song et al.'s geometric VE schedule). It takes 6 evaluations per
// accepted step (the 7th is reused: FSAL) and as many steps as the tolerances need.
//
// Bits per dimension of 8-bit data (Song et al. appendix D.2, after Theis et al. 2016 and
// Ho et al. 2019 "Flow++"). A pixel value k in {0..255} is dequantized uniformly,
// y = k + U, U ~ U(0, 1), on the [0, 256) scale; E_U[-log_2 p(y)] / D upper-bounds the
// discrete model's bits/dim (Jensen), and it is what Song et al. and Flow++ report. Our
// networks see u = 2 y / 256 - 1 in [-1, 1) (dequantize_uniform below), so
//   p_y(y) = p_u(u) |du/dy|^D = p_u(u) (2/256)^D,   log p_y = log p_u - D log 128,
//   bpd = -log p_y / (D ln 2) = -log p_u / (D ln 2) + 7.
// Check: p_u uniform on [-1, 1)^D (density 2^-D) gives exactly 8 bits/dim, the entropy of
// uniform bytes. Training scales pixels as k / 127.5 - 1 (bin centres); dequantized u differs
// from that by less than one bin, as in Song et al.'s own evaluation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

enum class OdeSolver { heun, rk45 };
const char* ode_solver_name(OdeSolver s);  // "heun", "rk45"
bool parse_ode_solver(const std::string& name, OdeSolver& out);

enum class DivergenceEstimator { exact, rademacher, gaussian };
const char* divergence_estimator_name(DivergenceEstimator e);  // "exact", "rademacher", "gaussian"
// False for any other name.
bool parse_divergence_estimator(const std::string& name, DivergenceEstimator& out);

struct OdeLikelihoodConfig {
  OdeSolver solver = OdeSolver::heun;
  std::int64_t steps = 32;  // heun: K steps over K + 1 levels, 2K evaluations of D per sample
  double rtol = 1e-5, atol = 1e-5;          // rk45: Song et al.'s tolerances
  std::int64_t max_adaptive_steps = 10000;  // rk45: ValueError beyond this many steps
  double sigma_min = 0.002;  // EDM's range (edm.h kEdmSigmaMin, kEdmSigmaMax)
  double sigma_max = 80.0;
  double rho = 7.0;
  double data_std = 0.0;  // prior N(0, (sigma_max^2 + data_std^2) I), see the top of the file
  DivergenceEstimator divergence = DivergenceEstimator::rademacher;
};
// ValueError naming the field unless steps >= 1, 0 < sigma_min < sigma_max (finite), rho > 0,
// rtol, atol > 0, max_adaptive_steps >= 1 and data_std >= 0 (finite).
void check_ode_likelihood_config(const OdeLikelihoodConfig& c);

// The K + 1 levels s_0 = sigma_min < ... < s_K = sigma_max (karras_sigmas reversed, its final
// 0 dropped).
std::vector<double> ode_likelihood_sigmas(const OdeLikelihoodConfig& c);

// D(x; sigma) and its divergence, per sample.
struct DenoisedDivergence {
  Tensor denoised;               // [shape of x], detached
  std::vector<double> div;       // [N]: div_x D per sample (exact, or eps^T (dD/dx) eps)
  std::int64_t evaluations = 0;  // forward passes of D it took (1, or dim for exact)
};
// `probe` is eps (x's shape) for Hutchinson, ignored (may be undefined) for exact. The
// denoiser must build D from x with engine ops (it is called on a leaf that requires grad,
// under EnableGradGuard) and treat the samples of the batch independently. ValueError when
// D does not depend on x on the tape or has the wrong shape.
DenoisedDivergence denoise_with_divergence(const SigmaDenoiser& denoiser, const Tensor& x, double sigma,
                                           DivergenceEstimator estimator, const Tensor& probe);

// The Hutchinson probe for x's shape: Rademacher or N(0, I) in x's dtype and device, drawn
// from gen (Rademacher from one uniform draw of x's size). Undefined for exact.
Tensor hutchinson_probe(const Tensor& x, DivergenceEstimator estimator, Generator& gen);

struct OdeLikelihood {
  std::vector<double> log_likelihood;       // [N] log p_{sigma_min}(x) in nats = prior + divergence
  std::vector<double> prior_log_density;    // [N] log N(x(sigma_max); 0, (sigma_max^2 + data_std^2) I)
  std::vector<double> divergence_integral;  // [N] int div_x f dsigma
  Tensor x_at_sigma_max;                    // x(sigma_max), the latent the data point flows to
  std::int64_t evaluations = 0;             // forward passes of D per sample
  std::int64_t dim = 0;                     // elements per sample
};
// Integrates the flow from x (the data, [N, ...]) at sigma_min up to sigma_max as described
// above. The Hutchinson probe (one per sample, kept along the trajectory) is drawn from gen
// first; exact draws nothing. Runs under NoGradGuard except for the VJPs.
OdeLikelihood ode_log_likelihood(const SigmaDenoiser& denoiser, const Tensor& x, const OdeLikelihoodConfig& c,
                                 Generator& gen);

// u = 2 (k + U) / 256 - 1, U ~ U(0, 1) per element (one uniform draw of the batch's size from
// gen), for bytes [count * per_image] laid out as `shape` ([N, H, W, C]); f32 on `device`.
Tensor dequantize_uniform(const std::vector<std::uint8_t>& bytes, const Shape& shape, Generator& gen,
                          Device device = Device::cpu());

// bits/dim on the [0, 256) scale of a log-density (nats) of dequantized data on [-1, 1)
// scaled by dequantize_uniform: -log p_u / (D ln 2) + 7 (see the top of the file).
double dequantized_bits_per_dim(double log_density_u, std::int64_t dim);

// D(x; sigma) of a DDPM-trained network (karras.h's VP adapter: the network sees
// x / sqrt(1 + sigma^2) at the fractional timestep t(sigma); D = x - sigma eps, or through x_0
// or v). No clipping (the flow must stay smooth); the mean part of a learned-sigma network;
// labels and classifier-free guidance through network_output. Built from engine ops, so it
// is differentiable in x. train_sigmas as from vp_sigmas.
SigmaDenoiser vp_sigma_denoiser(const std::vector<double>& train_sigmas, const DenoiseFn& net,
                                const SamplerConfig& config, const std::vector<std::int64_t>& labels);

}  // namespace ddpm::diffusion
