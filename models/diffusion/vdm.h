// models/diffusion/vdm.h: Variational Diffusion Models (Kingma, Salimans, Poole, Ho 2021,
// "Variational Diffusion Models", NeurIPS; numbers checked against the authors' code,
// google-research/vdm model_vdm.py, whose differences from the paper are noted where they
// matter).
//
// The process. Variance preserving, continuous time t in [0, 1], written through the
// negative log signal-to-noise ratio gamma(t) = -log SNR(t) (the paper sec. 2):
//   alpha_t^2 = sigmoid(-gamma(t)),  sigma_t^2 = sigmoid(gamma(t)),  SNR(t) = exp(-gamma(t))
//   z_t = alpha_t x + sigma_t eps,   eps ~ N(0, I)
// gamma is increasing, so SNR falls from exp(-gamma_0) at t = 0 to exp(-gamma_1) at t = 1.
//
// Schedules (VdmScheduleKind):
//   fixed    gamma(t) = gamma_min + (gamma_max - gamma_min) t, the code's defaults
//            gamma_min = -13.3, gamma_max = 5.0 (SNR from 6e5 down to 7e-3).
//   learned  a monotone network (the paper's learned schedule; the code's NoiseSchedule_NNet):
//              u = 2 t - 1 in [-1, 1]
//              n(t) = |w1| t + (1/F) sum_k |w3_k| phi(|w2_k| u + b2_k),  phi(a) = 2 sigmoid(a) - 1
//            F = 1024 features. Every weight enters through abs, phi is increasing, so n is
//            increasing in t. The code uses gamma = n(t) + b1 directly (endpoints learned
//            with the rest); the PAPER normalises it so that the endpoints are separate:
//              gamma(t) = gamma_0 + (gamma_1 - gamma_0) (n(t) - n(0)) / (n(1) - n(0))
//            We follow the paper. The endpoints are gamma_0 = gamma_min and gamma_1 =
//            gamma_max FIXED, or, with learn_endpoints, two more parameters initialised there
//            and trained on the VLB itself (see "Learned endpoints" below). Init as the code:
//            w1 = gamma_max - gamma_min, w2, w3 ~ N(0, 1), b2 = 0 (nearly linear at init).
//
// The losses, per sample, in nats (the code sums over the D dimensions):
//   prior          KL(q(z_1|x) || N(0, I)) = 1/2 sum_d [alpha_1^2 x_d^2 + sigma_1^2 - log sigma_1^2 - 1]
//   reconstruction -log p(x | z_0): each dimension independently, a softmax over the 256
//                  8-bit values v_k of  -1/2 (z_0/alpha_0 - v_k)^2 / exp(gamma_0)
//                  (z_0/alpha_0 = x + exp(gamma_0/2) eps_0 has std exp(gamma_0/2) around x)
//   diffusion, continuous (paper eq. 17 in eps form):
//                  L_inf = 1/2 E_{t ~ U(0,1)} [gamma'(t) ||eps - eps^(z_t; t)||^2]
//   diffusion, T discrete steps (the paper's discrete-time loss in eps form, s = t - 1/T,
//                  t on the grid i/T):
//                  L_T = 1/2 T E_t [expm1(gamma(t) - gamma(s)) ||eps - eps^(z_t; t)||^2]
//                  (SNR(s)/SNR(t) - 1 = expm1(gamma(t) - gamma(s))); L_T decreases towards L_inf
//                  as T grows (the paper: doubling T never loosens the bound)
//   VLB = prior + diffusion + reconstruction; bits/dim = nats / (D ln 2), D = H W C (the
//   code's rescale_to_bpd). Data scaling: OUR pixels are v_k = k / 127.5 - 1 (k = 0..255, bin
//   width 2/255); the code's encoder uses 2 (k + 1/2) / 256 - 1. The decoder uses ours.
//
// Invariance (the paper's continuous-time analysis): with v = SNR as the variable,
// L_inf = 1/2 int_{SNR_min}^{SNR_max} E ||x - x^(z_v)||^2 dv, so L_inf depends on the schedule
// ONLY through its endpoints (test_vdm.cpp checks it in closed form). The interior is then
// chosen to minimise the VARIANCE of the one-sample estimate (the paper's learned noise
// schedule): d/d eta E[L^2] = E[2 L dL/d eta]. The schedule's
// gradient is therefore the backprop gradient scaled per sample by 2 L_i (L_i the sample's
// diffusion loss), while the network gets the plain VLB gradient. The authors' public code
// trains the schedule on the plain VLB instead; we follow the paper. Here this is the custom
// backward of the op that carries gamma into the loss (vdm_diffusion_loss).
//
// Learned endpoints (the paper sec. 5.2 and its appendix on the learned schedule: the
// endpoints are trained on the VLB, the interior on the variance). The bound depends on
// gamma_0 and gamma_1 through
//   the prior          d/dgamma_1 of 1/2 sum_d [alpha_1^2 x^2 + sigma_1^2 - log sigma_1^2 - 1]
//                      = 1/2 sum_d (1 - s) (s (1 - x^2) - 1),  s = sigmoid(gamma_1)
//   the reconstruction through y = x + exp(gamma_0 / 2) eps_0 (a reparameterised draw) and
//                      the decoder's precision exp(-gamma_0): with logits l_k and softmax p_k,
//                      d/dgamma_0 [-log p(x|z_0)] = -(dl_true - sum_k p_k dl_k),
//                      dl_k = -(y - v_k) exp(-gamma_0) dy + 1/2 (y - v_k)^2 exp(-gamma_0),
//                      dy = 1/2 exp(gamma_0 / 2) eps_0
//   the diffusion term through the normalisation: gamma(t) = gamma_0 + (gamma_1 - gamma_0) r(t)
//                      with r fixed by the net, so dgamma/dgamma_0 = 1 - r, dgamma/dgamma_1 =
//                      r, dgamma'/dgamma_0 = -r', dgamma'/dgamma_1 = r', r' = gamma' /
//                      (gamma_1 - gamma_0).
// The endpoints get this PLAIN gradient of the bound (never the 2 L_i scale) while the net's
// weights keep the variance-minimising one; both come out of the same backward
// (vdm_diffusion_loss), and vdm_prior_reconstruction_nats carries the first two terms.
// The endpoints are "gamma_0" and "gamma_1" [1] each, registered after the net's weights (so
// every other draw is as without them). The authors' code learns them inside its net (gamma =
// n(t) + b1 on the plain VLB); ours keeps the paper's split.
//
// Time sampler (paper appendix; the code's antithetic_time_sampling): ONE u ~ U(0, 1) per
// batch, t_i = (u + i/N) mod 1 (a stratified, low-discrepancy set); for T > 0, t_i =
// ceil(t_i T) / T, clamped to >= 1/T (the code leaves the probability-zero t = 0 alone).
//
// The network's time input: the code feeds gamma(t) normalised to [0, 1] by the configured
// range and multiplies it by 1000 inside its sinusoidal embedding; the project's UNet embeds
// its double timestep directly (DDPM passes 0..999), so vdm_network_time returns
// 1000 (gamma - gamma_min) / (gamma_max - gamma_min). With learned endpoints gamma(t) is the
// CURRENT schedule's (its endpoints included) while the affine map keeps the configured
// gamma_min and gamma_max, as the code does: the time input is a fixed function of log SNR,
// so a value means the same noise level all through training; it leaves [0, 1000] only as
// far as the endpoints move (the sinusoidal embedding takes any real). The code's "eps^ +=
// z" base measure is an architecture choice of its score net and is not added here. Its
// Fourier features of z_t are the UNet's (models/unet/fourier_features.h).
//
// Sampling: ancestral p(z_s | z_t) on a grid of N steps (paper appendix, the code's
// sample_step) IS the DDPM posterior step of the schedule alpha_bar_i = sigmoid(-gamma((i+1)/N)),
// i = 0..N-1. vdm_grid_schedule builds that DiffusionSchedule and vdm_grid_denoiser maps a
// grid index i back to continuous t = (i + 1)/N, so every sampler of sampler.h (ddpm, ddim,
// ...) samples a VDM network. The last step returns x_0^ at t = 1/N.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/schedule.h"
#include "models/nn/module.h"

namespace ddpm::diffusion {

enum class VdmScheduleKind { fixed, learned };
VdmScheduleKind parse_vdm_schedule_kind(const std::string& name);  // "fixed" or "learned"
const char* vdm_schedule_kind_name(VdmScheduleKind k);

struct VdmConfig {
  VdmScheduleKind schedule = VdmScheduleKind::fixed;
  double gamma_min = -13.3;      // gamma(0) = -log SNR at t = 0
  double gamma_max = 5.0;        // gamma(1)
  std::int64_t steps = 0;        // T: 0 = continuous time (L_inf), else the discrete L_T
  std::int64_t features = 1024;  // F of the learned schedule
  // Learned schedule only: gamma_0 and gamma_1 are parameters (initialised at gamma_min and
  // gamma_max) trained on the plain VLB; false keeps them at the flags.
  bool learn_endpoints = false;
};
// ValueError naming the field: gamma_min < gamma_max finite, steps >= 0, features >= 1,
// learn_endpoints only with the learned schedule.
void check_vdm_config(const VdmConfig& c);

// gamma(t) and gamma'(t) at one t.
struct GammaPoint {
  double gamma, dgamma;
};

// The schedule as plain doubles (a host snapshot of the learned weights): evaluation and the
// exact gradients of gamma(t) and gamma'(t) with respect to the raw weights.
class GammaCurve {
 public:
  // The linear schedule of c.
  explicit GammaCurve(const VdmConfig& c);
  // The learned schedule with raw weights w1 (1), w2, b2, w3 (F each), between the config's
  // endpoints or, second form, between gamma_0 < gamma_1 (learned endpoints; ValueError
  // naming both when they are not finite and ordered).
  GammaCurve(const VdmConfig& c, double w1, std::vector<double> w2, std::vector<double> b2, std::vector<double> w3);
  GammaCurve(const VdmConfig& c, double w1, std::vector<double> w2, std::vector<double> b2, std::vector<double> w3,
             double gamma_0, double gamma_1);

  bool learned() const { return learned_; }
  GammaPoint at(double t) const;
  double gamma(double t) const { return at(t).gamma; }
  // The endpoints gamma(0) and gamma(1) (the config's unless learned).
  double gamma_0() const { return g0_; }
  double gamma_1() const { return g1_; }
  // Adds sum_j (cg_j dgamma(t_j)/dw + cd_j dgamma'(t_j)/dw) to grad, laid out
  // [w1, w2 (F), b2 (F), w3 (F)] (1 + 3F values). A no-op for the fixed schedule.
  void accumulate_grad(const std::vector<double>& t, const std::vector<double>& cg, const std::vector<double>& cd,
                       std::vector<double>& grad) const;
  // The same sum's derivative in the endpoints at fixed net weights (the normalisation, top
  // of this file), added to d0 (gamma_0) and d1 (gamma_1).
  void accumulate_endpoint_grad(const std::vector<double>& t, const std::vector<double>& cg,
                                const std::vector<double>& cd, double& d0, double& d1) const;
  std::int64_t num_weights() const { return learned_ ? 1 + 3 * static_cast<std::int64_t>(w2_.size()) : 0; }
  const VdmConfig& config() const { return c_; }

 private:
  struct Net {
    double n, dn;  // n(t), n'(t)
  };
  Net net(double t) const;
  // Adds a dn(t)/dw + b dn'(t)/dw to grad.
  void net_grad(double t, double a, double b, std::vector<double>& grad) const;

  VdmConfig c_;
  bool learned_ = false;
  double g0_ = 0.0, g1_ = 0.0;  // gamma(0), gamma(1)
  double w1_ = 0.0;
  std::vector<double> w2_, b2_, w3_;
};

// The schedule as a module: no parameters when fixed; when learned, "l1.weight" [1],
// "l2.weight" [F], "l2.bias" [F], "l3.weight" [F] and, with learn_endpoints, "gamma_0" [1]
// and "gamma_1" [1] on `device` (f32, or f64 on the CPU), so they pack into the model's
// slab, train with AdamW and live in its checkpoints.
class VdmSchedule : public nn::Module {
 public:
  VdmSchedule(const VdmConfig& c, Generator& gen, Device device = Device::cpu(), DType dtype = DType::f32);
  const VdmConfig& config() const { return c_; }
  bool learned() const { return c_.schedule == VdmScheduleKind::learned; }
  // A host snapshot of the current weights.
  GammaCurve curve() const;
  // The net's weights as tensors, in GammaCurve's layout order (empty when fixed).
  std::vector<Tensor> weights() const;
  // The learned endpoints {gamma_0, gamma_1} (empty unless learn_endpoints).
  std::vector<Tensor> endpoints() const;

 private:
  VdmConfig c_;
  Tensor w1_, w2_, b2_, w3_, g0_, g1_;
};

// The UNet's timestep input for a gamma value (see the top of this file).
double vdm_network_time(double gamma, const VdmConfig& c);

// N times by the antithetic sampler: one rand from gen, t_i = (u + i/N) mod 1; for steps T >
// 0 rounded up to the grid i/T (at least 1/T).
std::vector<double> sample_vdm_times(std::int64_t n, std::int64_t steps, Generator& gen);

// The prior and reconstruction terms of one batch (nats per sample, [N] each as doubles):
// x [N, ..., C] in [-1, 1] (8-bit pixels scaled by k / 127.5 - 1; rounded to the nearest),
// eps0 the reconstruction's noise (x's shape).
std::vector<double> vdm_prior_nats(const GammaCurve& g, const Tensor& x);
std::vector<double> vdm_reconstruction_nats(const GammaCurve& g, const Tensor& x, const Tensor& eps0);
// Their derivatives per sample: the prior's in gamma_1, the reconstruction's in gamma_0
// (formulas at the top of this file).
std::vector<double> vdm_prior_dgamma1(const GammaCurve& g, const Tensor& x);
std::vector<double> vdm_reconstruction_dgamma0(const GammaCurve& g, const Tensor& x, const Tensor& eps0);
// prior + reconstruction [N] (x's dtype and device) on the tape: with learned endpoints a
// node sends the plain gradient into gamma_1 (prior) and gamma_0 (reconstruction); otherwise
// a constant. The values are vdm_prior_nats + vdm_reconstruction_nats of schedule.curve().
Tensor vdm_prior_reconstruction_nats(const VdmSchedule& schedule, const Tensor& x, const Tensor& eps0);

// The diffusion loss of a batch, on the tape.
struct VdmDiffusionLoss {
  Tensor nats;  // [N]: w_i ||eps - eps^||^2, differentiable in the network and the schedule
  std::vector<double> gamma;  // gamma(t_i)
};
// net is called with z_t = alpha x + sigma noise at vdm_network_time(gamma(t_i)). When the
// schedule is learned and any of its weights requires grad, alpha, sigma and the weight
// carry one custom node each into the schedule's weights whose backward scales the gradient
// of sample i by 2 L_i * variance_scale (the variance-minimising gradient; L_i = nats[i]);
// variance_scale = 0 gives the plain VLB gradient instead (for tests). Learned endpoints get
// the plain VLB gradient whatever variance_scale is. The network's time
// input is a double: no gradient reaches the schedule through it (the authors' code
// differentiates through the score net's gamma input too; ours treats it as a stop-gradient).
// ValueError when
// t.size() != N or the network's output is not x's shape.
VdmDiffusionLoss vdm_diffusion_loss(const DenoiseFn& net, const VdmSchedule& schedule, const Tensor& x,
                                    const std::vector<double>& t, const Tensor& noise,
                                    const std::vector<std::int64_t>& labels, double variance_scale = 1.0);
// The same on a host curve (no schedule gradient): evaluation.
Tensor vdm_diffusion_nats(const DenoiseFn& net, const GammaCurve& g, const Tensor& x, const std::vector<double>& t,
                          const Tensor& noise, const std::vector<std::int64_t>& labels);

// nats per sample -> bits/dim: nats / (D ln 2), D = the elements of one sample.
double vdm_bits_per_dim(double nats, std::int64_t dims);

// The grid bridge (see the top of this file): alphas_cumprod[i] = sigmoid(-gamma((i + 1)/n)).
DiffusionSchedule vdm_grid_schedule(const GammaCurve& g, std::int64_t n);
// A DenoiseFn taking grid indices (fractional allowed: t = (i + 1)/n) that calls net at
// vdm_network_time(gamma(t)).
DenoiseFn vdm_grid_denoiser(const DenoiseFn& net, std::shared_ptr<const GammaCurve> g, std::int64_t n);

}  // namespace ddpm::diffusion
