// models/eval/nll_eval.h: `ddpm-eval nll`, the exact negative log-likelihood of a trained run
// on a dataset split through the probability-flow ODE (models/diffusion/ode_likelihood.h),
// in bits/dim of uniformly dequantized 8-bit data on the [0, 256) scale (Song et al. 2021,
// appendix D.2). Unlike `bpd` (bpd_eval.h: the DDPM variational BOUND, which needs a discrete
// process) it works for EDM-preconditioned runs too, and for DDPM runs of every mean type.
//
// Per image: dequantize (u = 2 (k + U) / 256 - 1), draw one Hutchinson probe, integrate the
// flow and the divergence from sigma_min to sigma_max (K Heun steps, or adaptive RK45), and
//   bpd = -(log N(x(sigma_max); 0, (sigma_max^2 + sigma_data^2) I) + int div f) / (D ln 2) + 7.
// Reported: the mean over images with its standard error (the spread over images, which also
// holds the dequantization and Hutchinson noise: each image draws its own U and eps), and the
// two parts, prior and divergence (they add up to the total).
//
// Which model and which levels:
//   DDPM run (eps, x_0 or v; learned sigma uses the mean half): the VP adapter of karras.h,
//     no clipping; sigma_min / sigma_max default to the schedule's smallest / largest
//     discrete sigma (karras.h resolve_sigma_range: the network knows no level outside);
//     the prior's data std is 0.5 (EDM's sigma_data for images in [-1, 1]).
//   EDM run: edm.h's preconditioned D, sigma in [0.002, 80] by default, prior data std = the
//     run's sigma_data.
//   Latent runs are refused (their density would be over autoencoder latents, not pixels).
// Class-conditional networks see each image's label; with null_label they see the null
// label num_classes instead, which is the unconditional model only for a run trained with
// label dropout (classifier-free guidance training; --class-dropout > 0).
// A text-conditioned run sees each image's caption (caption_condition.h: the split's own or
// the generated ones), and with null_label the empty caption.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "engine/device.h"
#include "models/data/dataset.h"
#include "models/diffusion/ode_likelihood.h"

namespace ddpm::eval {

struct NllEvalOptions {
  diffusion::OdeLikelihoodConfig ode;  // steps, sigma range, prior data std, estimator
  int num_classes = 0;                 // > 0: the network is class-conditional
  bool null_label = false;             // use the null label (num_classes) instead of the data's
  std::int64_t batch_size = 16;
  std::int64_t limit = 0;              // > 0: only the first `limit` images
  std::uint64_t seed = 0;              // dequantization noise and Hutchinson probes
  Device device = Device::cpu();
};

struct NllEvalReport {
  std::int64_t n = 0;                 // images evaluated
  std::int64_t dim = 0;               // elements per image (H W C)
  std::int64_t evaluations = 0;       // forward passes of D per image (each with one VJP)
  double bpd = 0, bpd_stderr = 0;     // mean bits/dim and its standard error over images
  double prior_bpd = 0;               // mean of -log prior / (D ln 2) + 7
  double divergence_bpd = 0;          // mean of -int div f / (D ln 2); prior + divergence = bpd
  double seconds = 0;
};

// The denoiser for one batch, given the labels the network should see (empty when it is
// unconditional).
using DenoiserForLabels = std::function<diffusion::SigmaDenoiser(const std::vector<std::int64_t>& labels)>;

// Evaluates ds (or its first `limit` images) batch by batch; `log`, when set, receives a line
// after each batch. ValueError for a class-conditional model on unlabelled data, an empty
// split or bad options.
NllEvalReport evaluate_nll(const DenoiserForLabels& denoiser, const Dataset& ds, const NllEvalOptions& o,
                           const std::function<void(const std::string&)>& log = {});

struct NllArgs {
  std::string checkpoint, data = "fashion-mnist", data_dir, split = "test";
  bool ema = true;
  std::int64_t limit = 0, batch_size = 16;
  std::string ode_solver = "heun";        // heun (fixed K steps) | rk45 (adaptive, rtol / atol)
  std::int64_t ode_steps = 32;
  double rtol = 1e-5, atol = 1e-5;
  std::string hutchinson = "rademacher";  // rademacher | gaussian | exact (tiny images only)
  double sigma_min = 0.0, sigma_max = 0.0;  // 0: the model's defaults (see above)
  bool null_label = false;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};
// Opens the run, prints the model, the data and the settings, then "bits/dim X +- SE (...)"
// and one JSON line with every number and setting.
NllEvalReport run_nll(const NllArgs& a, std::ostream& out);

}  // namespace ddpm::eval
