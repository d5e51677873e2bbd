// models/run/consistency_run.h: `ddpm-distill --method consistency`, consistency distillation
// (Song et al. 2023, Algorithm 2, on the teacher's DDPM grid as Latent Consistency Models do)
// of a trained ddpm-train UNet into a student sampled in 1 to a few network calls by
// `ddpm-sample --sampler consistency --sampling-steps K`. The math (grid, c_skip / c_out,
// target, distance, sampler) is models/diffusion/consistency.h.
//
// Networks. The teacher (the EMA weights of --teacher, read by open_model) stays frozen; the
// student starts as a copy of it; the target network theta^- starts as a copy too and follows
// the student after every update with the fixed rate --target-ema mu (CM's 0.95, no warm-up);
// the published weights are the student's EMA at --ema-rate (with warm-up, as ddpm-train's).
//
// One step (batch B), as distill_run.h's for the data, labels, optimiser and clipping: x_0
// from the teacher run's data (or --data), level indices n + 1 ~ U{1..N}, eps ~ N(0, I),
// z = q_sample(x_0, L_{n+1}, eps); under no-grad one teacher call (its DDIM step to L_n) and
// one target call (f_{theta^-} at L_n; none where L_n is clean); the student's forward and
// backward on the distance (consistency.h eq. 3); gradient clipping, AdamW with warm-up, the
// EMA, then the target update. A non-finite loss or gradient norm skips the update. Cost per
// step: 2 forwards without gradients + 1 forward and backward.
//
// Class-conditional teachers: labels replaced by the null label with probability
// --label-dropout (default: the teacher run's class_dropout), plain distillation of both
// branches (no guidance is distilled; ddpm-sample refuses --guidance-scale with the sampler
// for such a student).
//
// Guided consistency distillation (--guided S_MIN,S_MAX; Latent Consistency Models, Luo et
// al. 2023, Algorithm 1, eq. 9-10; the flag, its parse and its units are progressive guided
// distillation's, guided_distill.h: s = 1 + w, 1 <= S_MIN <= S_MAX; class-conditional
// teachers only). Student and theta^- start as with_guidance_embedding(teacher) (one fresh
// embedding, its last linear zero: at step 0 both are the teacher's conditional branch); per
// example w = s - 1, s ~ U[S_MIN, S_MAX]; the teacher's DDIM step uses the guided prediction
// (1 + w) eps_c - w eps_u (consistency.h TeacherGuidance: one doubled teacher call of 2B
// rows), and student and target get the example's w. Draws per step, in this order from the
// run's generator: the latent encoding (latent teachers), the level indices, the label
// dropout uniforms (when p > 0), eps, then the B weights w LAST (so the draws before them are
// an unguided run's). Labels: the student is trained on the conditional labels (LCM: the
// guided student is sampled with a class, and guidance is now inside the network), so the
// label dropout defaults to 0 (the teacher's class_dropout is not taken); --label-dropout p
// still sets it, and a dropped row's guided step is the unconditional one whatever w (both
// branches get the null label). gap_before / gap_after are measured at the fixed middle of
// the range, w = (S_MIN + S_MAX) / 2 - 1, against the teacher's guided N-step DDIM endpoint.
// The folder records "model": {"guidance_embedding": true} and "distillation": {"guided":
// {"scale_min", "scale_max"}, "consistency": {..., "gap_guidance_scale"}}, and `ddpm-sample
// --sampler consistency --guidance-scale s` feeds w = s - 1 in one network call per step,
// refusing s outside the range (guided_distill.h guided_sampling_weight). --guided is saved
// with the run's state and restored on --resume.
//
// Refused (ValueError, before anything is written): EDM-objective and super-resolution
// teachers, a level count that does not divide T, data that do not fit the model, an --out
// that exists and is not empty without --overwrite (or, without it, beside a saved state of a
// stopped run), progressive-only flags given with --method consistency (--rounds,
// --steps-per-round, --teacher-steps, --guided-steps), consistency flags without it, --guided
// for an unconditional teacher or a malformed range.
// Latent teachers are handled as in distill_run.h (the data encoded by the run's
// autoencoder, which OUT carries).
//
// Output, published atomically when the last step is done (write_ema_model_folder):
//   OUT/config.json      the teacher's config plus "distillation": {round 1, sampling_steps 1,
//                        sampler "consistency", clip_x0 false, teacher, "consistency":
//                        {levels N, timesteps, sigma_data, timestep_scale, c_skip, c_out,
//                        loss, target_ema, steps, final_loss, gap_before, gap_after}}
//   OUT/ema.safetensors  the student's EMA weights
// gap_before / gap_after: the held-out mean squared distance between the one-step f(z, L_N)
// and the teacher's N-step DDIM endpoint from the same z, for the student at step 0 (the
// teacher's one-step x^) and for the published EMA.
// Stop signals (stop_signals.h): the step in progress finishes, OUT is not written (a
// half-trained student is published by no one; with --overwrite the old OUT stays whole), the
// run's state is saved beside it (below), and the caller exits 128 + the signal's number.
//
// Resume (distill_state.h, "method": "consistency"; consistency_state.h). The run's state is
// saved to OUT.distill-state (published atomically, replacing the previous one) every
// checkpoint_every steps (0: only on a stop signal) and when a stop signal ends the run: the
// student, its EMA, the AdamW moments and step count, the target network theta^-, the steps
// done, their losses and the loss window, gap_before, the generators (draws, the student's
// dropout) and the loader position; the teacher is not saved (it is --teacher, frozen), and
// the held-out z and the teacher's endpoint are drawn again from their own seeds.
// `ddpm-distill --resume --out OUT` (no --method needed: the state names it) continues from
// it and publishes the bits an uninterrupted run publishes (weights; config.json but its
// "seconds"). The options come from the state; a flag in flags_given whose value differs is
// refused (ValueError naming the flag and both values), --checkpoint-every and --device may
// change. No state: a published consistency OUT is reported as complete and left alone
// (exit 0), else a ValueError (exit 2); a damaged state is an IoError. The state is removed
// once OUT is published; a crash between the two leaves both, and the resumed run does the
// steps after the state again and republishes the same bits in place.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/device.h"
#include "models/diffusion/consistency.h"
#include "models/run/distill_run.h"

namespace ddpm::run {

struct ConsistencyOptions {
  std::string teacher;
  std::int64_t levels = 50;       // N (LCM's skipping step k = T / N; 50 for T = 1000 is LCM's)
  std::int64_t steps = 1000;
  std::int64_t batch_size = 64;
  double lr = 1e-4;
  std::int64_t warmup_steps = 100;
  double grad_clip = 1.0;
  double ema_rate = 0.999;        // the published EMA
  double target_ema = 0.95;       // mu of the target network (CM Table 3)
  std::string loss = "pseudo-huber";  // l2 | pseudo-huber (consistency.h eq. 3)
  std::string data;
  double label_dropout = -1;       // < 0: the teacher's class_dropout (0 with --guided)
  std::string guided;              // --guided "S_MIN,S_MAX": LCM's guided distillation; "" = off
  std::int64_t log_every = 100;
  std::int64_t gap_samples = 64;
  std::uint64_t seed = 0;
  std::string out;
  bool overwrite = false;
  std::int64_t checkpoint_every = 1000;  // save the state every this many steps (0: only on a stop)
  bool resume = false;                   // continue OUT from its saved state
  std::vector<std::string> flags_given;  // --resume: the flags the command line spelt out
  Device device = Device::cpu();
  std::function<void(const std::string&)> log;
};

struct ConsistencyResult {
  std::int64_t steps_done = 0;
  double final_loss = 0;  // mean loss of the last logged window
  double gap_before = 0, gap_after = 0;
  std::vector<double> losses;  // per step (the resumed run's restored ones first), NaN where skipped
  int stopped_by_signal = 0;   // OUT was not written when set (the state was)
  std::string folder;          // OUT, "" when stopped
};

void check_consistency_options(const ConsistencyOptions& o);
ConsistencyResult consistency_run(const ConsistencyOptions& o);

// The grid a consistency folder was trained on (its config.json's "distillation" section,
// "consistency" key), rebuilt for T and checked against the recorded constants; nullopt for
// any other model. ValueError naming the file for a damaged or inconsistent record.
std::optional<diffusion::ConsistencyGrid> read_consistency_grid(const std::string& checkpoint, std::int64_t T);

// ddpm-distill's flags of the method (--method, --consistency-levels, --steps, --target-ema,
// --consistency-loss) and the dispatch: consistency_cli_main runs the method when --method
// consistency was given, or with --resume and no --method when OUT's saved state is a
// consistency run's (or, without a state, OUT is a published consistency model), with the
// shared options of `d`, and returns the exit code; nullopt for --method progressive (the
// caller runs distill_run).
struct ConsistencyFlags {
  std::string method = "progressive";
  ConsistencyOptions o;
};
void add_consistency_flags(CLI::App& app, ConsistencyFlags& f);
std::optional<int> consistency_cli_main(const CLI::App& app, const DistillOptions& d, ConsistencyFlags& f);

}  // namespace ddpm::run
