// models/eval/rate_distortion.h: DDPM's progressive lossy code and its rate-distortion curve
// (Ho et al. 2020, sec. 4.3 "Progressive coding", Algorithms 3 and 4, eq. 15, Figure 5).
//
// The variational bound (DDPM eq. 5, paper indices t = 1..T)
//   L = L_T + sum_{t=2}^{T} L_{t-1} + L_0
//   L_T     = KL(q(x_T | x_0) || p(x_T))                        the prior term
//   L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))      t = 2..T
//   L_0     = -log p(x_0 | x_1)                                  the discretized decoder
// is a code length: Algorithm 3 sends x_T with the prior p(x_T), then x_{T-1}, ..., x_1, each
// x_t with the model's p(x_t | x_{t+1}) as the receiver's prior, and last x_0 with the
// decoder; with a relative-entropy coder (minimal random coding) sending x ~ q costs about
// KL(q || p) bits. So receiving x_t costs L_t (L_T for the prior step, L_0 for the last),
// and once x_t has arrived the receiver has paid the RATE
//   R(t) = L_T + sum_{s=t}^{T-1} L_s                    (t = 1..T;  R(0) = L, the full bound)
// and can estimate x_0 from x_t alone (eq. 15, the model's x_0 prediction):
//   x0_hat(t) = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(abar_t)
// with DISTORTION D(t) = RMSE(x_0, x0_hat(t)) on the [0, 255] pixel scale; at t = 0 the
// image itself has arrived and D(0) = 0. The paper reports for its best-FID CIFAR-10 model
// (its numbers, not ours) R(1) = L_1 + ... + L_T = 1.78 bits/dim with L_0 = 1.97 bits/dim,
// i.e. D(1) = 0.95 RMSE: more than half of the lossless code length describes
// imperceptible distortions.
//
// Index conventions, ours against the paper's. Our timesteps are 0-based: network step k
// (k = 0..T-1) sees the paper's x_{k+1}, and diffusion::calc_bpd_loop's terms_bpd[k] is
//   k >= 1: KL(q(x_{k-1} | x_k, x_0) || p(x_{k-1} | x_k)) in our indices = the paper's L_k
//   k = 0:  the decoder, the paper's L_0
// and its prior_bpd (q(x_{T-1} | x_0) in our indices) is the paper's L_T. So a curve row
// for the paper's t (1 <= t <= T-1) takes term L_t = terms_bpd[t] and the distortion of the
// estimate from network step t - 1; row T takes the prior and step T - 1's estimate; row 0
// takes the decoder term and distortion 0. Rows come in the order the receiver gets them,
// t = T first; R is their running sum and R(0) equals calc_bpd_loop's total.
//
// Cost: T network calls per image whatever is reported. Each KL term needs the model's
// Gaussian at its own x_t, and the rate at t sums every term above t, so a curve reported
// at a stride of timesteps still evaluates all T terms; the distortion at a reported t is
// free (the same call gives x0_hat). One pass of calc_bpd_loop gives the bits/dim bound and
// the whole curve together (Ho et al. sec. 5: "computed over time in one evaluation of the
// variational bound").
//
// Averages: term and rate are means over images of bits/dim; the distortion is the root of
// the mean squared error over all images and dimensions, 127.5 sqrt(mean (x0_hat - x0)^2)
// with x in [-1, 1] (the original DDPM code averages per-t MSE over the test set). x0_hat
// is the x_0 the model's mean is built from: clipped to [-1, 1] unless --no-clip (eq. 15
// literally; clipping can only bring the estimate closer to a valid image).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/data/dataset.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/likelihood.h"
#include "models/diffusion/schedule.h"
#include "models/eval/bpd_eval.h"

namespace ddpm::eval {

// Sums over the images of one or more batches, one entry per curve row: index r = T - t
// for the paper's t = T..0 (r = 0 is x_T received, r = T is x_0 received).
struct RateDistortionSums {
  std::int64_t n = 0;                 // images
  std::vector<double> term_bpd;       // [T + 1] sum of the term paid to receive x_t
  std::vector<double> squared_error;  // [T + 1] sum of mean_flat((x0_hat - x_0)^2), x in [-1, 1]
  std::vector<double> total_bpd;      // [n] the bound of each image (for its standard error)
  // Adds another batch's sums (same T).
  void add(const RateDistortionSums& other);
};

// One batch x0 [N, H, W, C] in [-1, 1]: runs calc_bpd_loop once with `model` (which must
// return an x_0 estimate) and draws from gen exactly as calc_bpd_loop(model's Gaussian)
// would. ValueError when the model returns no x_0 estimate.
RateDistortionSums rate_distortion_batch(const diffusion::DiffusionSchedule& s, const diffusion::ModelStepFn& model,
                                         const Tensor& x0, Generator& gen);

struct RateDistortionPoint {
  std::int64_t t = 0;          // the paper's t: x_t has been received (T: only x_T; 0: x_0 itself)
  double term_bpd = 0;         // mean cost of receiving x_t: L_T, L_t or L_0 (bits/dim)
  double rate_bpd = 0;         // mean R(t), bits/dim received so far
  double distortion_rmse = 0;  // D(t), RMSE of x0_hat(t) on [0, 255]
};

struct RateDistortionCurve {
  std::int64_t n = 0, timesteps = 0;       // images, T (network calls per image)
  std::vector<RateDistortionPoint> points;  // every t, T first, 0 last
  double bpd = 0, bpd_stderr = 0;           // the full bound, R(0), and its standard error
  double seconds = 0;
};

// Means of the sums: the curve.
RateDistortionCurve finish_rate_distortion(const RateDistortionSums& sums);

// The rows a stride reports: t = T, then every t divisible by `stride` (so t = 0 last).
// stride 1 keeps every row. ValueError unless stride >= 1.
std::vector<RateDistortionPoint> strided_points(const RateDistortionCurve& c, std::int64_t stride);

// The rate at which the distortion first falls below `rmse` as x_T, x_{T-1}, ... arrive
// (all rows, not a stride's subset): the lossless total when only x_0 itself gets there.
double rate_at_distortion(const RateDistortionCurve& c, double rmse);

// The curve over ds (or its first options.limit images), batch by batch; the model comes
// from net through model_step (bpd_eval.h). `log`, when set, gets a line per batch.
RateDistortionCurve evaluate_rate_distortion(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& net,
                                             const Dataset& ds, const BpdEvalOptions& options,
                                             const std::function<void(const std::string&)>& log = {});

// rate_distortion.csv: a header "t,term_bpd,rate_bpd,distortion_rmse" and one line per point.
std::string rate_distortion_csv(const std::vector<RateDistortionPoint>& points);

// Figure 5's three panels side by side as one RGB image [height, 3 * panel_width, 3]:
// distortion and rate against the reverse-process steps received (T - t), and distortion
// against rate.
std::vector<std::uint8_t> draw_rate_distortion(const std::vector<RateDistortionPoint>& points, std::int64_t T,
                                               int height, int panel_width);

}  // namespace ddpm::eval
