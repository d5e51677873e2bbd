// models/run/distill_run.h: ddpm-distill, progressive distillation (Salimans & Ho 2022,
// Algorithm 2) of a trained ddpm-train UNet into students that sample with 2x, 4x, 8x ...
// fewer DDIM steps. The math (grids, target, loss) is models/diffusion/progressive_distill.h.
//
// Rounds. The teacher (the EMA weights of --teacher, any source open_model reads) samples
// with --teacher-steps N DDIM steps; round r trains a student, initialised as a copy of its
// teacher, to take in ONE step what the teacher takes in TWO, so it samples with N / 2^r
// steps; the round's EMA is the next round's teacher (and its student's start). N must
// divide the model's T and be a multiple of 2^R (ddpm-sample's DDIM grids nest only then).
//
// One step (batch B): x_0 and labels from the data ddpm-train uses (models/data/loader.h; the
// teacher run's --data, padding, flip and toy count unless --data is given), student index i
// ~ U{0..K-1}, t = G_K[i], eps ~ N(0, I), z = q_sample(x_0, t, eps); the teacher's two DDIM
// steps z -> z'' under no-grad (2 forwards), the target x~ (eq. 2), the student's forward and
// backward on max(SNR_t, 1) ||x^ - x~||^2 (eq. 3); then gradient clipping, AdamW with a linear
// warm-up and the EMA (with warm-up), as ddpm-train's trainer does (engine/optim.h). A
// non-finite loss or gradient norm skips the update. Cost per step: 2 teacher forwards + 1
// student forward and backward (a ddpm-train step is the last alone).
//
// Class-conditional teachers: teacher and student get the data's labels, each replaced by the
// null label with probability label_dropout (default: the teacher run's class_dropout, else
// 0.1), so the student learns both branches and classifier-free guidance still works at
// sampling time. This is plain distillation of each branch: a guided sample of the student
// combines two separately distilled branches (two network calls per step).
//
// Guided distillation (--guided S_MIN,S_MAX; Meng et al. 2023; guided_distill.h): the
// guided combination itself is distilled, for every guidance scale s in [S_MIN, S_MAX]
// (ddpm-sample's units, w = s - 1; 1 <= S_MIN <= S_MAX; class-conditional teachers only).
// Teacher and student get a guidance embedding (unet.h, last layer zero: at step 0 both are
// the teacher exactly). Stage 1 (--guided-steps, default --steps-per-round) draws per example
// t ~ U over the teacher's N-step DDIM grid and s ~ U[S_MIN, S_MAX], and trains the student
// on x^w = (1 + w) x^_c - w x^_u (progressive_distill.h eq. 4; the teacher's two branches in
// one doubled batch) with the rounds' loss; its EMA is published as OUT/round_0 (sampled
// with K = N steps). Then rounds 1..R as above, the example's w given to teacher (stage 1's
// EMA, then each round's) and student: one w-conditioned teacher call per DDIM step.
// --rounds 0 stops after stage 1. The label dropout defaults to 0 (a guided student is
// sampled with class labels only; --label-dropout still sets it). Cost of a stage-1 step: a
// doubled teacher forward + 1 student forward and backward. Every folder records the range
// ("model": {"guidance_embedding": true}, "distillation": {"guided": {"scale_min",
// "scale_max"}}), distill.json adds "guided" {scale_min, scale_max, stage1_steps, ...}, the
// stage-1 entry of "rounds" has round 0, and the printed ddpm-sample commands add
// --guidance-scale (the range's midpoint). ddpm-sample feeds w = s - 1 and refuses s outside
// the range (guided_distill.h).
//
// Latent teachers (ddpm-train --autoencoder, models/run/latent_run.h): the data are encoded
// by the teacher's autoencoder exactly as ddpm-train encodes them (LatentCodec::encode, a
// posterior sample with eps from the step's generator; the held-out examples take the
// posterior mean, encode_mean, so they are fixed), teacher and student work on the scaled
// latents, and every round folder carries a copy of the autoencoder, so ddpm-sample decodes
// it like the run itself.
//
// Refused (ValueError): EDM-objective runs (no discrete DDIM grid), super-resolution models
// (the low-res condition is not provided), a teacher-steps / rounds pair that does not
// halve, data whose image shape does not fit the model (or its autoencoder), an --out folder
// that exists and is not empty without --overwrite. Every refusal comes before the first
// training step and touches nothing. Allowed with a note: eps-prediction teachers (the paper
// distils x0/v networks: an eps network's x^ at the first step divides by
// sqrt(alpha_bar_{T-1}), which amplifies errors) and learned-variance models (eta = 0 DDIM
// ignores the variance; its output channels are not trained, and the variance they give
// drifts with the shared features: sample the students with DDIM only).
//
// Output. Nothing finished is lost and nothing unfinished is seen: each round is published
// atomically as soon as it ends.
//   - Round 1 (round 0 of a guided run) publishes OUT itself (publish_directory: OUT/round_1 and OUT/distill.json
//     filled under a temporary name, then renamed into place). With --overwrite an existing
//     OUT is replaced at that moment, not before: a run stopped or failed in round 1 leaves
//     the old OUT as it was.
//   - Round k >= 2 publishes OUT/round_k (write_ema_model_folder: a temporary folder renamed
//     into place), THEN rewrites OUT/distill.json atomically. A crash between the two leaves
//     a complete round_k that distill.json does not list yet (it lags by at most one round;
//     it never lists a round that is not on disk).
//   OUT/round_k/config.json      the teacher's config (model, diffusion, data, train, and a
//                                latent run's autoencoder) plus "distillation": {round,
//                                sampling_steps K, sampler "ddim", clip_x0 false, teacher,
//                                teacher_steps, final_loss, gap_before, gap_after}: how it is
//                                sampled (models/run/distill_record.h, read by ddpm-sample)
//   OUT/round_k/ema.safetensors  the round's EMA weights (run::write_ema_model_folder, as
//                                ddpm-export --posthoc-ema writes them)
//   OUT/round_k/autoencoder/     latent teachers: the teacher's autoencoder, copied
//   OUT/distill.json             teacher, teacher_steps, the options, rounds_planned,
//                                rounds_done, complete, and per round its step counts (K),
//                                final loss, held-out gaps and seconds; "stopped" when a
//                                signal ended the run early (which signal, in which round,
//                                after how many steps); "resumed": [{round, step}] per
//                                --resume (the "stopped" of the run it continued is dropped)
//   OUT.distill-state/           BESIDE OUT, only while the run is incomplete: the saved state
//                                of the round in progress (distill_state.h; never inside OUT,
//                                so OUT lists only published rounds). Removed when the last
//                                round is published.
// `ddpm-sample --checkpoint OUT/round_k --sampler ddim --sampling-steps K_k` (--clip-x0 false
// is then its default, from the record) and ddpm-eval open a round folder like a checkpoint.
//
// Stop signals (models/run/stop_signals.h, as ddpm-train): on SIGINT or SIGTERM the step in
// progress finishes, the unfinished round is NOT published (a student halfway through a
// round is neither its teacher nor a trained student) but its state is saved (below), the
// rounds already published stay, distill.json records the stop, and distill_run returns
// with stopped_by_signal set after a line saying which rounds are complete and how to
// continue; ddpm-distill exits with 128 + the signal's number. A signal that arrives after
// a round's last step lets that round be published first.
//
// Resume (models/run/distill_state.h). The round in progress is saved to OUT.distill-state
// (published atomically, replacing the previous state) every checkpoint_every steps (0: no
// periodic saves), at the start of every round after the first (a guided run's first is stage
// 1), and when a stop signal ends the run: the student, its EMA, the AdamW moments and step
// count, the round's teacher, the step within the round, the losses and the loss window,
// gap_before, the generators and the loader position. `ddpm-distill --resume --out OUT`
// (options.resume) continues from it and ends with the bits an uninterrupted run ends with
// (round folders, losses; the seconds aside): stage 1 of guided distillation is saved and
// resumed as round 0 (its per-example w are draws of the saved draw generator; --guided and
// --guided-steps are saved options); the options come from the saved state; a flag in
// flags_given whose value differs from the saved one is refused (ValueError naming the flag and
// both values); --checkpoint-every and --device may change (the bits are the same on the same
// device only; --log-every may not: the final loss is the last logged window's mean). No state
// is a ValueError (nothing to resume; ddpm-distill exits 2); an incomplete or damaged one (a
// CRC, a JSON that does not parse or holds wrong types) and a state whose earlier rounds are
// gone from OUT are IoErrors. A complete OUT (distill.json "complete") is reported and left
// alone, returning its rounds (ddpm-distill exits 0: a scheduler's requeued job that always
// passes --resume then simply succeeds). A new run whose OUT has a saved state is refused
// without --overwrite (with it the state is replaced by the new run's first). A crash after a
// round is published but before the next round saves its state leaves a state older than OUT:
// the resumed run does the round's last steps again and republishes the same bits in place.
//
// No clamping of x^, for teacher and student alike, so the students are sampled with
// --clip-x0 false (ddpm-sample's default for a round folder, from its record): x~ (eq. 2) is an extrapolation that leaves [-1, 1] at high noise, and a student
// trained to hit it must not be clamped when sampled; the teacher's target steps are then the
// unclamped ones too (Algorithm 2 has no clamp). Measured on the tiny test teacher (8 training
// steps, T = 50, 10 -> 5 steps, 60 steps of batch 8): with clamped teacher steps and clamped
// sampling the held-out gap grew (8.0e-4 -> 2.0e-3); unclamped it shrank (2.2e-3 -> 2.7e-4).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/device.h"

namespace ddpm::run {

struct DistillOptions {
  std::string teacher;              // run folder, checkpoint folder, ... (model_source.h)
  std::int64_t teacher_steps = 0;   // the teacher's DDIM steps N
  int rounds = 1;
  std::int64_t steps_per_round = 1000;
  std::int64_t batch_size = 64;
  double lr = 1e-4;
  std::int64_t warmup_steps = 100;
  double grad_clip = 1.0;           // 0: off
  double ema_rate = 0.999;
  std::string data;                 // "": the teacher run's data spec
  double label_dropout = -1;        // < 0: the teacher run's class_dropout (0.1 when unknown)
  std::int64_t log_every = 100;
  std::int64_t gap_samples = 64;    // held-out examples of the one-step gap
  std::uint64_t seed = 0;
  // Guided distillation (guided_distill.h): "S_MIN,S_MAX", the range of guidance scales s
  // (ddpm-sample's units, w = s - 1) the students learn; "" = off. guided_steps: stage 1's
  // steps (0: steps_per_round). With it, rounds may be 0 (stage 1 only).
  std::string guided;
  std::int64_t guided_steps = 0;
  std::string out;
  bool overwrite = false;
  // The saved state of the round in progress (distill_state.h, "Resume" above): every this
  // many steps (0: only at round starts and on a stop signal).
  std::int64_t checkpoint_every = 1000;
  bool resume = false;                  // continue OUT from its saved state
  std::vector<std::string> flags_given;  // --resume: the flags the command line spelt out
  Device device = Device::cpu();
  std::function<void(const std::string&)> log;  // progress lines (null: silent)
};

struct DistillRound {
  int round = 0;  // 1-based; 0: stage 1 of guided distillation
  std::int64_t teacher_steps = 0, student_steps = 0;
  double final_loss = 0;  // mean loss of the last logged window
  // Held-out mean squared gap between one DDIM step and the teacher's two: of the round's
  // teacher itself at the halved grid (the undistilled baseline) and of the student's EMA.
  // Stage 1 of guided distillation: between x^ and the teacher's guided x^w (eq. 4), of the
  // teacher's conditional branch (the student at step 0) and of the student's EMA.
  double gap_before = 0, gap_after = 0;
  double seconds = 0;
  std::vector<double> losses;  // per step, NaN where a non-finite loss or gradient skipped it
  std::string folder;  // OUT/round_k
};

struct DistillResult {
  std::vector<DistillRound> rounds;  // the published rounds, in order
  int rounds_planned = 0;
  int stopped_by_signal = 0;         // SIGINT / SIGTERM that ended the run early; 0: it ran out
};

// ValueError naming the flag for a bad option (before anything is loaded).
void check_distill_options(const DistillOptions& o);

// Runs the rounds and publishes each as it ends (see above). ValueError for the refusals
// above, IoError for missing or damaged files.
DistillResult distill_run(const DistillOptions& o);

}  // namespace ddpm::run
