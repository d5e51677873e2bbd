// models/diffusion/likelihood.h: KL divergences, the discretized Gaussian decoder, bits/dim,
// and the variational-bound and hybrid losses of improved DDPM.
//
// All functions are built from engine ops (they record on the tape; f32 on any device,
// f64 on the CPU). Images are NHWC in [-1, 1]; "per sample" results have shape [N].
//
// Units: KL and log-likelihoods are in nats per element; bits/dim divides a per-sample
// total by ln 2 and by the number of dimensions D = H*W*C, i.e. mean over the non-batch
// axes, then / ln 2.
#pragma once

#include <functional>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/schedule.h"

namespace ddpm::diffusion {

// KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, broadcasting like add:
//   0.5 (-1 + logvar2 - logvar1 + e^(logvar1 - logvar2) + (mean1 - mean2)^2 e^-logvar2)
Tensor normal_kl(const Tensor& mean1, const Tensor& logvar1, const Tensor& mean2, const Tensor& logvar2);

// Phi(x) ~= 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (the tanh approximation of the
// standard normal CDF, max error about 3e-4), evaluated as the equal sigmoid(2 a) to keep
// precision in the tails.
Tensor approx_standard_normal_cdf(const Tensor& x);

// log p(x) under a Gaussian N(means, e^(2 log_scales)) discretized to 256 bins of width
// 2/255 centred on the data values -1 + 2k/255 (improved DDPM sec. 2, DDPM sec. 3.3):
//   p = Phi((x + 1/255 - mean)/sigma) - Phi((x - 1/255 - mean)/sigma),
// with the outermost bins extending to -inf (x < -0.999: p = cdf_plus) and +inf
// (x > 0.999: p = 1 - cdf_min). Probabilities are clamped at 1e-12 before the log.
// Upper-tail probabilities use 1 - Phi(z) = Phi(-z), so a mean far below or far above x
// both keep a useful gradient in f32 (the literal formula loses the upper tail).
// x is data (no gradient); differentiable in means and log_scales. All of x's shape.
Tensor discretized_gaussian_log_likelihood(const Tensor& x, const Tensor& means, const Tensor& log_scales);

// Mean over every axis but the first: [N, ...] -> [N].
Tensor mean_flat(const Tensor& x);
// A per-element quantity in nats -> bits/dim per sample: mean_flat(x) / ln 2.   [N]
Tensor bits_per_dim(const Tensor& nats);
// A per-sample total in nats over `dims` dimensions -> bits/dim.
double nats_to_bits_per_dim(double nats, std::int64_t dims);

// KL(q(x_T | x_0) || N(0, I)) in bits/dim per sample: the prior term of the bound,
// which the model cannot change.                                                  [N]
Tensor prior_bpd(const DiffusionSchedule& s, const Tensor& x0);

// One term of the variational bound in bits/dim per sample, given the model's Gaussian
// p(x_{t-1} | x_t) (mean and log variance, broadcastable to x0):                    [N]
//   t > 0:  L_t = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
//   t = 0:  L_0 = -log p(x_0 | x_1), the discretized decoder (scale e^(log_variance/2))
Tensor vb_terms_bpd(const DiffusionSchedule& s, const Tensor& model_mean, const Tensor& model_log_variance,
                    const Tensor& x0, const Tensor& xt, const Timesteps& t);

// The hybrid loss of improved DDPM (sec. 3.1) per sample:                              [N]
//   L = mean_flat((eps - noise)^2) + lambda * T * L_t(bits/dim)
// where T * L_t is the one-sample estimate of L_vlb = sum_t L_t for uniform t (T is the
// schedule's length). The vlb term sees eps detached (stop-gradient): it trains only the
// variance, and L_simple alone trains the mean. lambda = 0.001 in the paper. With
// importance-sampled t, multiply by the draw's weights before averaging over the batch.
Tensor hybrid_loss(const DiffusionSchedule& s, const Tensor& eps, const Tensor& var_values, const Tensor& x0,
                   const Tensor& xt, const Timesteps& t, const Tensor& noise, double lambda = 0.001);

// --- the full bound, for evaluation ---------------------------------------------------
// The model's p(x_{t-1} | x_t) at timesteps t of `s` (for a respaced schedule the callable
// maps t to the original timesteps before calling the network).
using ModelGaussianFn = std::function<Gaussian(const Tensor& xt, const Timesteps& t)>;

struct BpdResult {
  std::vector<double> total_bpd;               // [N]: prior + sum_t terms
  std::vector<double> prior_bpd;               // [N]
  std::vector<std::vector<double>> terms_bpd;  // [T][N]: L_t, with the decoder at t = 0
};

// Negative log-likelihood bound in bits/dim (improved DDPM sec. 3.2): for t = T-1 .. 0 draw
// x_t ~ q(x_t | x_0) with noise from gen, call the model once, add L_t; then add the prior
// term. T model evaluations per batch. Runs without recording a tape.
BpdResult calc_bpd_loop(const DiffusionSchedule& s, const ModelGaussianFn& model, const Tensor& x0, Generator& gen);

// The same loop for evaluations that also need what the model did at each step (the
// rate-distortion curve of models/eval/rate_distortion.h reads the x_0 estimate, like the
// original DDPM code's calc_bpd_loop returning its per-t MSE). The model returns its
// Gaussian together with the x_0 estimate that Gaussian was built from; after each step,
// on_step(t, model_step, term) sees the 0-based timestep t, that output, and L_t ([N] bits/dim,
// the decoder at t = 0). Same draws from gen and same results as the overload above: that
// one is this loop with pred_x0 left undefined and no observer.
struct ModelStep {
  Gaussian p;      // p(x_{t-1} | x_t)
  Tensor pred_x0;  // [N, ...] the model's x_0 estimate at (x_t, t); may be undefined
};
using ModelStepFn = std::function<ModelStep(const Tensor& xt, const Timesteps& t)>;
using BpdStepFn = std::function<void(std::int64_t t, const ModelStep& out, const std::vector<double>& term_bpd)>;
BpdResult calc_bpd_loop(const DiffusionSchedule& s, const ModelStepFn& model, const Tensor& x0, Generator& gen,
                        const BpdStepFn& on_step);

// --- importance sampling of t (improved DDPM sec. 3.3) ---------------------------------------
// L_vlb = sum_t L_t is estimated as L_t / p_t with t ~ p; p_t proportional to
// sqrt(E[L_t^2]) lowers the variance of the estimate. Uniform until every t has `history`
// recorded losses, then p_t = (1 - uniform_prob) sqrt(E[L_t^2]) / sum + uniform_prob / T.
// Draws come with the weights 1 / (T p_t) that make the weighted loss unbiased for the mean
// over t (the uniform case has weight 1).
class LossSecondMomentSampler {
 public:
  explicit LossSecondMomentSampler(std::int64_t T, int history = 10, double uniform_prob = 0.001);
  std::vector<double> probabilities() const;  // [T]
  bool warmed_up() const;
  // Records per-sample losses at their timesteps (the oldest falls out past `history`).
  void update(const Timesteps& t, const std::vector<double>& losses);
  struct Draw {
    Timesteps t;
    std::vector<double> weights;  // 1 / (T p_t)
  };
  Draw sample(std::int64_t batch, Generator& gen) const;

  // The recorded losses per timestep ([T][<= history], oldest first): what a checkpoint
  // must save for a resumed run to draw the same timesteps.
  const std::vector<std::vector<double>>& history() const { return losses_; }
  void set_history(std::vector<std::vector<double>> losses);

 private:
  std::int64_t T_;
  int history_;
  double uniform_prob_;
  std::vector<std::vector<double>> losses_;  // [T][<= history], oldest first
};

}  // namespace ddpm::diffusion
