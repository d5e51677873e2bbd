// models/eval/eval_flags.h: ddpm-eval's command line, as a library so tests can parse argv
// (the program, apps/ddpm_eval.cpp, adds the common flags and calls run_eval_command).
//
// One subcommand per mode of eval_run.h, each bound to that mode's argument struct:
//
//   ddpm-eval train-classifier --data fashion-mnist --out classifier/
//   ddpm-eval fid --classifier classifier/ --samples samples.npz --data fashion-mnist --split test
//   ddpm-eval bpd --checkpoint RUN --data cifar10:DIR --split test --limit 100
//   ddpm-eval bpd --checkpoint RUN --data fashion-mnist --limit 64 --rate-distortion rd/ --rd-stride 10
//   ddpm-eval nll --checkpoint RUN --data cifar10:DIR --split test --limit 100 --ode-steps 32
//   ddpm-eval class-accuracy --classifier classifier/ --samples samples.npz
//   ddpm-eval analytic-gamma --checkpoint RUN --data fashion-mnist --num-images 256 --out gamma.json
//   ddpm-eval bpd --checkpoint RUN --data fashion-mnist --limit 64 --variance analytic --analytic-gamma gamma.json
//   ddpm-eval condition-gap --checkpoint RUN --data fashion-mnist --split train --limit 256 --json gap.json
//   ddpm-eval video --samples clips/samples.npz --data moving-fashion-mnist --limit 256 --json video.json
//   ddpm-eval train-video-classifier --data moving-fashion-mnist --out video_classifier/
//   ddpm-eval fvd --classifier video_classifier/ --samples clips/samples.npz --limit 256
//
// --data takes ddpm-train's spec (models/run/data_spec.h) read as a split; see
// parse_eval_data in eval_run.h. --data-dir is the old way to give the folder of
// fashion-mnist or cifar10: kept, listed under "Deprecated" in --help.
//
// Usage errors are CLI::ParseError from app.parse (exit 2 under apps/common/cli.h run):
// an unknown subcommand (the message names the word, lists the subcommands and suggests
// one within two edits: `ddpm-eval fdi` -> "did you mean fid?"), a missing subcommand, a
// stray word after the subcommand, a missing required flag, a number that is not one or
// is out of range, a --split other than train/test, and a --data (with --data-dir) that
// parse_eval_data refuses (a CLI::ValidationError carrying its sentence).
#pragma once

#include <cstdint>
#include <ostream>

#include <CLI/CLI.hpp>

#include "engine/device.h"
#include "models/eval/analytic_gamma_eval.h"
#include "models/eval/eval_run.h"
#include "models/eval/fvd.h"
#include "models/eval/nll_eval.h"

namespace ddpm::eval {

enum class EvalMode { train_classifier, fid, bpd, nll, class_accuracy, analytic_gamma, condition_gap,
                      video, train_video_classifier, fvd };

// The options of every subcommand, and the subcommands themselves once registered. The
// flags bind to these members by reference, so the object is neither copied nor moved.
struct EvalCommand {
  TrainClassifierArgs train_classifier;
  FidArgs fid;
  BpdArgs bpd;
  NllArgs nll;
  ClassAccuracyArgs class_accuracy;
  AnalyticGammaArgs analytic_gamma;
  ConditionGapArgs condition_gap;
  VideoEvalArgs video;
  TrainVideoClassifierArgs train_video_classifier;
  FvdArgs fvd;
  // Owned by the CLI::App given to add_eval_subcommands; null before.
  CLI::App* train_classifier_app = nullptr;
  CLI::App* fid_app = nullptr;
  CLI::App* bpd_app = nullptr;
  CLI::App* nll_app = nullptr;
  CLI::App* class_accuracy_app = nullptr;
  CLI::App* analytic_gamma_app = nullptr;
  CLI::App* condition_gap_app = nullptr;
  CLI::App* video_app = nullptr;
  CLI::App* train_video_classifier_app = nullptr;
  CLI::App* fvd_app = nullptr;

  EvalCommand() = default;
  EvalCommand(const EvalCommand&) = delete;
  EvalCommand& operator=(const EvalCommand&) = delete;

  // The subcommand app.parse found (ValueError when none was parsed).
  EvalMode mode() const;
};

// One subcommand's flags on `sub` (a CLI::App made with add_subcommand), bound to `a`.
void add_train_classifier_flags(CLI::App& sub, TrainClassifierArgs& a);
void add_fid_flags(CLI::App& sub, FidArgs& a);
void add_bpd_flags(CLI::App& sub, BpdArgs& a);
void add_nll_flags(CLI::App& sub, NllArgs& a);
void add_class_accuracy_flags(CLI::App& sub, ClassAccuracyArgs& a);
void add_analytic_gamma_flags(CLI::App& sub, AnalyticGammaArgs& a);
void add_condition_gap_flags(CLI::App& sub, ConditionGapArgs& a);
void add_video_eval_flags(CLI::App& sub, VideoEvalArgs& a);
void add_train_video_classifier_flags(CLI::App& sub, TrainVideoClassifierArgs& a);
void add_fvd_flags(CLI::App& sub, FvdArgs& a);

// Adds the ten subcommands to app (exactly one is required) and lets the app's own flags
// (--device, --seed, --config of apps/common/cli.h) also be given after the subcommand.
// A word that names no subcommand is a CLI::ExtrasError naming it and the subcommands.
void add_eval_subcommands(CLI::App& app, EvalCommand& c);

// Runs the parsed mode on `device` with `seed` (class-accuracy draws nothing at random),
// printing its report to out.
void run_eval_command(EvalCommand& c, Device device, std::uint64_t seed, std::ostream& out);

}  // namespace ddpm::eval
