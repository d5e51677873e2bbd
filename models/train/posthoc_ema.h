// models/train/posthoc_ema.h: power-function EMAs and post-hoc EMA reconstruction (Karras et
// al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models" = EDM2,
// sec. 3.1-3.2 and appendix C).
//
// Why: the best EMA length is not known before training and differs per model and per
// sampler. Instead of guessing one, training tracks two power-function EMAs, stores periodic
// snapshots of them, and after training the EMA of ANY length is reconstructed as a linear
// combination of the snapshots.
//
// The power-function EMA with exponent gamma (EDM2 eq. 121 in continuous time) averages the
// weights theta over [0, t] with density proportional to tau^gamma:
//   theta_hat_gamma(t) = (gamma + 1) / t^(gamma + 1) * integral_0^t tau^gamma theta(tau) dtau
// Its width relative to t, the std of tau under that density divided by t (EDM2 eq. 123):
//   sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3)))
// Discrete update at the t-th optimizer step (t = 1, 2, ...; EDM2 sec. 3.1):
//   theta_hat <- beta_t theta_hat + (1 - beta_t) theta_t,   beta_t = (1 - 1/t)^(gamma + 1)
// beta_1 = 0, so the average forgets its initial value at once (no warm-up needed).
//
// Exact discrete profiles. The update is linear, so after step t the tracker holds
//   theta_hat = sum_{tau=1..t} w[tau] theta_tau,  w[tau] = (1 - beta_tau) prod_{s=tau+1..t} beta_s
// and the product telescopes: prod_{s=tau+1..t} ((s-1)/s)^(gamma+1) = (tau/t)^(gamma+1), so
//   w[tau] = (1 - (1 - 1/tau)^(gamma+1)) (tau/t)^(gamma+1) = (tau^(g+1) - (tau-1)^(g+1)) / t^(g+1),
// which sums to exactly 1. DEVIATION FROM EDM2: its reconstruction integrates the continuous
// profiles (eq. 108, 121); we use these exact discrete weights, so reconstructing a tracked
// profile at a snapshot step is exact to rounding, also for short runs where the continuous
// approximation is poor (a few hundred steps).
//
// Reconstruction (EDM2 sec. 3.2, appendix C.3). A snapshot i of the tracker with gamma_i taken
// after t_i updates has profile w_i; the target (gamma_r, t_r) has w_r. Find x minimizing
//   || sum_i x_i w_i - w_r ||^2      (normal equations A x = b, A_ij = <w_i, w_j>, b_i = <w_i, w_r>)
// and return theta_hat_r = sum_i x_i snapshot_i. See solve_posthoc_coefficients for the
// stable solve and profile_inner_product for the O(t) evaluation of the inner products.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"

namespace ddpm::train {

// sigma_rel of the exponent gamma (> -1), EDM2 eq. 123.
double sigma_rel_from_gamma(double gamma);
// The exponent whose profile has relative width sigma_rel: the largest real root of
//   gamma^3 + 7 gamma^2 + (16 - 1/sigma_rel^2) gamma + (12 - 1/sigma_rel^2) = 0
// (EDM2 eq. 126). ValueError unless 0 < sigma_rel <= max_sigma_rel().
double gamma_from_sigma_rel(double sigma_rel);
// The widest profile: sigma_rel is largest at gamma* = (sqrt(5) - 3) / 2 (about -0.382),
// where it is about 0.3003; every smaller sigma_rel has a unique gamma >= gamma*.
double max_sigma_rel();

// beta_t = (1 - 1/t)^(gamma + 1) for the t-th update (t >= 1).
double power_ema_beta(double gamma, std::int64_t t);

// The exact discrete profile after t updates: w[tau - 1] for tau = 1..t, computed by the
// defining recursion (backwards: w[tau] = (1 - beta_tau) * P, P <- P beta_tau). O(t) memory.
std::vector<double> power_ema_weights(double gamma, std::int64_t t);

// One EMA profile: exponent gamma, after t updates.
struct PowerProfile {
  double gamma = 0.0;
  std::int64_t t = 0;
};

// <w_a, w_b> = sum_tau w_a[tau] w_b[tau] in O(min(t_a, t_b)) time and O(1) memory (see the .cpp).
double profile_inner_product(const PowerProfile& a, const PowerProfile& b);

// The Gram matrix A_ij = <w_i, w_j> (row-major, n x n) of n profiles; one O(t_max) sweep per
// pair of distinct exponents, so hundreds of snapshots cost no more than a few sweeps.
std::vector<double> profile_gram(const std::vector<PowerProfile>& profiles);

struct PosthocSolution {
  std::vector<double> coefficients;  // x_i per basis profile (0 for those the solve dropped)
  double relative_residual = 0.0;    // || sum x_i w_i - w_r || / || w_r ||, evaluated exactly
  int rank = 0;                      // basis profiles kept by the pivoted solve
};

// Least-squares mixing coefficients of `basis` for `target` (every basis t <= target t is not
// required, but profiles after t_r only add error). ValueError for an empty basis or a
// profile with t < 1. Solve: Cholesky of A with diagonal pivoting (see the .cpp).
PosthocSolution solve_posthoc_coefficients(const std::vector<PowerProfile>& basis, const PowerProfile& target);

// A power-function EMA of the parameter slab (flat tensor on the slab's device, like
// engine/optim.h Ema). The update is the same fused axpby as Ema's, on CPU and CUDA.
class PowerEma {
 public:
  // Starts as a copy of the current values (forgotten at the first update: beta_1 = 0).
  PowerEma(const ParameterSlab& params, double sigma_rel);

  // The update after the t-th optimizer step (t = 1, 2, ...); returns beta_t.
  double update(const ParameterSlab& params, std::int64_t t);

  double sigma_rel() const { return sigma_rel_; }
  double gamma() const { return gamma_; }
  const Tensor& values() const { return values_; }  // flat [slab_numel], slab's offsets
  // Restores saved values (a slab-shaped flat tensor on any device).
  void load(const Tensor& values);

 private:
  double sigma_rel_, gamma_;
  Tensor values_;
};

// "0.05,0.10" -> {0.05, 0.1}: each value in (0, max_sigma_rel()], no repeats; ValueError
// naming `flag` otherwise. An empty text is an empty list.
std::vector<double> parse_sigma_rel_list(const std::string& flag, const std::string& text);

// The safetensors name prefix of profile i in snapshots and checkpoints: "phema<i>.".
std::string power_ema_prefix(std::size_t i);

}  // namespace ddpm::train
