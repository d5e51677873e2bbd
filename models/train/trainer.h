// models/train/trainer.h: the training loop of a diffusion model, in the library (the train
// app is a thin shell over it).
//
// One step (ARCHITECTURE "data flow of one training step"):
//   batch = provider(step, gen)                        x_0 [N, ..., C] and N labels (or none)
//                                                      (+ an optional condition, Batch::cond)
//   t ~ uniform{0..T-1} or the loss-second-moment sampler (weights w = 1/(T p_t); 1 if uniform)
//   labels -> null label (num_classes) with probability label_dropout (classifier-free guidance)
//   noise ~ N(0, I); x_t = q_sample(x_0, t, noise)
//   zero_grad; for each microbatch b of size m:        gradient accumulation
//       L_b = sum_{i in b} w_i loss_i / N; L_b.backward()
//     so the accumulated gradient is that of the full-batch loss (1/N) sum_i w_i loss_i
//   (optional recipes, training_recipes.h: Min-SNR-gamma multiplies w_i; offset noise adds a
//    per-channel constant to the noise; input perturbation feeds the network x_t built
//    from noise + gamma xi while the loss's target stays the noise)
//   a non-finite loss or gradient norm: no update at all (skipped, reported)
//   grad_norm = clip_grad_norm(max_norm)               (or just the norm when clipping is off)
//   lr = scheduled_lr(step): linear warm-up, then constant, linear or cosine decay towards
//        lr_min by step total_steps (lr_schedule.h); AdamW step
//   EMA update with warm-up, decay = min(rate, (1 + n)/(10 + n)), n = the update's 0-based index
//   power EMAs (posthoc_ema.h; when posthoc_sigma_rels is set): beta_t = (1 - 1/t)^(gamma + 1), t = AdamW steps
//
// Random numbers come from one Philox generator in a fixed order per step: the provider's
// draws (e.g. a super-resolution run's blurring augmentation: N blur decisions, then N
// sigmas, models/diffusion/blur_augment.h; then its conditioning augmentation: N levels, then
// the condition's noise, models/diffusion/super_res.h), then t (uniform: N values of rand; importance: the sampler's N values), label
// dropout (N values of rand, when enabled), noise, then when enabled the offset noise's
// N x C values and the input perturbation's noise (training_recipes.h). So a trainer restored from state() takes
// bit-identical steps to one that never stopped.
//
// Two objectives (TrainerConfig::objective):
//   ddpm  the steps above (DDPM / improved DDPM: discrete t, q_sample, training_losses).
//   edm   Karras et al. 2022 (models/diffusion/edm.h): in place of t, each sample draws a
//         continuous noise level ln sigma ~ N(P_mean, P_std^2) (N values of randn in f64, at
//         t's place in the order: provider, sigma, label dropout, noise); x = x_0 + sigma noise
//         and loss_i = mean over elements of (F - (x_0 - c_skip x) / c_out)^2 (edm.h
//         edm_training_loss), all weights 1. The schedule is not used. The loss quartile
//         metrics are then the quartiles of ln sigma's TRAINING distribution: quartile q holds
//         the samples whose standardised z = (ln sigma - P_mean) / P_std lies in the q-th
//         quartile of N(0, 1) (split at -0.674, 0, 0.674: lowest noise first), so each gets
//         a quarter of the samples on average. Importance sampling of t, a learned variance
//         and losses other than simple are refused (they belong to the discrete process).
//   vdm   Kingma et al. 2021 (models/diffusion/vdm.h): t by the antithetic sampler (ONE
//         value of rand in f64, at t's place; rounded up to the grid i/T for T > 0), then the
//         noise as usual and after it, for the reconstruction term, a second tensor eps_0 of
//         x_0's shape. loss_i = the sample's VLB in bits/dim: (diffusion + prior +
//         reconstruction nats) / (D ln 2), D = the elements of one sample; only the diffusion
//         term is differentiable (the endpoints are fixed). A learned schedule
//         (TrainerConfig::vdm_schedule, its weights in the slab) gets the variance-minimising
//         gradient d/d eta of the batch mean of the squared diffusion loss in bits/dim. The
//         quartile metrics are those of t in [0, 1]. DDPM-only choices are refused as for edm.
//   ict   improved consistency training (Song & Dhariwal 2023; models/diffusion/
//         consistency_training.h): at step k the curriculum gives N(k) Karras levels
//         (total_steps is the run's K and must be >= 1); each sample draws the lower index i
//         of a level pair (sigma_i, sigma_{i+1}) from iCT's log-normal-bin distribution (N
//         values of rand in f64, at t's place: provider, levels, label dropout, noise). With
//         ONE noise z per sample, the target f(x_0 + sigma_i z, sigma_i) is the same network
//         run without gradient (theta^- = theta), then the student f(x_0 + sigma_{i+1} z,
//         sigma_{i+1}) on the tape; loss_i = (sigma_{i+1} - sigma_i)^-1 d(student, target),
//         d pseudo-Huber (or l2), all weights 1. Dropout: the dropout generator is rewound
//         to its state before the target's call, so the student sees the target's masks
//         (CM's code does the same); its net advance is the student's draws. Quartile
//         metrics: the quartiles of the level distribution (the middle of the pair's bin in
//         its CDF, lowest noise first). DDPM-only choices are refused as for edm.
// Everything else (microbatches, the skip rule, AdamW, EMA, the data-parallel rules below,
// state() and resume) is the same for all four.
//
// Joint image-video training (Ho et al. 2022, "Video Diffusion Models", sec. 3; when
// TrainerConfig::joint_images M > 0): the batch also holds M still images as one-frame clips
// Batch::stills [M, 1, H, W, C] (a video UNet attends each to itself alone, unet.h). They are
// extra samples with their own t, labels and noise, drawn AFTER all of the clips' draws above
// (so the clips' numbers are those of a run without stills): t (M values of rand), label
// dropout (M values, when enabled), the noise [M, 1, H, W, C], then when enabled the offset
// noise and the input perturbation of the stills. The step's loss is the mean over all N + M
// samples, L = (1/(N+M)) (sum_clips w_i loss_i + sum_stills w_j loss_j), i.e.
//   L = N/(N+M) L_video + M/(N+M) L_still
// with L_video, L_still the weighted means over each part; microbatches run over the clips,
// then over the stills, each normalised by the same N + M. DDPM objective with uniform t only;
// no condition (Batch::cond) and one process (world 1).
//
// Data parallel (ARCHITECTURE decision 12; a Communicator of world W > 1, one per rank):
//   - N (the GLOBAL batch) must be divisible by W; rank r trains on rows [r N/W, (r+1) N/W).
//   - every rank draws the same numbers a single process would for the whole global batch
//     (the provider's draws, t, label dropout, noise: tiny next to the network) and slices
//     its rows, so the generator advances identically everywhere and for every W;
//   - each rank backpropagates L_r = sum_{i in rank r} w_i loss_i / N (normalised by the
//     GLOBAL N), so one all-reduce SUM of the gradient slab gives exactly the full-batch
//     gradient of (1/N) sum_i w_i loss_i; it runs after the microbatches accumulated and
//     before the gradient norm and clipping, which then see the same slab on every rank;
//   - the per-sample losses are summed into a zero-filled global vector (one all-reduce of
//     N + 1 doubles, the loss total riding along), so the loss, the quartile metrics, the
//     non-finite skip decision and the importance sampler's history are the same everywhere;
//   - the parameters are broadcast from rank 0 at construction and after load_state
//     (defensive: every rank should have built the same weights), so AdamW and the EMA,
//     given identical slabs and gradients, stay identical on every rank.
// The result equals a single-process step up to the summation order of the gradient (each
// rank's GEMMs sum over N/W samples, then the ranks are added): ~1e-7 relative in f32.
// Dropout inside the network is the exception: with W > 1 its masks come from
// dropout_generator(), a stream keyed by (seed, rank, step), not from the main generator, so
// runs with dropout > 0 are not bit-comparable across world sizes (each rank's masks are
// still independent, and a resumed distributed run is still bit-identical).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/consistency_training.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/likelihood.h"
#include "models/diffusion/schedule.h"
#include "models/diffusion/vdm.h"
#include "models/train/lr_schedule.h"
#include "models/train/posthoc_ema.h"

namespace ddpm::train {

// A batch of data: x_0 in [-1, 1] (scaled by the data loader), and its labels (empty when
// the model is unconditional). `cond` (optional, [N, H, W, Cc] on x0's device and dtype) is
// a per-sample image concatenated to the network input along channels: the model is called
// with concat(x_t, cond) (super-resolution: cond = the upsampled low-res image, models/
// diffusion/super_res.h). It is sliced exactly like x_0 for microbatches and data-parallel
// ranks, is not noised, not scaled by EDM's c_in (only x is) and gets no gradient.
// `stills` (optional; joint image-video training, see the top of this file): M still images
// as one-frame clips [M, 1, H, W, C] on x0's device and dtype, H, W, C as x0's; `still_labels`
// one per still when the model is class-conditional (else empty).
struct Batch {
  Tensor x0;
  std::vector<std::int64_t> labels;
  Tensor cond;
  Tensor stills{};  // (default member initializers: Batch{x0, labels, cond} stays warning-free)
  std::vector<std::int64_t> still_labels{};
};
// Makes the batch for a step; may draw from gen (it is the trainer's generator).
using BatchProvider = std::function<Batch(std::int64_t step, Generator& gen)>;

enum class TimestepSampling { uniform, loss_second_moment };
// "uniform" or "loss-second-moment" (the --schedule-sampler names); ValueError otherwise.
TimestepSampling parse_timestep_sampling(const std::string& name);

// What the trainer optimises (see the top of this file).
enum class Objective { ddpm, edm, vdm, ict };
Objective parse_objective(const std::string& name);  // "ddpm", "edm", "vdm" or "ict"; ValueError otherwise
const char* objective_name(Objective o);

struct TrainerConfig {
  Objective objective = Objective::ddpm;
  diffusion::EdmConfig edm;    // sigma_data, P_mean, P_std (objective edm only)
  diffusion::IctConfig ict;    // the iCT process, curriculum and distance (objective ict only)
  // Objective vdm only: the schedule (not owned; must outlive the trainer; a learned one has
  // its weights in the slab) and its config (steps T: 0 continuous).
  const diffusion::VdmSchedule* vdm_schedule = nullptr;
  diffusion::LossConfig loss;  // loss type, mean type, learned sigma, hybrid lambda (ddpm only)
  TimestepSampling timesteps = TimestepSampling::uniform;
  AdamWConfig adamw;           // adamw.lr is the base learning rate
  std::int64_t warmup_steps = 0;  // 0: no warm-up
  // After the warm-up the rate decays from adamw.lr to lr_min over the steps up to
  // total_steps (lr_schedule.h); constant ignores both. A decaying schedule needs
  // total_steps > warmup_steps: the run's total step count (--steps), not this call's.
  LrSchedule lr_schedule = LrSchedule::constant;
  double lr_min = 0.0;
  std::int64_t total_steps = 0;
  double grad_clip = 1.0;         // max global norm; 0 turns clipping off
  double ema_rate = 0.9999;
  // Power-function EMAs tracked beside the classic one for post-hoc EMA (posthoc_ema.h), one
  // per relative width; each is updated after every AdamW step t with beta_t = (1-1/t)^(gamma+1).
  std::vector<double> posthoc_sigma_rels;
  std::int64_t microbatch = 0;  // 0 or >= N: the whole batch at once
  int num_classes = 0;          // > 0: labels are required, null label = num_classes
  double label_dropout = 0.0;   // probability of the null label (classifier-free guidance training)
  // Training recipes of models/diffusion/training_recipes.h (DDPM objective only; 0 = off):
  double snr_gamma = 0.0;           // Min-SNR-gamma loss weights (simple loss only; paper: 5)
  double noise_offset = 0.0;        // offset noise: + offset * N(0, 1) per sample and channel
  double input_perturbation = 0.0;  // the network's input uses noise + gamma xi, the target noise
  // Joint image-video training: M > 0 still images per step come with every batch of clips
  // (Batch::stills; see the top of this file). 0 = off: the batch has none.
  std::int64_t joint_images = 0;
  std::uint64_t seed = 0;
};

// What one step did.
struct StepMetrics {
  std::int64_t step = 0;    // the index of this step (0-based)
  double loss = 0.0;        // the (importance-weighted) batch mean that was backpropagated
  // Unweighted mean loss of the samples whose t fell in quartile q: t in [q T/4, (q+1) T/4).
  // EDM: the quartiles of ln sigma's training distribution instead (see the top of this file);
  // iCT: those of its level distribution.
  // NaN where no sample fell in the quartile; counts say how many did.
  std::array<double, 4> loss_quartile{};
  std::array<std::int64_t, 4> quartile_count{};
  double grad_norm = 0.0;  // global norm before clipping (NaN when the loss was non-finite)
  double lr = 0.0;         // the learning rate of this step
  double ema_decay = 0.0;  // the EMA decay used (0 when skipped)
  // Joint image-video training: the unweighted mean loss of the clips and of the stills
  // (NaN without stills; `loss` is then the same as a run without them).
  double video_loss = std::numeric_limits<double>::quiet_NaN();
  double still_loss = std::numeric_limits<double>::quiet_NaN();
  bool skipped = false;    // non-finite loss or gradient norm: parameters, moments and EMA untouched
};

// Mean loss per timestep quartile (the bookkeeping of StepMetrics); t in [0, T).
void quartile_means(const diffusion::Timesteps& t, const std::vector<double>& losses, std::int64_t T,
                    std::array<double, 4>& means, std::array<std::int64_t, 4>& counts);

// The constant schedule's rate, base * min(1, (step + 1) / warmup_steps): scheduled_lr
// (lr_schedule.h) with LrSchedule::constant, kept under its old name for its callers.
double warmup_lr(double base, std::int64_t warmup_steps, std::int64_t step);

// The learning rate the trainer uses at `step` under `config` (scheduled_lr of its fields).
double config_lr(const TrainerConfig& config, std::int64_t step);

// Everything a checkpoint needs to resume bit-identically (with the config).
struct TrainerState {
  std::int64_t step = 0;
  std::uint64_t seed = 0, offset = 0;  // the generator
  Tensor params;                       // flat [slab_numel], a copy of the slab values
  std::int64_t adam_step = 0;
  Tensor exp_avg, exp_avg_sq;          // AdamW moments, flat
  Tensor ema;                          // EMA values, flat
  std::vector<Tensor> power_ema;       // the power EMAs' values, flat, in config order (may be empty)
  // The importance sampler's loss history (in memory; when used).
  std::optional<diffusion::LossSecondMomentSampler> importance;
};

class Trainer {
 public:
  // The slab must already be packed and on its final device; it must outlive the trainer.
  // model is called with ORIGINAL timesteps (as doubles) and must record on the tape; for
  // the edm and ict objectives with t = c_noise = ln(sigma) / 4 (the schedule is then unused).
  // comm: the data-parallel communicator (must outlive the trainer); nullptr is one process.
  Trainer(ParameterSlab& params, diffusion::DenoiseFn model, const diffusion::DiffusionSchedule& schedule,
          BatchProvider batches, const TrainerConfig& config, dist::Communicator* comm = nullptr);

  StepMetrics step();

  std::int64_t step_count() const { return step_; }
  const TrainerConfig& config() const { return config_; }
  Generator& generator() { return gen_; }
  // The generator the network's dropout draws from during step(): the main generator in a
  // single process (unchanged order, see above); with world > 1 a per-step stream of this
  // rank, (key(seed, rank), offset step * 2^40), which needs no state to resume.
  Generator& dropout_generator() { return comm_->world_size() > 1 ? dropout_gen_ : gen_; }
  const dist::Communicator& communicator() const { return *comm_; }
  const AdamW& optimizer() const { return adamw_; }
  const Ema& ema() const { return ema_; }
  Ema& ema() { return ema_; }
  // The power-function EMAs of config().posthoc_sigma_rels, in that order; their update count
  // is optimizer().step_count().
  const std::vector<PowerEma>& power_emas() const { return power_emas_; }

  TrainerState state() const;
  // The importance sampler of t, when TimestepSampling::loss_second_moment (else empty).
  const std::optional<diffusion::LossSecondMomentSampler>& importance() const { return importance_; }
  void load_state(const TrainerState& state);

 private:
  ParameterSlab* params_;
  diffusion::DenoiseFn model_;
  const diffusion::DiffusionSchedule* schedule_;
  BatchProvider batches_;
  TrainerConfig config_;
  std::unique_ptr<dist::Communicator> own_comm_;  // the single-process one when none is given
  dist::Communicator* comm_;
  Generator gen_;
  Generator dropout_gen_;
  AdamW adamw_;
  Ema ema_;
  std::vector<PowerEma> power_emas_;
  std::optional<diffusion::LossSecondMomentSampler> importance_;
  std::int64_t step_ = 0;
};

}  // namespace ddpm::train
