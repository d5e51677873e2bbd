// models/diffusion/consistency.h: the tensor math of consistency distillation (Song, Dhariwal,
// Chen & Sutskever 2023, "Consistency Models", Algorithm 2) in the discrete form Latent
// Consistency Models use on a DDPM teacher's own timesteps (Luo et al. 2023, sec. 4.2-4.3), for
// any network given as a DenoiseFn, on any device, for a batch [N, ...]. The training loop
// and the folders are models/run/consistency_run.h; the DDIM step is progressive_distill.h's.
//
// The grid. N + 1 levels, indexed n = 0..N:
//   L_0 = clean (alpha = 1, sigma = 0),   L_n = G_N[n - 1] = n k - 1  (n >= 1, k = T / N),
// G_N being ddim_sampling_grid(T, N), the "ddimN" trailing grid of ddpm-sample (so L_N =
// T - 1, the level sampling starts from). One ODE step of the teacher is its eta = 0 DDIM
// step L_{n+1} -> L_n (progressive_distill.h eq. 1), the last one landing on the clean level
// (DDIM's x_0^). CM's t_min = eps > 0 becomes the clean level itself: the boundary condition
// f(z, L_0) = z is then exact in the data space, not at a slightly noisy level.
//
// The parameterisation (CM sec. 3, Appendix C; LCM eq. 9 and its code's
// scalings_for_boundary_conditions):
//   f_theta(z, L) = c_skip(L) z + c_out(L) x^_theta(z, L)                                   (1)
//   tau(L) = s (L + 1)  (tau(clean) = 0),   c_skip = sigma_d^2 / (tau^2 + sigma_d^2),
//   c_out = tau / sqrt(tau^2 + sigma_d^2)
// with x^_theta the network's x_0 estimate (eps, x0 or v, via x0_estimate), sigma_d = 0.5
// (CM's sigma_data, Appendix C) and s = 10 * 1000 / T: LCM's timestep_scaling = 10 at
// T = 1000, scaled so that tau depends on t / T alone. tau is measured from the clean level,
// so c_skip(L_0) = 1 and c_out(L_0) = 0 exactly (the boundary condition, by construction;
// at clean the network is not needed and not called). Already at L_1 = k - 1, tau = s k =
// 10^4 / N (200 for LCM's N = 50, c_skip = 6e-6): away from the boundary f is almost the
// network's x_0 estimate, so a student copied from the teacher starts as its one-step x^.
//
// The target (CM Algorithm 2; LCM Algorithm 1 with w = 0; guided below): for x_0 from the
// data, n ~ U{0..N-1}, eps ~ N(0, I),
//   z_{n+1} = q_sample(x_0, L_{n+1}, eps),                    z^_n = DDIM_teacher(z_{n+1}, L_{n+1} -> L_n)
//   target = f_{theta^-}(z^_n, L_n)   (stop gradient; = z^_n at n = 0)                    (2)
// theta^- is the "target network", an EMA of the student with a fixed rate mu (CM's
// consistency distillation uses mu = 0.95 on CIFAR-10 and ImageNet 64, Table 3; LCM's code
// keeps a separate target EMA at 0.95 too), distinct from the slower EMA that is published.
// The distance (3):
//   l2:           d = mean over elements of (f - target)^2 (CM's and LCM's squared L2)
//   pseudo_huber: d = sqrt(||f - target||^2 + c^2) - c, c = 0.00054 sqrt(D), the norm over the
//                 D elements of one sample (Song & Dhariwal 2023, "Improved techniques for
//                 training consistency models", sec. 3.3: c = 0.00054 sqrt(d) at CIFAR-10's d)
// averaged over the batch with weight 1 per sample (LCM's lambda = 1).
//
// Guided distillation (LCM, Luo et al. 2023, Algorithm 1 and eq. 9-10): the teacher's step
// of (2) uses the classifier-free-guided prediction at a per-sample weight w (ddpm-sample's
// --guidance-scale s = 1 + w),
//   eps^w = (1 + w) eps(z, t, c) - w eps(z, t, null),
// and the student and theta^- take w as an input (their DenoiseFn closes over it). In x-space
// this is progressive_distill.h eq. (4) (teacher_guided_x0): x^ is affine in the network
// output with weights summing to one, and x^ is read unclamped here, so the DDIM step from
// x^w is the DDIM step with eps^w exactly. With no weights (TeacherGuidance{}) the teacher is
// read as above, one call per step; with weights, one doubled call [z; z] with [c; null].
//
// Multistep sampling (CM Algorithm 1) on K of the N levels tau_1 > ... > tau_K:
//   z ~ N(0, I) at tau_1 = L_N = T - 1;  x = f(z, tau_1);
//   for j = 2..K:  z = q_sample(x, tau_j, fresh eps);  x = f(z, tau_j)                      (4)
// K network calls. The levels are LCM's rule (diffusers' LCMScheduler.set_timesteps): from
// the top with the stride floor(N / K): tau_j = L_{N - (j - 1) floor(N / K)}, 1 <= K <= N.
// Random numbers: z first, then one tensor of the sample's shape per further level, in order.
// x_T is pure noise (alpha_bar_{T-1} ~ 0 for the schedules here), as in the other samplers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/progressive_distill.h"

namespace ddpm::diffusion {

// CM's sigma_data (Appendix C) and LCM's timestep_scaling at T = 1000.
inline constexpr double kConsistencySigmaData = 0.5;
inline constexpr double kLcmTimestepScaling = 10.0;

struct ConsistencyGrid {
  std::int64_t T = 0;
  Timesteps levels;  // N + 1 entries: levels[0] = kCleanLevel, levels[n] = G_N[n - 1], ascending
  double sigma_data = kConsistencySigmaData;
  double timestep_scale = 0;  // s of (1)
  std::int64_t num_levels() const { return static_cast<std::int64_t>(levels.size()) - 1; }  // N
};

// The grid of N noisy levels on a model of T steps, s = 10 * 1000 / T. ValueError (naming
// --consistency-levels) unless 1 <= N <= T and N divides T.
ConsistencyGrid consistency_grid(std::int64_t T, std::int64_t N);

// c_skip and c_out of (1) at a level (an original timestep or kCleanLevel).
struct BoundaryScalings {
  double c_skip = 1, c_out = 0;
};
BoundaryScalings boundary_scalings(const ConsistencyGrid& g, std::int64_t level);

// Equation (1) per sample at levels level[n] (timesteps or kCleanLevel). Recorded on the tape
// when `net` is. A batch of clean levels only returns z without calling the network; in a
// mixed batch the clean rows call it at timestep 0 and take c_out = 0 exactly.
Tensor consistency_function(const DiffusionSchedule& s, const DenoiseFn& net, const DenoiserReading& r,
                            const ConsistencyGrid& g, const Tensor& z, const Timesteps& level,
                            const std::vector<std::int64_t>& labels);

// One batch of examples: z_{n+1} = q_sample(x_0, L_{n+1}, eps) at level indices n + 1 in 1..N.
struct ConsistencyExamples {
  Tensor z;                        // [N, ...] at the upper levels
  Timesteps upper, lower;          // L_{n+1} and L_n per sample
};
ConsistencyExamples consistency_examples(const DiffusionSchedule& s, const ConsistencyGrid& g, const Tensor& x0,
                                         const std::vector<std::int64_t>& upper_index, const Tensor& eps);

// The guidance of the teacher's DDIM steps: per-sample weights w (empty: the plain teacher)
// and the null label of its unconditional branch.
struct TeacherGuidance {
  std::vector<double> w;
  std::int64_t null_label = 0;
  bool active() const { return !w.empty(); }
};

// The teacher's x_0 estimate at z (timesteps t): x0_estimate, or with guidance the guided
// x^w of teacher_guided_x0 (one doubled call). No gradients.
Tensor teacher_step_x0(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiserReading& r,
                       const Tensor& z, const Timesteps& t, const std::vector<std::int64_t>& labels,
                       const TeacherGuidance& guidance);

// Equation (2): the teacher's DDIM step upper -> lower (guided when `guidance` is active),
// then the target network there. Run without gradients.
Tensor consistency_target(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiseFn& target_net,
                          const DenoiserReading& r, const ConsistencyGrid& g, const ConsistencyExamples& e,
                          const std::vector<std::int64_t>& labels, const TeacherGuidance& guidance = {});

enum class ConsistencyDistance { l2, pseudo_huber };
ConsistencyDistance parse_consistency_distance(const std::string& name);  // "l2" | "pseudo-huber"
const char* consistency_distance_name(ConsistencyDistance d);
// iCT's c = 0.00054 sqrt(D) for samples of D elements.
double pseudo_huber_c(std::int64_t elements_per_sample);

// Equation (3): the scalar batch mean of d(f, target), f on the tape, both [N, ...].
Tensor consistency_loss(const Tensor& f, const Tensor& target, ConsistencyDistance d);

// The K levels of (4), descending (tau_1 = T - 1). ValueError (naming --sampling-steps)
// unless 1 <= K <= N.
Timesteps consistency_sampling_levels(const ConsistencyGrid& g, std::int64_t K);

// Equation (4): shape[0] samples in K network calls, on `device` in `dtype`. clip: clamp
// each f to [-1, 1] before it is re-noised and at the end (off for latents and by default).
Tensor consistency_sample(const DiffusionSchedule& s, const DenoiseFn& net, const DenoiserReading& r,
                          const ConsistencyGrid& g, const Shape& shape, const std::vector<std::int64_t>& labels,
                          std::int64_t K, bool clip, Generator& gen, Device device = Device::cpu(),
                          DType dtype = DType::f32);

// The teacher's N-step DDIM trajectory from z at L_N down to the clean level (N calls),
// unclamped: the ODE endpoint a one-step consistency model should reach (of the guided ODE
// when `guidance` is active: 2N rows per level in N calls). No gradients.
Tensor teacher_ode_endpoint(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiserReading& r,
                            const ConsistencyGrid& g, const Tensor& z, const std::vector<std::int64_t>& labels,
                            const TeacherGuidance& guidance = {});

// The held-out figure: mean over samples and elements of (f_model(z, L_N) - endpoint)^2.
double one_step_endpoint_gap(const DiffusionSchedule& s, const DenoiseFn& model, const DenoiserReading& r,
                             const ConsistencyGrid& g, const Tensor& z, const Tensor& endpoint,
                             const std::vector<std::int64_t>& labels);

}  // namespace ddpm::diffusion
