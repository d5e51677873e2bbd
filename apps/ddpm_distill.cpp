// apps/ddpm_distill.cpp: ddpm-distill, progressive distillation (Salimans & Ho 2022) of a
// trained ddpm-train run into students that sample with 2x, 4x, 8x ... fewer DDIM steps;
// see models/run/distill_run.h.
//
//   ddpm-distill --teacher runs/cifar --teacher-steps 200 --rounds 3 --steps-per-round 5000 \
//       --batch-size 64 --lr 1e-4 --out distilled/
//   ddpm-sample --checkpoint distilled/round_3 --sampler ddim --sampling-steps 25 --out samples/
//   ddpm-distill --resume --out distilled/      # after a stop or a crash: the saved options
//
// Guided distillation (Meng et al. 2023) of a class-conditional teacher: --guided 1,5 first
// trains round_0 (stage 1: one network call gives the guided output for any scale in the
// range), then the rounds with the scale as an input; sample with --guidance-scale in [1, 5]:
//   ddpm-distill --teacher runs/cond --teacher-steps 64 --rounds 3 --guided 1,5 --out guided/
//   ddpm-sample --checkpoint guided/round_3 --sampler ddim --sampling-steps 8 --guidance-scale 3 --out s/
//
// Each round folder is published as soon as its round ends; Ctrl-C or SIGTERM finishes the
// step in progress, keeps the published rounds, saves the round in progress beside OUT
// (OUT.distill-state, also every --checkpoint-every steps) and exits with 128 + the signal's
// number; --resume continues it to the bits an uninterrupted run ends with.
//
// Consistency distillation (--method consistency, models/run/consistency_run.h): one folder
// OUT, sampled in K = 1 to a few network calls:
//   ddpm-distill --teacher runs/cifar --method consistency --consistency-levels 50 --steps 5000 --out cm/
//   ddpm-sample --checkpoint cm --sampler consistency --sampling-steps 2 --out s/
// A stopped consistency run saves its state beside OUT as well; --resume --out cm/ continues
// it (the state names the method) to the bits an uninterrupted run publishes.
#include <iostream>

#include "apps/common/cli.h"
#include "models/run/consistency_run.h"
#include "models/run/distill_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app(
      "Progressive distillation (Salimans & Ho 2022): train students that take in one DDIM step what the "
      "teacher takes in two, --rounds times; each round is published as OUT/round_k when it ends (a checkpoint "
      "folder for ddpm-sample --sampler ddim and ddpm-eval), and OUT/distill.json lists the rounds done.",
      "ddpm-distill");
  cli::CommonFlags common;
  run::DistillOptions o;
  app.add_option("--teacher", o.teacher,
                 "the ddpm-train run or checkpoint folder to distil (its EMA weights; DDPM objective, pixels or latents); "
                 "required unless --resume");
  app.add_option("--teacher-steps", o.teacher_steps,
                 "the teacher's DDIM step count N: must divide the model's T and be a multiple of 2^rounds; round k "
                 "samples with N / 2^k steps; required by --method progressive unless --resume");
  app.add_option("--rounds", o.rounds, "halvings of the step count (0 with --guided: stage 1 only)")
      ->capture_default_str();
  app.add_option("--steps-per-round", o.steps_per_round, "optimiser steps per round")->capture_default_str();
  app.add_option("--batch-size", o.batch_size, "images per step")->capture_default_str();
  app.add_option("--lr", o.lr, "AdamW learning rate (linear warm-up over --warmup-steps)")->capture_default_str();
  app.add_option("--warmup-steps", o.warmup_steps, "learning-rate warm-up steps of each round")->capture_default_str();
  app.add_option("--grad-clip", o.grad_clip, "max global gradient norm (0: off)")->capture_default_str();
  app.add_option("--ema-rate", o.ema_rate, "EMA decay of the student (with warm-up); the EMA is the next teacher")
      ->capture_default_str();
  app.add_option("--data", o.data,
                 "fashion-mnist[:DIR] | idx:IMAGES[,LABELS] | cifar10:DIR | folder:DIR | toy (default: the "
                 "teacher run's, with its padding, flip and toy count)");
  app.add_option("--label-dropout", o.label_dropout,
                 "class-conditional teachers: probability of the null label (default: the teacher run's "
                 "--class-dropout)");
  app.add_option("--guided", o.guided,
                 "S_MIN,S_MAX: guided distillation (Meng et al. 2023) of a class-conditional teacher for "
                 "ddpm-sample --guidance-scale s in [S_MIN, S_MAX] (S_MIN >= 1): stage 1 is published as round_0, "
                 "every student takes s as an input and samples with one network call per step; --rounds 0: "
                 "stage 1 only. Stage 1 trains a new, zero-initialised embedding of s: at 1,000 steps on the CPU "
                 "--lr 1e-4 left the student nearly blind to s, --lr 2e-3 followed it (docs/RESULTS.md). With --method "
                 "consistency: LCM's guided consistency distillation (the teacher's step guided at w = s - 1, the "
                 "student given w; one folder, sampled with --sampler consistency --guidance-scale s)");
  app.add_option("--guided-steps", o.guided_steps, "optimiser steps of stage 1 (default: --steps-per-round)");
  app.add_option("--log-every", o.log_every, "print the mean loss every this many steps")->capture_default_str();
  app.add_option("--gap-samples", o.gap_samples, "held-out examples of the one-step gap reported per round")
      ->capture_default_str();
  app.add_option("--out", o.out, "the folder to write: round_1 .. round_R (and round_0 with --guided) and distill.json")
      ->required();
  app.add_flag("--overwrite", o.overwrite, "replace an existing non-empty --out folder (and a stopped run's saved state)");
  app.add_option("--checkpoint-every", o.checkpoint_every,
                 "save the round in progress (--method consistency: the run) to OUT.distill-state every this many "
                 "steps (0: only at round starts and on a stop signal)")
      ->capture_default_str();
  app.add_flag("--resume", o.resume,
               "continue the stopped or crashed run in --out from its saved state, with its saved options and "
               "method (a flag given with a different value is refused); a complete run is reported and left alone "
               "(exit 0)");
  run::ConsistencyFlags consistency;  // --method consistency (consistency_run.h)
  run::add_consistency_flags(app, consistency);
  cli::add_common_flags(app, common);
  return cli::run(app, argc, argv, [&] {
    o.device = cli::resolve_device(common);
    o.seed = common.seed;
    for (const CLI::Option* opt : app.get_options())  // --resume refuses the ones that differ from the saved run
      if (opt->count() > 0) o.flags_given.push_back(opt->get_name());
    o.log = [](const std::string& line) { std::cout << line << std::endl; };
    if (const std::optional<int> rc = run::consistency_cli_main(app, o, consistency)) return *rc;
    const run::DistillResult r = run::distill_run(o);
    return r.stopped_by_signal != 0 ? 128 + r.stopped_by_signal : 0;  // as a shell reports a killed job
  });
}
