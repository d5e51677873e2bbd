// models/toy/distill.h: progressive distillation (Salimans & Ho 2022, "Progressive
// distillation for fast sampling of diffusion models", Algorithm 2) for the toy MLP.
//
// The idea. A teacher samples with DDIM (eta = 0, a deterministic map from noise to data)
// on some time grid. A student, initialised as a copy of the teacher, is trained so that ONE
// of its DDIM steps lands where TWO of the teacher's land. Then the student becomes the
// teacher and the step count halves again: 64 -> 32 -> ... -> 1 intervals, each round a
// few thousand cheap regression steps instead of a new model.
//
// Discrete time, and why. The paper works in continuous time on the cosine schedule. The
// toy kit is discrete: its models were trained on integer timesteps t in [0, T) of a
// DiffusionSchedule (schedule.h), and `ddpm-toy sample --sampler ddim --sampling-steps K`
// steps through the respaced grid space_timesteps(T, "K") (respace.h): K kept timesteps
// G_K[k] = round(k (T - 1) / (K - 1)), k = 0..K-1, from T - 1 down to 0, then a last step
// from t = 0 to the clean level (alpha_bar = 1, where DDIM returns its x_0 estimate). So
// everything here is exact for the discrete schedule: a "level" is an original timestep t
// with alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), or the clean level
// (alpha = 1, sigma = 0), and the networks are only ever called at integer timesteps they
// were trained on.
//   The grid G_K has M = K - 1 real intervals plus the final t = 0 -> clean one (a tiny
// step: alpha_bar_0 = 1 - beta_0). Halving the real intervals, M -> M / 2, maps K = M + 1
// to M / 2 + 1, and the grids nest exactly: G_{2M+1}[2k] = round(2k (T-1) / (2M)) = G_{M+1}[k]
// (the same real number, and respace.cpp's floating-point stride is exact under the factor
// 2). So a teacher sampling with 2M + 1 steps is distilled into a student sampling with
// M + 1 steps, and the student's folder is read by `sample --sampling-steps M + 1` with no
// new sampler option: 65 -> 33 -> 17 -> 9 -> 5 -> 3 -> 2 steps (64 -> 1 real intervals).
//
// One training example (Algorithm 2 on this grid). x ~ data, student index i uniform in
// [0, M] (the student's sampler indices, i = 0 being the final t = 0 -> clean step),
// t = G_{M+1}[i], eps ~ N(0, I), z_t = alpha_t x + sigma_t eps (DDPM eq. 4). Then:
//   i >= 1: two teacher DDIM steps t -> t' = G_{2M+1}[2i-1] -> t'' = G_{M+1}[i-1];
//   i = 0 : the teacher's one step t = 0 -> clean (there is no level between: the student
//           must simply keep doing what the teacher did there).
// A DDIM step (Song et al. 2021 eq. 12, eta = 0) from level t to level u with estimate x^:
//   z_u = alpha_u x^ + sigma_u (z_t - alpha_t x^) / sigma_t,                           (1)
// affine in x^, so the x~ that makes ONE step from z_t land exactly on the teacher's z_t''
// is (paper, Algorithm 2):
//   x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t).  (2)
// The denominator is alpha_t'' - sigma_t'' alpha_t / sigma_t > 0 because t'' has the higher
// SNR. At the clean level (sigma = 0, alpha = 1) (2) reads x~ = z_t'' = the teacher's x^.
//
// The loss: truncated SNR weighting (paper sec. 4, "truncated SNR"), in x-space and for any
// parameterisation of the network (eps, x0 or v, whichever the teacher predicts; the
// student copies it):
//   L = max(SNR_t, 1) ||x^_student(z_t, t) - x~||^2,  SNR_t = alpha_t^2 / sigma_t^2,
// (mean over the 2 coordinates, then over the batch). At low noise this is the eps-error,
// at high noise the x-error (where the eps-weighting SNR_t would vanish). The v-loss,
// (1 + SNR_t) ||x^ - x~||^2, is the paper's other choice and differs by at most a factor 2.
// Parameterisation matters more than the weight: an eps-network at the first step
// (alpha_{T-1} ~ 0.006 on the linear schedule) returns x^ = (z - sigma eps^)/alpha, so any
// eps error is multiplied by ~160; the paper therefore distils v- or x-networks. ddpm-toy
// accepts any teacher and docs/LEARN.md measures a v-teacher (`train --predict v`).
//
// Optimiser: AdamW with a linear warm-up, gradient clipping at 1 and an EMA of the student
// (warm-up decay, engine/optim.h); the EMA is the round's result and the next teacher. The
// data are fresh draws of the teacher's dataset every step (infinite data, as in training).
// Class-conditional teachers are not handled (the caller refuses them).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/schedule.h"
#include "models/toy/mlp_denoiser.h"

namespace ddpm::toy {

// The clean level (alpha = 1, sigma = 0) where a level is otherwise an original timestep.
inline constexpr std::int64_t kCleanLevel = -1;

// The nested grids of one round: the student's sampler timesteps (M + 1 of them, ascending,
// space_timesteps(T, "M+1")) and the teacher's (2M + 1), teacher[2k] == student[k].
struct DistillGrid {
  std::int64_t T = 0;
  diffusion::Timesteps student, teacher;
  std::int64_t student_steps() const { return static_cast<std::int64_t>(student.size()); }
  std::int64_t teacher_steps() const { return static_cast<std::int64_t>(teacher.size()); }
};
// ValueError unless student_steps >= 2 and 2 (student_steps - 1) + 1 <= T.
DistillGrid distill_grid(std::int64_t T, std::int64_t student_steps);

// Equation (1) per sample: the DDIM step (eta = 0) of z [N, D] with estimate x0 [N, D] from
// level from[n] (a timestep) to level to[n] (a timestep or kCleanLevel). Recorded on the tape.
Tensor ddim_jump(const diffusion::DiffusionSchedule& s, const Tensor& z, const Tensor& x0,
                 const diffusion::Timesteps& from, const diffusion::Timesteps& to);

// Where the teacher's steps from z at student index index[n] lead: z'' [N, D] and its level
// t'' (the student grid's index - 1, or kCleanLevel for index 0), the start levels t, and
// how many teacher network calls it took (2 for index >= 1, else 1). Run without gradients.
struct TeacherSteps {
  Tensor z_end;
  diffusion::Timesteps start, end;
};
TeacherSteps teacher_ddim_steps(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& teacher,
                                diffusion::ModelMeanType type, const DistillGrid& g, const Tensor& z,
                                const std::vector<std::int64_t>& index);

// Equation (2) per sample: the x~ [N, D] whose one DDIM step from z (level start) lands on
// z_end (level end). ValueError unless end has a higher SNR than start for every sample.
Tensor distillation_target(const diffusion::DiffusionSchedule& s, const Tensor& z, const Tensor& z_end,
                           const diffusion::Timesteps& start, const diffusion::Timesteps& end);

// The mean over points and coordinates of (one DDIM step of `model` from z_t) - (the
// teacher's steps from z_t), squared, for n fresh held-out examples of `data` drawn from
// Generator(seed) (x, index, eps as in training). The quantity a round drives down.
double one_step_gap(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& teacher,
                    const diffusion::DenoiseFn& model, diffusion::ModelMeanType type, const DistillGrid& g,
                    const std::string& data, std::int64_t n, std::uint64_t seed);

struct DistillArgs {
  std::string data;                 // the dataset the teacher was trained on (datasets2d.h)
  std::int64_t steps = 2000;        // optimiser steps per round
  std::int64_t batch_size = 256;
  double lr = 5e-4;                 // AdamW, linear warm-up over warmup_steps
  std::int64_t warmup_steps = 100;
  double grad_clip = 1.0;
  double ema_rate = 0.995;
  std::int64_t log_every = 500;
  std::int64_t gap_points = 2000;   // held-out examples of one_step_gap
  std::uint64_t seed = 0;
};
// ValueError naming the flag for a bad field.
void check_distill_args(const DistillArgs& a);

struct DistillRoundReport {
  std::int64_t round = 0;  // 1-based
  std::int64_t teacher_steps = 0, student_steps = 0;
  std::vector<std::int64_t> log_steps;
  std::vector<double> log_losses;
  double gap_before = 0;  // one_step_gap of the teacher itself (the undistilled student)
  double gap_after = 0;   // ... of the distilled student's EMA
  double seconds = 0;
};

// One round: trains `student` (its slab; initialised by the caller, usually to the
// teacher's weights) to do in one step what `teacher` does in two on grid g. Returns the
// report and leaves the EMA weights, flat in the slab's layout, in *ema.
DistillRoundReport distill_round(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& teacher,
                                 MlpDenoiser& student, ParameterSlab& slab, diffusion::ModelMeanType type,
                                 const DistillGrid& g, const DistillArgs& a, Tensor* ema,
                                 const std::function<void(const std::string&)>& log = {});

// Progressive distillation: `rounds` rounds from a teacher sampling with teacher_steps
// (= 2^rounds M + 1 for some M >= 1, else ValueError) and weights teacher_weights (flat in the
// slab layout of an MlpDenoiser of `config`). Round r distils 2M_r + 1 steps into M_r + 1;
// its student starts from the previous round's result (the teacher for round 1) and its EMA
// is the next teacher. on_round sees each round's report, the student and its EMA weights.
using DistillRoundFn =
    std::function<void(const DistillRoundReport& r, const MlpDenoiser& student, const ParameterSlab& slab,
                       const Tensor& ema)>;
void progressive_distillation(const diffusion::DiffusionSchedule& s, const MlpDenoiserConfig& config,
                              const Tensor& teacher_weights, diffusion::ModelMeanType type,
                              std::int64_t teacher_steps, int rounds, const DistillArgs& a,
                              const DistillRoundFn& on_round, const std::function<void(const std::string&)>& log = {});

// The student step counts of `rounds` halvings from teacher_steps; ValueError (naming
// --teacher-steps and --rounds) unless teacher_steps - 1 is a positive multiple of 2^rounds
// and teacher_steps <= T.
std::vector<std::int64_t> distill_step_counts(std::int64_t T, std::int64_t teacher_steps, int rounds);

}  // namespace ddpm::toy
