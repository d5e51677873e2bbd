// models/eval/bpd_eval.h: the negative log-likelihood bound of a diffusion model on a
// dataset split, in bits/dim (improved DDPM sec. 3.2; diffusion-checklist "Bits/dim").
//
//   bpd(x_0) = L_prior + sum_{t=1}^{T-1} L_t + L_0          (all in bits/dim)
//   L_prior = KL(q(x_T | x_0) || N(0, I))
//   L_t     = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
//   L_0     = -log p(x_0 | x_1), the discretized Gaussian decoder
// computed by diffusion::calc_bpd_loop: T network evaluations per image, one per t, each
// at a fresh x_t ~ q(x_t | x_0). The model's p(x_{t-1} | x_t) comes from its output through
// the mean type (eps, x_0 or v -> eps) and the variance (learned range, or fixed).
//
// The network is any DenoiseFn, so tests run this on an in-memory tiny model; the app opens
// a trained run through models/eval/eval_run.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/device.h"
#include "models/data/dataset.h"
#include "models/diffusion/analytic_variance.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/likelihood.h"
#include "models/diffusion/schedule.h"
#include "models/diffusion/vdm.h"

namespace ddpm::eval {

struct BpdEvalOptions {
  diffusion::ModelMeanType mean_type = diffusion::ModelMeanType::eps;
  bool learned_sigma = false;
  // Used when the variance is not learned. analytic needs analytic_gamma (all T timesteps).
  diffusion::VarianceType variance = diffusion::VarianceType::fixed_small;
  std::shared_ptr<const diffusion::AnalyticGamma> analytic_gamma;
  std::string analytic_gamma_file;  // for the messages
  bool clip_x0 = true;      // clip the x_0 estimate to [-1, 1] (improved-diffusion's default)
  int num_classes = 0;      // > 0: the network is class-conditional and sees the data's labels
  std::int64_t batch_size = 16;
  std::int64_t limit = 0;   // > 0: only the first `limit` images
  std::uint64_t seed = 0;   // noise of the x_t draws
  Device device = Device::cpu();
};

struct BpdEvalReport {
  std::int64_t n = 0;              // images evaluated
  std::int64_t timesteps = 0;      // T, network evaluations per image
  double bpd = 0;                  // mean total bound
  double bpd_stderr = 0;           // standard error of that mean over images
  double prior_bpd = 0;            // mean L_prior
  double decoder_bpd = 0;          // mean L_0
  double terms_bpd = 0;            // mean sum_{t>=1} L_t
  double seconds = 0;
};

// The mean of per-image values and the standard error of that mean, sqrt(var / n) with the
// unbiased variance (0 for a single image); used by bpd and nll (nll_eval.h).
struct MeanWithError {
  double mean = 0, standard_error = 0;
};
MeanWithError mean_with_standard_error(const std::vector<double>& values);

// The model's Gaussian p(x_{t-1} | x_t) as calc_bpd_loop wants it; `labels` are the
// batch's class labels (empty for an unconditional network).
// model_step also returns the x_0 estimate the Gaussian's mean is built from (clipped to
// [-1, 1] when options.clip_x0), for the rate-distortion curve (rate_distortion.h);
// model_gaussian is model_step without it.
diffusion::ModelStepFn model_step(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& net,
                                  const BpdEvalOptions& options, const std::vector<std::int64_t>& labels);
diffusion::ModelGaussianFn model_gaussian(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& net,
                                          const BpdEvalOptions& options, const std::vector<std::int64_t>& labels);

// Evaluates the bound on ds (or its first `limit` images) batch by batch. `log`, when set,
// receives a line after each batch.
// How many images of ds an evaluation over it covers (--limit, or all), after checking the
// options against the data; `what` names the evaluation in the errors ("bpd", ...).
std::int64_t bpd_image_count(const Dataset& ds, const BpdEvalOptions& o, const char* what);

BpdEvalReport evaluate_bpd(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& net,
                           const Dataset& ds, const BpdEvalOptions& options,
                           const std::function<void(const std::string&)>& log = {});

// The variational bound of a VDM model (models/diffusion/vdm.h) on ds, in bits/dim:
//   bpd(x) = prior + diffusion + reconstruction
// with the prior exact, the reconstruction at one eps_0 and the diffusion loss (L_inf, or
// L_T for a discrete-time model: g.config().steps) at one t per image, the batch's times by
// the antithetic sampler. An unbiased estimate of the bound: ONE network evaluation per
// image (timesteps = 1). Per batch the draws are: t (one rand), eps (x's shape), eps_0.
// The report's terms_bpd is the diffusion term and decoder_bpd the reconstruction.
BpdEvalReport evaluate_vdm_bpd(const diffusion::GammaCurve& g, const diffusion::DenoiseFn& net, const Dataset& ds,
                               const BpdEvalOptions& options, const std::function<void(const std::string&)>& log = {});

}  // namespace ddpm::eval
