// models/run/toy_run.h: the library behind ddpm-toy, diffusion on 2-D point clouds for
// learning how the method works (docs/LEARN.md). Three subcommands:
//
//   train    the toy MLP denoiser (models/toy/mlp_denoiser.h) on a 2-D dataset
//            (models/toy/datasets2d.h) with the library's Trainer (models/train/trainer.h):
//            a fresh batch of data per step drawn from the trainer's generator (infinite
//            data), AdamW with linear warm-up over the first 100 steps (then --lr-schedule:
//            constant, or a linear / cosine decay to --lr-min by --steps, lr_schedule_flags.h),
//            gradient clipping at 1, EMA with warm-up (rate 0.995: a few thousand steps need a
//            short memory).
//            Writes a folder atomically (engine/io/atomic_file.h publish_directory):
//              DIR/config.json        {"architecture": "toy-mlp", "data", "model": {hidden,
//                                      layers, time_dim, num_classes}, "diffusion":
//                                      {diffusion_steps, noise_schedule, predict}, "train":
//                                      {..., class_dropout}}; a config without num_classes
//                                      (older folders) is an unconditional model
//            With --class-cond the MLP gets its class embedding (mlp_denoiser.h: K classes
//            of the dataset, datasets2d.h, plus the null label K) and the Trainer replaces a
//            batch's labels by the null label with probability --class-dropout (0.1; Ho &
//            Salimans train with 0.1 to 0.2): one network learns p(x | y) and p(x), the two
//            branches classifier-free guidance mixes.
//              DIR/model.safetensors  the trained weights by name (MlpDenoiser::parameters)
//              DIR/ema.safetensors    their EMA (what sample uses unless --no-ema)
//              DIR/loss.png           the loss chart (loss_plot.h), one point per --log-every steps
//            With --posthoc-ema S1,S2,... the Trainer also tracks power-function EMAs of those
//            relative widths (models/train/posthoc_ema.h, EDM2 sec. 3) and the folder gains
//              DIR/posthoc/step_N.safetensors  their snapshots every --posthoc-snapshot-every
//                                      steps and at the last (ddpm-train's format,
//                                      models/run/posthoc_export.h), held in memory and
//                                      published with the folder
//   sample   draws --num-samples points with one of the library's samplers (below), writes
//            OUT/samples.npz ("samples" f32 [N, 2], "data" f32 [N, 2]: the fresh data draws
//            it was scored against), OUT/scatter.png (data grey, samples coloured, title:
//            sampler and steps, caption: the score) and OUT/trajectory.png (up to six panels
//            of x along the reverse process: after the first step, when alpha_bar of the
//            state first reaches 0.1, 0.3, 0.6, 0.9, and the sample; each labelled with its
//            t or sigma and step count),
//            and prints the energy distance (models/toy/energy_distance.h) of the samples to
//            fresh data and the floor: two fresh data draws of the same size against each other.
//            A class-conditional model samples unconditionally (the null label) unless given
//            --class K (every sample class K) or --class all (sample i gets class i mod K:
//            equal counts up to one); then --guidance-scale s mixes the branches,
//            eps = eps_u + s (eps_c - eps_u) (sampler.h; s = 1 plain conditional, 0
//            unconditional), samples.npz gains "labels" (i64 [N], the requested classes),
//            scatter.png colours the samples by class, and a per-class table is printed
//            (count, accuracy, spread, energy distance to the class's data;
//            models/toy/class_metrics.h against 4000 fresh labelled data points).
//            --autoguide GUIDE (a ddpm-toy train folder of the same dataset and diffusion,
//            e.g. trained for fewer steps) with --guidance-scale w: autoguidance (guidance.h),
//            pred = pred_guide + w (pred_model - pred_guide), with or without --class.
//            --guidance-interval LO,HI limits either guidance to sigma in [LO, HI].
//   guidance one class of a class-conditional model sampled at several classifier-free
//            guidance scales from the same seed (the same x_T): OUT/guidance.png, a strip
//            with one panel per scale, OUT/guidance.csv and a printed table of scale ->
//            accuracy, spread and energy distance to the class's data
//            (models/toy/class_metrics.h), the guidance trade-off of Ho & Salimans 2022.
//            Panels share the seed and DDIM (50 steps) is the default sampler, so each
//            point's path changes with s alone. --guidance-interval LO,HI applies the
//            guidance only at sigma = sqrt((1 - abar) / abar) in [LO, HI] (guidance.h).
//   classifier  trains the noisy classifier p(y | x_t, t) of classifier guidance
//            (models/toy/noisy_mlp_classifier.h, classifier_training.h) on a model folder's
//            dataset and diffusion: CDIR/classifier.json ({"architecture":
//            "toy-mlp-classifier", data, num_classes, hidden, layers, time_dim, diffusion:
//            {diffusion_steps, noise_schedule}, train}) and CDIR/classifier.safetensors;
//            prints its accuracy on fresh noisy points at five t. sample --classifier CDIR
//            --class K --classifier-scale s (and guidance --classifier CDIR, which then varies
//            the classifier scale on the unconditional model) follow its gradient
//            (classifier_guidance.h: the DDPM mean shifted by s Sigma grad log p(y | x_t),
//            DDIM's eps by -sqrt(1 - abar) s grad); ddpm and ddim only.
//   distill  progressive distillation (models/toy/distill.h, Salimans & Ho 2022) of a model
//            folder: --rounds R halvings of DDIM's step count from --teacher-steps N
//            (= 2^R M + 1; the sampler's N steps are N - 1 intervals plus the last t = 0 ->
//            clean step). Writes OUT/round1 .. OUT/roundR, each a model folder as train's (the
//            student's EMA in ema.safetensors; config.json's "train" says "distill" and the
//            step count it was distilled for), and OUT/distill.csv: per round the steps, the
//            one-step-vs-two-teacher-steps gap before and after, and the energy distance
//            of the original teacher and of the student at the student's step count (DDIM).
//            `sample --sampler ddim --sampling-steps (N - 1)/2^r + 1` reads OUT/round<r>.
//   posthoc  post-hoc EMA (toy_posthoc.cpp): for each of --sigma-rels, the EMA of that
//            relative width reconstructed from a train --posthoc-ema folder's snapshots
//            (posthoc_export.h), sampled with sample's default sampler and seed (the same
//            noise for every row) and scored like sample; the raw weights and the classic
//            EMA are reference rows. OUT/posthoc.csv (weights, sigma_rel, residual, energy,
//            floor), OUT/posthoc.png (one panel per row) and a table with the best row marked.
//   forward  the forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (DDPM eq. 4)
//            applied to a data draw at six t, one panel each with t and alpha_bar_t printed:
//            OUT/forward.png.
//
// The samplers (--sampler; K = --sampling-steps):
//   ddpm             ancestral DDPM (sampler.h), fixed-small variance, K respaced steps
//   ddim             DDIM eta = 0 (sampler.h), K respaced steps
//   plms             PLMS (plms.h) on the DDIM grid "ddimK" when K divides T, else "K"
//   heun, euler, euler-ancestral, dpm++2m
//                    the Karras-level solvers on the VP-to-sigma conversion (karras.h), K levels
//                    (heun: 2K - 1 network evaluations, the others K)
// None of them clips the x_0 estimate: the data have unit variance and reach beyond [-1, 1]
// (the clamp of sampler.h is meant for images scaled to [-1, 1]).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/schedule.h"
#include "models/run/lr_schedule_flags.h"
#include "models/toy/class_metrics.h"
#include "models/toy/classifier_training.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/posthoc_ema.h"

namespace ddpm::run {

inline constexpr const char* kToyArchitecture = "toy-mlp";

struct ToyTrainArgs {
  std::string data = "gaussians8";
  std::string out;
  bool overwrite = false;
  std::int64_t steps = 4000;
  std::int64_t batch_size = 256;
  double lr = 1e-3;
  LrScheduleFlags lr_schedule;  // after the 100 warm-up steps (lr_schedule_flags.h)
  std::int64_t hidden = 128;
  int layers = 3;
  std::int64_t diffusion_steps = 200;
  std::string noise_schedule = "linear";
  std::string predict = "eps";
  double ema_rate = 0.995;
  std::int64_t log_every = 100;
  bool class_cond = false;      // train p(x | y) with the dataset's classes (and the null label)
  double class_dropout = 0.1;   // probability of the null label per sample (class_cond only)
  std::string posthoc_ema;      // --posthoc-ema "0.05,0.10": power EMAs to snapshot ("" = none)
  std::int64_t posthoc_snapshot_every = 0;  // 0: toy_posthoc_every's default
  std::uint64_t seed = 0;
};

// The snapshot interval of --posthoc-snapshot-every: the flag, or when 0 steps / 16 (at
// least 1), so a default run keeps 16 snapshots, plenty for the reconstruction (EDM2 keeps
// a few hundred over a long run; the toy's width grid is coarse, the mixing still exact).
std::int64_t toy_posthoc_every(const ToyTrainArgs& a);

// A toy model in memory: the network, its parameter slab and the diffusion it was trained for.
struct ToyModel {
  std::string data;
  std::unique_ptr<toy::MlpDenoiser> net;
  ParameterSlab slab;
  std::vector<double> betas;  // the training schedule's betas
  std::int64_t diffusion_steps = 0;
  diffusion::NoiseSchedule noise_schedule = diffusion::NoiseSchedule::linear;
  diffusion::ModelMeanType predict = diffusion::ModelMeanType::eps;
  int num_classes = 0;  // > 0: class-conditional (the dataset's classes; null label = num_classes)
};

// ValueError unless `out` is absent, an empty folder, or overwrite is set (and a folder).
void check_toy_out_folder(const std::string& out, bool overwrite);

// ValueError (one sentence naming the flag) for a bad value of any train flag.
void check_toy_train_args(const ToyTrainArgs& a);
// An untrained model for these args (weights from Generator(seed)).
ToyModel make_toy_model(const ToyTrainArgs& a);

// One post-hoc EMA snapshot held in memory until the folder is published: the power EMAs'
// values after `step` trainer steps and `updates` AdamW updates (their t; fewer than step only
// when non-finite steps were skipped).
struct ToyPosthocSnapshot {
  std::int64_t step = 0, updates = 0;
  std::vector<train::PowerEma> emas;  // copies, in --posthoc-ema order
};

struct ToyTrainReport {
  std::vector<std::int64_t> log_steps;  // the step count of each logged point
  std::vector<double> log_losses;       // the mean loss over the steps since the previous point
  double seconds = 0;
  Tensor ema;  // the EMA weights, flat in m.slab's layout
  std::vector<ToyPosthocSnapshot> posthoc;  // with --posthoc-ema: every toy_posthoc_every steps and the last
};
// Trains m in place for a.steps steps; `log` gets a progress line per logged point.
ToyTrainReport train_toy_model(ToyModel& m, const ToyTrainArgs& a,
                               const std::function<void(const std::string&)>& log = {});

// The sampler names, in the order of the header.
const std::vector<std::string>& toy_sampler_names();

// What sample_toy reports per step: the state x after `done` of `total` steps and its noise
// level, as a short label ("t=57", "sigma=0.31", "sample" after the last step).
using ToyStepFn = std::function<void(std::int64_t done, std::int64_t total, const Tensor& x, const std::string& label)>;

// The noise level of the state after k = 1..K steps of `sampler` (index k - 1): its signal
// fraction alpha_bar (1 / (1 + sigma^2) on the Karras levels) and a label ("t=57",
// "sigma=0.31"); after the last step alpha_bar = 1 and the label is "sample".
struct ToyStepLevels {
  std::vector<double> alpha_bar;
  std::vector<std::string> label;
};
ToyStepLevels toy_step_levels(const ToyModel& m, const std::string& sampler, std::int64_t K);

// A noisy classifier in memory (the `classifier` folder of the header).
struct ToyClassifier {
  std::string data;
  std::int64_t diffusion_steps = 0;
  diffusion::NoiseSchedule noise_schedule = diffusion::NoiseSchedule::linear;
  std::unique_ptr<toy::NoisyMlpClassifier> net;
};

// What to condition the samples on: no labels (unconditional; a class-conditional model is
// then called with the null label), or one class per sample, guided with scale s; with a
// classifier, its gradient towards the same labels as well (an unconditional model then
// takes the labels only through the classifier).
struct ToyConditioning {
  std::vector<std::int64_t> labels;      // empty or [n], each in [0, num_classes)
  double guidance_scale = 1.0;           // classifier-free guidance s (sampler.h); needs labels
  const ToyClassifier* classifier = nullptr;  // classifier guidance (ddpm and ddim only)
  double classifier_scale = 1.0;         // its scale s (0: off)
  // Autoguidance (guidance.h, Karras et al. 2024): a weaker toy of the same dataset and
  // diffusion (e.g. trained for fewer steps) replaces the unconditional branch; then
  // guidance_scale is w, pred = pred_guide + w (pred_model - pred_guide), also without labels.
  const ToyModel* autoguide = nullptr;
  // Guidance interval (guidance.h, Kynkaanniemi et al. 2024): guide only at noise levels
  // sigma = sqrt((1 - alpha_bar) / alpha_bar) in [lo, hi]; the default is every step.
  double guidance_sigma_lo = 0.0;
  double guidance_sigma_hi = std::numeric_limits<double>::infinity();
};

// ValueError naming the first difference that keeps `guide` from autoguiding `m`: the
// dataset, T, noise schedule, prediction type and class conditioning must agree.
void check_toy_autoguide_fits(const ToyModel& m, const ToyModel& guide);

// n samples [n, 2] from the model with `sampler` in K steps (see the header); ValueError for
// an unknown sampler, K outside [1, T], labels for an unconditional model or out of range,
// or a guidance scale without labels. on_step (optional) sees every step.
Tensor sample_toy(const ToyModel& m, const std::string& sampler, std::int64_t K, std::int64_t n, Generator& gen,
                  const ToyStepFn& on_step = {}, const ToyConditioning& cond = {});

// The labels of --class: "all" gives sample i class i mod K, an integer k every sample
// class k; ValueError (naming the flag) for an unconditional model, k outside [0, K) or
// another word.
// With a classifier the classes are the classifier's (an unconditional model may use them).
std::vector<std::int64_t> toy_class_labels(const ToyModel& m, const std::string& class_flag, std::int64_t n,
                                           const ToyClassifier* classifier = nullptr);

struct ToyClassifierArgs {
  std::string checkpoint, out;
  bool overwrite = false;
  std::int64_t hidden = 64;
  int layers = 2;
  toy::NoisyClassifierTrainArgs train;
};
// The classifier folder: save (atomically) and load; IoError naming the file for a missing or
// damaged folder.
void save_toy_classifier(const ToyClassifier& c, const nlohmann::json& train_info, const std::string& dir,
                         bool overwrite);
ToyClassifier load_toy_classifier(const std::string& dir);
// A classifier for model m's dataset and diffusion, untrained (weights from Generator(seed)).
ToyClassifier make_toy_classifier(const ToyModel& m, std::int64_t hidden, int layers, std::uint64_t seed);
void run_toy_classifier(const ToyClassifierArgs& a, std::ostream& out);

// The folder of `train` (see the header): save and load. load_toy_model takes the EMA
// weights unless raw; IoError naming the file for a missing or damaged folder. Post-hoc EMA
// snapshots go to DIR/posthoc/step_N.safetensors, published with the rest of the folder.
void save_toy_model(const ToyModel& m, const Tensor& ema, const nlohmann::json& train_info,
                    const std::vector<std::uint8_t>& loss_png_rgb, int png_height, int png_width,
                    const std::string& dir, bool overwrite, const std::vector<ToyPosthocSnapshot>& posthoc = {});
ToyModel load_toy_model(const std::string& dir, bool raw);

struct ToySampleArgs {
  std::string checkpoint, out, sampler = "ddpm";
  std::int64_t sampling_steps = 0;  // 0: T for ddpm, 50 for the others
  std::int64_t num_samples = 2000;
  bool no_ema = false, overwrite = false;
  std::string class_label;      // --class: "" (none), "all" or a class index
  double guidance_scale = 1.0;  // --guidance-scale (needs --class)
  std::string classifier;       // --classifier: a folder of ddpm-toy classifier
  double classifier_scale = 1.0;  // --classifier-scale (needs --classifier)
  std::string autoguide;          // --autoguide: a weaker ddpm-toy train folder (guidance.h)
  std::string guidance_interval;  // --guidance-interval LO,HI in sigma ("" = every step)
  std::uint64_t seed = 0;
};
struct ToyGuidanceArgs {
  std::string checkpoint, out, sampler = "ddim";
  std::int64_t class_label = -1;  // required
  std::string scales = "0,1,2,4,8";
  std::string classifier;  // set: the scales are classifier-guidance scales on the unconditional model
  std::string guidance_interval;  // --guidance-interval LO,HI: CFG only at sigma in [LO, HI]
  std::int64_t sampling_steps = 50;
  std::int64_t num_samples = 1000;
  bool no_ema = false, overwrite = false;
  std::uint64_t seed = 0;
};
// One row of the guidance table: the class's numbers (models/toy/class_metrics.h) at one
// scale, and the energy distance's floor for the class (a second fresh draw of its data, as
// many points as samples, against the reference's).
struct ToyGuidanceRow {
  double scale = 0, accuracy = 0, spread = 0, energy = 0, floor = 0;
};
struct ToyScore {
  double energy = 0, floor = 0;
  std::vector<toy::ClassStats> per_class;  // with --class: one entry per class (count 0: not drawn)
};
struct ToyForwardArgs {
  std::string data = "gaussians8", out;
  std::int64_t diffusion_steps = 200, num_points = 2000;
  std::string noise_schedule = "linear";
  bool overwrite = false;
  std::uint64_t seed = 0;
};

void run_toy_train(const ToyTrainArgs& a, std::ostream& out);
// A stream seed derived from a run seed, one per use (`sample` scores against stream 1's
// data draw and its floor against stream 2's; ddpm-toy distill uses the same streams).
std::uint64_t derived_seed(std::uint64_t seed, std::uint64_t stream);
ToyScore run_toy_sample(const ToySampleArgs& a, std::ostream& out);
void run_toy_forward(const ToyForwardArgs& a, std::ostream& out);
std::vector<ToyGuidanceRow> run_toy_guidance(const ToyGuidanceArgs& a, std::ostream& out);

struct ToyDistillArgs {
  std::string teacher, out;
  bool overwrite = false, no_ema = false;
  int rounds = 6;
  std::int64_t teacher_steps = 65;
  std::int64_t steps = 2000, batch_size = 256;
  double lr = 5e-4, ema_rate = 0.995;
  std::int64_t eval_samples = 2000;  // energy-distance points per model and step count (0: skip)
  std::uint64_t seed = 0;
};
// One row of OUT/distill.csv (energies NaN with eval_samples = 0).
struct ToyDistillRow {
  std::int64_t round = 0, teacher_steps = 0, student_steps = 0;
  double gap_before = 0, gap_after = 0, teacher_energy = 0, student_energy = 0, floor = 0, seconds = 0;
};
std::vector<ToyDistillRow> run_toy_distill(const ToyDistillArgs& a, std::ostream& out);

struct ToyPosthocArgs {
  std::string checkpoint, out, sampler = "ddpm";
  std::string sigma_rels = "0.02,0.05,0.08,0.12,0.2";
  std::int64_t posthoc_step = 0;    // the training step of the reconstructions; 0: the last snapshot
  std::int64_t sampling_steps = 0;  // 0: as sample (T for ddpm, 50 for the others)
  std::int64_t num_samples = 2000;
  bool overwrite = false;
  std::uint64_t seed = 0;
};
// One row of OUT/posthoc.csv. kind: "raw" (model.safetensors; sigma_rel 0, the last iterate),
// "ema" (ema.safetensors; sigma_rel the classic EMA's equivalent width, see toy_posthoc.cpp)
// or "posthoc" (reconstructed; residual = the profile fit's relative residual, NaN otherwise).
struct ToyPosthocRow {
  std::string kind;
  double sigma_rel = 0, residual = 0, energy = 0, floor = 0;
};
std::vector<ToyPosthocRow> run_toy_posthoc(const ToyPosthocArgs& a, std::ostream& out);

// ddpm-toy's subcommands, bound to the args; the mode is whichever was parsed.
struct ToyCommand {
  ToyTrainArgs train;
  ToySampleArgs sample;
  ToyForwardArgs forward;
  ToyGuidanceArgs guidance;
  ToyClassifierArgs classifier;
  ToyDistillArgs distill;
  ToyPosthocArgs posthoc;
  CLI::App* posthoc_app = nullptr;
  CLI::App* train_app = nullptr;
  CLI::App* distill_app = nullptr;
  CLI::App* classifier_app = nullptr;
  CLI::App* guidance_app = nullptr;
  CLI::App* sample_app = nullptr;
  CLI::App* forward_app = nullptr;
};
void add_toy_subcommands(CLI::App& app, ToyCommand& c);
// The distill subcommand's flags (toy_distill_run.cpp; add_toy_subcommands calls it).
void add_toy_distill_subcommand(CLI::App& app, ToyCommand& c);
// The posthoc subcommand's flags (toy_posthoc.cpp), and the train flags it reads.
void add_toy_posthoc_subcommand(CLI::App& app, ToyCommand& c);
void run_toy_command(ToyCommand& c, std::uint64_t seed, std::ostream& out);

}  // namespace ddpm::run
