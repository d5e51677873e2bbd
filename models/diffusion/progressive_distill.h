// models/diffusion/progressive_distill.h: the tensor math of progressive distillation
// (Salimans & Ho 2022, "Progressive distillation for fast sampling of diffusion models",
// Algorithm 2) for any network given as a DenoiseFn, on any device, for a batch [N, ...].
// The loop around it (data, optimiser, rounds, folders) is models/run/distill_run.h; the toy
// kit's 2-D version, whose header derives the same equations, is models/toy/distill.h.
//
// The grid rule. A student must be sampled by the UNCHANGED `ddpm-sample --sampler ddim
// --sampling-steps K`, which steps through ddim_sampling_grid(T, K): every timestep when
// K = T, else respace.h's "ddimK", the trailing spacing with the exact stride s = T / K:
//   G_K[i] = s - 1 + i s,   i = 0..K-1 (ascending; G_K[K-1] = T - 1),
// then one last step from G_K[0] to the clean level (alpha_bar = 1: DDIM returns x_0^).
// (This is not the toy's spacing: ddpm-toy uses space_timesteps(T, "K"), which keeps both
// ends, so its grids nest for K = 2M + 1 -> M + 1. Here they nest for K -> K / 2.) With the
// teacher on G_{2K} (stride s / 2):
//   G_{2K}[2i + 1] = s/2 - 1 + (2i + 1) s/2 = G_K[i],
// so the student's level i is the teacher's level 2i + 1, and every student step, the last
// one included, is exactly two teacher steps:
//   G_K[i] = G_{2K}[2i+1] -> G_{2K}[2i] -> G_{2K}[2i-1] = G_K[i-1]     (i >= 1)
//   G_K[0] = G_{2K}[1]    -> G_{2K}[0]  -> clean                          (i = 0)
// A teacher of N steps can be halved R times iff N divides T and 2^R divides N.
//
// One DDIM step (Song et al. 2021 eq. 12, eta = 0) from level t to level u with the x_0
// estimate x^ (alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar); clean: 1, 0):
//   z_u = alpha_u x^ + sigma_u (z_t - alpha_t x^) / sigma_t                              (1)
// It is what sampler.h's ddim_step computes at eta = 0 (eps^ recomputed from x^). Being
// affine in x^, the x~ whose ONE step from z_t lands on the teacher's z_t'' is
// (Algorithm 2):
//   x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t)  (2)
// The loss is the paper's truncated SNR weighting (sec. 4) in x-space, for any
// parameterisation of the student (its output is turned into x^ first):
//   L = mean_n max(SNR_t, 1) mean_elements (x^_student(z_t, t) - x~)^2,  SNR = alpha^2 / sigma^2. (3)
//
// Clipping: ddpm-sample's DDIM clamps x^ to [-1, 1] before (1) by default; DenoiserReading's
// clip_x0 does the same here. The student's x^ in (3) must not be clamped (x~ may lie
// outside [-1, 1] at high noise, where a clamp would cut the gradient), so distill_run.h
// reads teacher and student unclamped and its students are sampled with --clip-x0 false.
//
// Guided distillation (Meng et al. 2023, "On Distillation of Guided Diffusion Models",
// sec. 3.1, stage 1): a class-conditional teacher's classifier-free-guided x_0 estimate at
// guidance weight w (ddpm-sample's --guidance-scale s = 1 + w) is
//   x^w = (1 + w) x^_c - w x^_u,   x^_c = x^(z_t, t, y),  x^_u = x^(z_t, t, null)          (4)
// the student x^_eta(z_t, t, y, w) learns it with the loss (3). Every parameterisation is
// affine in the network output at fixed z_t (x^ = (z_t - sigma_t eps^) / alpha_t, x^ =
// alpha_t z_t - sigma_t v^), with weights 1 + w and -w summing to one, so (4) in x-space is
// the sampler's eps_u + s (eps_c - eps_u) read as x^. Stage 2 runs the rounds above with the
// weight w of each example passed to teacher and student alike (their DenoiseFn closes over
// it): one w-conditioned call per teacher step, no doubled batch.
//
// Learned variance: eta = 0 DDIM never uses the variance, so only the mean part of a
// [..., 2C] output is read (split_learned_variance); the output weights of the variance
// channels get no gradient (the predicted variance still drifts with the shared features:
// distilled students are for eta = 0 DDIM only).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/schedule.h"

namespace ddpm::diffusion {

// The clean level (alpha = 1, sigma = 0) where a level is otherwise an original timestep.
inline constexpr std::int64_t kCleanLevel = -1;

// The timesteps `ddpm-sample --sampler ddim --sampling-steps K` visits, ascending: all T
// when K = T, else space_timesteps(T, "ddimK"). ValueError unless 1 <= K <= T and K | T.
Timesteps ddim_sampling_grid(std::int64_t T, std::int64_t K);

// The nested grids of one round: the student's (K) and the teacher's (2K),
// teacher[2i + 1] == student[i].
struct DistillGrid {
  std::int64_t T = 0;
  Timesteps student, teacher;
  std::int64_t student_steps() const { return static_cast<std::int64_t>(student.size()); }
  std::int64_t teacher_steps() const { return static_cast<std::int64_t>(teacher.size()); }
};
// ValueError unless K >= 1 and 2K divides T.
DistillGrid distill_grid(std::int64_t T, std::int64_t student_steps);

// The student step counts N/2, N/4, ..., N/2^R of R halvings of a teacher of N steps.
// ValueError (naming --teacher-steps and --rounds) unless 1 <= R <= 12, N divides T and 2^R
// divides N.
std::vector<std::int64_t> distill_step_counts(std::int64_t T, std::int64_t teacher_steps, int rounds);

// Equation (1) per sample: z [N, ...] with estimate x0 [N, ...] from level from[n] (a
// timestep) to level to[n] (a timestep or kCleanLevel). Recorded on the tape; f32 or f64.
Tensor ddim_jump(const DiffusionSchedule& s, const Tensor& z, const Tensor& x0, const Timesteps& from,
                 const Timesteps& to);

// Equation (2) per sample: the x~ [N, ...] whose one DDIM step from z (level start) lands
// on z_end (level end). ValueError unless every end is less noisy than its start.
Tensor distillation_target(const DiffusionSchedule& s, const Tensor& z, const Tensor& z_end, const Timesteps& start,
                           const Timesteps& end);

// How a network's output is read: its mean type, whether it has a learned-variance half,
// and whether its x_0 estimate is clamped to [-1, 1] (the sampler's clip_x0).
struct DenoiserReading {
  ModelMeanType type = ModelMeanType::eps;
  bool learned_sigma = false;
  bool clip_x0 = false;
};

// The x_0 estimate [N, ...] of `net` at z (per-sample original timesteps t, labels as the
// network takes them): the mean part turned into x_0, clamped when r.clip_x0.
Tensor x0_estimate(const DiffusionSchedule& s, const DenoiseFn& net, const DenoiserReading& r, const Tensor& z,
                   const Timesteps& t, const std::vector<std::int64_t>& labels);

// The teacher's two DDIM steps from z [N, ...] at student indices index[n] (levels
// g.student[index[n]]): z'' and the start and end levels. Two batched teacher calls, run
// without gradients.
struct TeacherSteps {
  Tensor z_end;
  Timesteps start, end;
};
TeacherSteps teacher_ddim_steps(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiserReading& r,
                                const DistillGrid& g, const Tensor& z, const std::vector<std::int64_t>& index,
                                const std::vector<std::int64_t>& labels);

// Equation (4) per sample: (1 + w[n]) x_cond[n] - w[n] x_uncond[n], for x_cond and x_uncond
// [N, ...] of one shape and N weights.
Tensor guided_combination(const Tensor& x_cond, const Tensor& x_uncond, const std::vector<double>& w);

// The teacher's guided x_0 estimate x^w (4) [N, ...] at z (timesteps t, labels y, weights w),
// its two branches in one doubled batch (the labels, then null_label for every sample), read
// with r; run without gradients. ValueError unless there are N labels and N weights.
Tensor teacher_guided_x0(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiserReading& r,
                         const Tensor& z, const Timesteps& t, const std::vector<std::int64_t>& labels,
                         std::int64_t null_label, const std::vector<double>& w);

// Equation (3): the scalar loss of the student's x_0 estimates x_hat [N, ...] (on the tape)
// against the targets [N, ...] at start timesteps t.
Tensor distillation_loss(const DiffusionSchedule& s, const Tensor& x_hat, const Tensor& target, const Timesteps& t);

// The mean over samples and elements of (one DDIM step of `model` from z) - (the teacher's
// two steps from z), squared: what a round drives down. Both are read with r, clamp
// included, as ddpm-sample steps them. Run without gradients.
double one_step_gap(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiseFn& model,
                    const DenoiserReading& r, const DistillGrid& g, const Tensor& z,
                    const std::vector<std::int64_t>& index, const std::vector<std::int64_t>& labels);

// Stage 1's held-out figure: the mean over samples and elements of (x^ of `model` - x^w of
// the teacher (4))^2 at z. Run without gradients.
double guided_x0_gap(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiseFn& model,
                     const DenoiserReading& r, const Tensor& z, const Timesteps& t,
                     const std::vector<std::int64_t>& labels, std::int64_t null_label, const std::vector<double>& w);

}  // namespace ddpm::diffusion
