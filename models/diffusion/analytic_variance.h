// models/diffusion/analytic_variance.h: Analytic-DPM, the likelihood-optimal reverse variance
// of a model that was trained to predict only the noise (Bao, Li, Zhu & Zhang, "Analytic-DPM:
// an Analytic Estimate of the Optimal Reverse Variance in Diffusion Probabilistic Models",
// ICLR 2022). No retraining: one scalar per timestep, Gamma_t, is estimated once by Monte Carlo.
//
// Setting. A trajectory tau_1 < ... < tau_K of original timesteps (all T, or a respaced subset,
// respace.h) and its respaced index i = k - 1. Write abar_k = alpha_bar(tau_k), bbar_k = 1 -
// abar_k, abar_0 = 1, and for one step s = tau_{k-1} -> t = tau_k: alpha_{t|s} = abar_k /
// abar_{k-1}. The reverse step keeps the forward posterior family of DDIM (its eq. 7) with a
// chosen lambda_k^2: DDPM's lambda^2 = beta~_k = bbar_{k-1} / bbar_k (1 - alpha_{t|s}), DDIM's
// lambda^2 = eta^2 beta~_k. Its mean, at the network's x_0^ = (x_t - sqrt(bbar_k) eps_theta) /
// sqrt(abar_k), is
//   mu~(x_t, x_0^) = sqrt(abar_{k-1}) x_0^ + sqrt(bbar_{k-1} - lambda_k^2) (x_t - sqrt(abar_k) x_0^) / sqrt(bbar_k)
// (for lambda^2 = beta~ this is DDPM's posterior mean, schedule.h coef1 x_0 + coef2 x_t).
//
// Theorem 1 (and its trajectory form, the paper's sec. 4): among Gaussians N(mu~, sigma^2 I)
// the KL to the true reverse step is smallest for
//   sigma*_k^2 = lambda_k^2 + (sqrt(bbar_k / alpha_{t|s}) - sqrt(bbar_{k-1} - lambda_k^2))^2 (1 - Gamma_k),
//   Gamma_k = E_{q(x_t)} ||eps_theta(x_t, t)||^2 / d                   (d = data dimension).
// Sketch: mu~ is affine in x_0, so the true reverse step's variance averaged over x_t is
// lambda^2 + c^2 E Var[x_0 | x_t], with c = sqrt(abar_{k-1}) - sqrt(bbar_{k-1} - lambda^2)
// sqrt(abar_k / bbar_k) the coefficient of x_0; and Tweedie gives E[x_0 | x_t] through E[eps |
// x_t], so E tr Var[x_0 | x_t] / d = bbar / abar (1 - E||E[eps|x_t]||^2 / d). With eps_theta in
// place of E[eps | x_t] that is the formula above (c^2 bbar_k / abar_k is the squared bracket).
//
// Theorem 2: for data in [a, b]^d, Var[x_0 | x_t] lies between 0 and ((b - a)/2)^2, so
//   lambda_k^2 <= sigma*_k^2 <= lambda_k^2 + c^2 ((b - a)/2)^2;
// the estimate is clipped to these bounds (our data: [-1, 1], so ((b - a)/2)^2 = 1). The
// official code (github baofff/Analytic-DPM) clips the same quantity, bbar/abar (1 - Gamma),
// to [0, 1].
//
// Gamma is estimated once per timestep (estimate_gamma): x_0 from the training set, eps ~
// N(0, I), x_t = sqrt(abar) x_0 + sqrt(bbar) eps, and the mean of ||eps_theta(x_t, t)||^2 / d
// over M images; one draw per image and timestep, as the official code does. x_0- and
// v-networks are read through their eps (gaussian_diffusion.h eps_from_prediction): the
// conversion is affine at fixed x_t, so the optimal eps predictor is the same function.
// A network with a learned variance already has one and is refused, as is a schedule with
// alpha_bar = 0 (zero terminal SNR), where bbar / alpha_{t|s} is infinite.
//
// The first step (k = 1, the decoder p(x_0 | x_1)) follows the official code, not Theorem 1:
//   sampling: no noise at all (x_0 = mu~), as in every sampler here;
//   likelihood: the discretised Gaussian decoder with DDPM's clipped fixed-small variance
//     beta~ of the second timestep (schedule.h posterior_log_variance_clipped[0]), what
//     fixed_small uses too, so the decoder term L_0 is the same for both.
// And for sampling, the official code also clips the variance of the step that lands on the
// first trajectory timestep (k = 2, x_{tau_1} from x_{tau_2}) so that the noise it adds stays
// below a few 8-bit bins: E|sigma_2 eps| = sigma_2 sqrt(2 / pi) <= clip_bins 2/255, i.e.
//   sigma_2^2 <= (clip_bins (2/255) sqrt(pi / 2))^2,
// with clip_bins 2 for the linear schedule and 1 for the cosine one (its run_cifar10.py).
// The likelihood does not clip it (the bound must use the variance it claims).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/schedule.h"

namespace ddpm::diffusion {

// Gamma_t at some original timesteps, with where it came from. The file (write/read below) is
// JSON:
//   {"format": "ddpm-analytic-gamma", "version": 1, "model": "...", "mean_type": "v",
//    "diffusion_steps": T, "noise_schedule": "linear", "alpha_bar_first": .., "alpha_bar_last": ..,
//    "data": "fashion-mnist/train", "num_images": M, "seed": S, "timesteps": [...], "gamma": [...]}
// alpha_bar at timesteps 0 and T-1 (17 digits) tell schedules of the same name apart (a
// zero-terminal-SNR rescale, another T).
struct AnalyticGamma {
  std::string model;           // the checkpoint it was estimated for (for people; not checked)
  std::string mean_type = "eps";
  std::int64_t diffusion_steps = 0;
  std::string noise_schedule;  // "linear" | "cosine": picks the sampler's clip_bins
  double alpha_bar_first = 0, alpha_bar_last = 0;
  std::string data;            // the split the images came from
  std::int64_t num_images = 0; // M
  std::uint64_t seed = 0;      // of the eps draws
  Timesteps timesteps;         // ascending original timesteps in [0, T)
  std::vector<double> gamma;   // Gamma at each of them

  // Gamma at original timestep t; ValueError naming `file` when it was not estimated there.
  double at(std::int64_t t, const std::string& file) const;
};

// ValueError, naming `file`, unless gamma belongs to this schedule: same T and alpha_bar at
// the first and last timestep (relative 1e-9).
void check_gamma_fits(const AnalyticGamma& gamma, const DiffusionSchedule& base, const std::string& file);

void write_analytic_gamma(const AnalyticGamma& gamma, const std::string& path);  // atomic
// ValueError naming the file for a file that is not one (format, lengths, order, range).
AnalyticGamma read_analytic_gamma(const std::string& path);

// One step of the trajectory, at respaced index i.
struct AnalyticStep {
  double lambda2 = 0;  // the posterior family's variance (beta~, eta^2 beta~, 0 at i = 0)
  double optimal = 0;  // sigma*^2 of Theorem 1, unclipped
  double lower = 0;    // Theorem 2's bounds: lambda^2 ...
  double upper = 0;    // ... and lambda^2 + c^2 (data in [-1, 1])
  double variance = 0; // optimal clipped to [lower, upper]
};

// The steps of `process` (sampling_process of sampler.h: the base schedule with the identity
// map, or a respaced one) for lambda^2 = eta^2 beta~ (eta = 1: DDPM), with gamma[i] = Gamma at
// the process's i-th original timestep. ValueError for eta < 0, a length mismatch, a Gamma
// outside [0, inf) or alpha_bar = 0.
std::vector<AnalyticStep> analytic_steps(const DiffusionSchedule& process, const std::vector<double>& gamma,
                                         double eta);

// Gamma at every original timestep of `rs` (ValueError naming `file` if one is missing).
std::vector<double> gamma_for_process(const AnalyticGamma& gamma, const RespacedSchedule& rs,
                                      const std::string& file);

// The variances a sampler adds at each index of `rs`: analytic_steps' clipped variance, with
// index 1 also clipped to (clip_bins (2/255) sqrt(pi/2))^2 and index 0 unused (0; no noise
// there). clip_bins <= 0: the official default for gamma.noise_schedule (2 linear, 1 cosine).
std::vector<double> analytic_sampling_variances(const RespacedSchedule& rs, const AnalyticGamma& gamma, double eta,
                                                double clip_bins, const std::string& file);

// The variances of the bound at every timestep of the full process `s` (DDPM, eta = 1): the
// clipped sigma*^2 for t >= 1 and the decoder's clipped fixed-small variance beta~_1 at t = 0.
std::vector<double> analytic_likelihood_variances(const DiffusionSchedule& s, const AnalyticGamma& gamma,
                                                  const std::string& file);

// What estimate_gamma needs to know of the network.
struct GammaNetwork {
  DenoiseFn net;
  ModelMeanType mean_type = ModelMeanType::eps;
  bool learned_sigma = false;  // refused: such a model already has its variance
};

// The Monte Carlo estimate of Gamma_t at each of `timesteps` (original, ascending) from the M
// images x0 [M, ...] in [-1, 1] (labels: M class indices for a class-conditional network, else
// empty), batch_size images per network call; the eps draws come from gen, timestep by
// timestep in the order given, batch by batch. `log` (optional) gets a line per timestep.
// ValueError for a learned-variance network, a zero-terminal-SNR schedule, a bad timestep or
// label count. The returned AnalyticGamma has timesteps, gamma, num_images, diffusion_steps
// and the alpha_bar checks filled; the caller fills the rest.
AnalyticGamma estimate_gamma(const DiffusionSchedule& s, const GammaNetwork& network, const Tensor& x0,
                             const std::vector<std::int64_t>& labels, const Timesteps& timesteps,
                             std::int64_t batch_size, Generator& gen,
                             const std::function<void(const std::string&)>& log = {});

}  // namespace ddpm::diffusion
