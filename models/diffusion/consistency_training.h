// models/diffusion/consistency_training.h: consistency TRAINING from scratch, without a teacher,
// in its improved form (Song & Dhariwal 2023, "Improved Techniques for Training Consistency
// Models", iCT), on the consistency models of Song, Dhariwal, Chen & Sutskever 2023 (CM,
// Algorithm 3 for training, Algorithm 1 for multistep sampling). The trainer's ict objective
// (models/train/trainer.h) calls these; consistency.h is the DISTILLATION from a DDPM teacher.
//
// The process is EDM's variance-exploding one: x_sigma = x_0 + sigma z, z ~ N(0, I), sigma in
// [sigma_min, sigma_max] = [0.002, 80] (CM sec. 5, iCT sec. 2), rho = 7, sigma_data = 0.5.
//
// The consistency function (CM eq. 3 and appendix C, iCT sec. 2):
//   f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))          (1)
//   c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2)
//   c_out  = sigma_data (sigma - sigma_min) / sqrt(sigma_data^2 + sigma^2)
//   c_in   = 1 / sqrt(sigma^2 + sigma_data^2),   c_noise = ln(sigma) / 4   (EDM's, edm.h)
// so c_skip(sigma_min) = 1 and c_out(sigma_min) = 0: f(x, sigma_min) = x exactly, the boundary
// condition, by construction. F is the network exactly as under --objective edm (its timestep
// input is c_noise; edm.h explains why a negative real t is fine for the sinusoidal embedding).
//
// The discretisation curriculum (iCT eq. 5; exponential): at training step k of K,
//   N(k) = min(s0 2^floor(k / K'), s1) + 1,   K' = floor(K / (log2 floor(s1 / s0) + 1))     (2)
// with s0 = 10, s1 = 1280 (iCT sec. 3.4). K' is at least 1 (a run of fewer steps than
// doublings doubles every step). N(k) levels on the Karras grid, i = 1..N (CM eq. 5-6):
//   sigma_i = (sigma_min^(1/rho) + (i - 1)/(N - 1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho    (3)
// with the endpoints set to sigma_min and sigma_max exactly (not rounded through the powers).
//
// Level sampling (iCT sec. 3.5): the lower index i in 1..N-1 of a pair (sigma_i, sigma_{i+1}) is
// drawn with the probability that a log-normal ln sigma ~ N(P_mean, P_std^2) falls between them,
//   p(i) ~ erf((ln sigma_{i+1} - P_mean) / (sqrt 2 P_std)) - erf((ln sigma_i - P_mean) / (sqrt 2 P_std))      (4)
// P_mean = -1.1, P_std = 2.0 (iCT's, NOT EDM's -1.2 / 1.2). One value of rand in f64 per sample,
// mapped through the inverse of the discrete CDF.
//
// The loss (iCT sec. 3.2-3.3; CM Algorithm 3 with theta^- = theta):
//   lambda(sigma_i) d(f_theta(x_0 + sigma_{i+1} z, sigma_{i+1}), stopgrad f_theta(x_0 + sigma_i z, sigma_i))   (5)
// the SAME z for both, lambda(sigma_i) = 1 / (sigma_{i+1} - sigma_i), d the pseudo-Huber
// distance sqrt(||a - b||^2 + c^2) - c with c = 0.00054 sqrt(D) over the D elements of one sample
// (consistency.h pseudo_huber_c), or l2: the mean over elements of (a - b)^2 (consistency.h's l2),
// for comparison. iCT drops CM's EMA target network: the target is the SAME network run without
// gradient. Dropout: CM's code (karras_diffusion.py consistency_losses) restores the RNG state
// between the two calls, so the student and the target see the SAME dropout mask; the trainer
// does the same with its dropout generator (trainer.h).
//
// Multistep sampling (CM Algorithm 1) at levels tau_1 = sigma_max > tau_2 > ... > tau_K:
//   x = f(sigma_max z, sigma_max);  for j = 2..K:  x = f(x + sqrt(tau_j^2 - sigma_min^2) z_j, tau_j)   (6)
// K network calls; random numbers: z, then one z_j of the sample's shape per further level.
// The default levels (ict_sampling_sigmas): K = 1 {80}; K = 2 {80, 0.821}, iCT's two-step
// choice on CIFAR-10 (sec. 5); K >= 3 the first K levels of the (K + 1)-level Karras grid (3)
// from sigma_max down (sigma_min itself is left out: f is the identity there).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/consistency.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

struct IctConfig {
  double sigma_min = 0.002, sigma_max = 80.0, rho = 7.0;
  double sigma_data = 0.5;
  double p_mean = -1.1, p_std = 2.0;  // iCT sec. 3.5
  std::int64_t s0 = 10, s1 = 1280;    // iCT sec. 3.4
  ConsistencyDistance distance = ConsistencyDistance::pseudo_huber;
};
// ValueError naming the field unless 0 < sigma_min < sigma_max, rho > 0, sigma_data > 0,
// p_std > 0, all finite, and 2 <= s0 <= s1 (--ict-discretization).
void check_ict_config(const IctConfig& c);

// N(k) of (2) at step k of a run of K steps (K >= 1, 0 <= k).
std::int64_t ict_num_levels(const IctConfig& c, std::int64_t k, std::int64_t K);
// The N levels of (3), ascending, sigma_1 = sigma_min and sigma_N = sigma_max exactly (N >= 2).
std::vector<double> ict_sigmas(const IctConfig& c, std::int64_t N);
// The N - 1 probabilities of (4) for the pair (sigma_i, sigma_{i+1}), i = 1..N-1 (index i-1), summing to 1.
std::vector<double> ict_level_probabilities(const IctConfig& c, const std::vector<double>& sigmas);

// A batch's draw of (4): n values of rand in f64 from gen.
struct IctLevelDraw {
  std::vector<std::int64_t> lower;         // i - 1 in 0..N-2 (0-based index of sigma_i)
  std::vector<double> sigma_lo, sigma_hi;  // sigma_i and sigma_{i+1}
  // The quartile 0..3 of the level distribution (4) that the pair lies in: the cumulative
  // probability at the middle of its bin, times 4 (lowest noise first): the trainer's metric.
  std::vector<int> quartile;
};
IctLevelDraw sample_ict_levels(std::int64_t n, const IctConfig& c, std::int64_t N, Generator& gen);

// The coefficients of (1) at one level (double).
struct IctScalings {
  double c_skip, c_out, c_in, c_noise;
};
IctScalings ict_scalings(double sigma, const IctConfig& c);

// (1) per sample at levels sigma (x.dim(0) values, each in [sigma_min, sigma_max]): recorded on
// the tape when the network is. ValueError when the network's output is not x's shape.
Tensor ict_consistency_function(const DenoiseFn& net, const IctConfig& c, const Tensor& x,
                                const std::vector<double>& sigma, const std::vector<std::int64_t>& labels);

// x_0 + sigma z per sample (sigma: x0.dim(0) values), z of x0's shape.
Tensor ict_noised(const Tensor& x0, const Tensor& z, const std::vector<double>& sigma);

// (5) per sample [N] from the student's f (on the tape) and the target (a constant), the pair's
// levels: lambda(sigma_lo) d(f, target).
Tensor ict_pair_loss(const Tensor& f, const Tensor& target, const std::vector<double>& sigma_lo,
                     const std::vector<double>& sigma_hi, ConsistencyDistance d);

// The default K levels of (6), descending (see the top of this file); ValueError (naming
// --sampling-steps) unless K >= 1.
std::vector<double> ict_sampling_sigmas(const IctConfig& c, std::int64_t K);
// Checks explicit levels (--consistency-sigmas): ValueError unless non-empty, strictly
// descending, each in (sigma_min, sigma_max].
void check_ict_sampling_sigmas(const IctConfig& c, const std::vector<double>& taus);

// (6): shape[0] samples at levels taus (checked as above), on `device` in `dtype`. Labels as
// the network takes them (empty: unconditional). clip: clamp each f to [-1, 1] (pixels).
Tensor ict_sample(const DenoiseFn& net, const IctConfig& c, const Shape& shape, const std::vector<std::int64_t>& labels,
                  const std::vector<double>& taus, bool clip, Generator& gen, Device device = Device::cpu(),
                  DType dtype = DType::f32);

}  // namespace ddpm::diffusion
