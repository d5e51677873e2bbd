// models/eval/eval_flags.cpp: the subcommands of ddpm-eval and their flags (see eval_flags.h).
#include "models/eval/eval_flags.h"

#include <algorithm>
#include <string>
#include <vector>

#include "engine/error.h"
#include "models/run/subcommands.h"

namespace ddpm::eval {
namespace {

constexpr const char* kDataForms = "fashion-mnist[:DIR] | cifar10:DIR | toy | idx:IMAGES[,LABELS] | folder:DIR";

// What --help says under every subcommand: the common flags live on ddpm-eval itself.
constexpr const char* kCommonFooter =
    "--device, --seed, --tf32, --conv-algo and --config (see ddpm-eval --help) may also follow the subcommand.";

// And under every subcommand that reads a dataset.
constexpr const char* kDataFormsHelp =
    "  fashion-mnist[:DIR]   DIR defaults to /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist)\n"
    "  cifar10:DIR           the cifar-10-batches-bin folder\n"
    "  toy                   built-in 16x16 shapes, 4 classes, 2000 train / 500 test images\n"
    "  idx:IMAGES[,LABELS]   MNIST-style IDX files: one set, used as both splits\n"
    "  folder:DIR            PNGs, labels from class sub-folders: one set, used as both splits\n"
    "Older forms still accepted: --data toy-shapes (= toy), --data DIR (= folder:DIR), and\n"
    "--data fashion-mnist|cifar10 --data-dir DIR (= --data NAME:DIR; --data-dir is deprecated).\n";

// Number checks whose failures read as sentences (CLI11's PositiveNumber prints its range
// bounds, 1.8e308 in full).
CLI::Validator number_check(bool allow_zero) {
  return CLI::Validator(
      [allow_zero](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "'" + text + "' is not a number";
        if (allow_zero ? v >= 0 : v > 0) return "";
        return std::string(allow_zero ? "must be 0 or more" : "must be positive") + ", got " + text;
      },
      allow_zero ? "NONNEGATIVE" : "POSITIVE");
}
const CLI::Validator kPositive = number_check(false);
const CLI::Validator kNonNegative = number_check(true);

// A flag whose value must be positive (add_positive) or 0 or more (add_non_negative), its
// default shown in --help: most of ddpm-eval's numeric flags.
template <class T>
void add_positive(CLI::App& sub, const std::string& name, T& value, const std::string& help) {
  sub.add_option(name, value, help)->check(kPositive)->capture_default_str();
}
template <class T>
void add_non_negative(CLI::App& sub, const std::string& name, T& value, const std::string& help) {
  sub.add_option(name, value, help)->check(kNonNegative)->capture_default_str();
}

// --data, the deprecated --data-dir and, where the mode reads a split, --split; the pair is
// checked once the subcommand is parsed (parse_eval_data needs both), as a ParseError.
void add_data_flags(CLI::App& sub, std::string& data, std::string& data_dir, std::string* split) {
  sub.add_option("--data", data, kDataForms)->capture_default_str();
  if (split != nullptr)
    sub.add_option("--split", *split, "the split of --data: train | test")
        ->check(CLI::IsMember({"train", "test"}))
        ->capture_default_str();
  sub.add_option("--data-dir", data_dir,
                 "the folder of --data fashion-mnist or cifar10 (still works; write --data NAME:DIR instead)")
      ->group("Deprecated");
  sub.footer(std::string(split != nullptr ? "--data is ddpm-train's spec, read as the split --split names:\n"
                                          : "--data is ddpm-train's spec; the classifier trains on its train "
                                            "split and is tested on its test split:\n") +
             kDataFormsHelp + kCommonFooter);
  sub.callback([&data, &data_dir] {
    try {
      parse_eval_data(data, data_dir);
    } catch (const ValueError& e) {
      throw CLI::ValidationError("--data", strip_source_locations(e.what()));
    }
  });
}

}  // namespace

void add_train_classifier_flags(CLI::App& sub, TrainClassifierArgs& a) {
  add_data_flags(sub, a.data, a.data_dir, nullptr);  // trains on train, tests on test
  sub.add_option("--out", a.out, "output folder (model.safetensors + classifier.json)")->required();
  add_non_negative(sub, "--image-size", a.image_size, "input size; 0 = the data's size rounded up to a multiple of 8");
  add_positive(sub, "--width", a.base_channels, "channels of the first convolution (then 2x, 4x)");
  add_positive(sub, "--feature-dim", a.feature_dim, "size of the feature layer");
  add_positive(sub, "--epochs", a.epochs, "passes over the training split");
  add_positive(sub, "--batch-size", a.batch_size, "images per step");
  add_positive(sub, "--lr", a.lr, "AdamW learning rate (cosine-decayed to 0)");
  add_non_negative(sub, "--weight-decay", a.weight_decay, "AdamW decoupled weight decay");
  add_non_negative(sub, "--limit", a.limit, "train on the first N training images only (0 = all)");
  add_non_negative(sub, "--max-steps", a.max_steps, "stop after N steps (0 = all epochs)");
}

void add_fid_flags(CLI::App& sub, FidArgs& a) {
  sub.add_option("--classifier", a.classifier, "classifier folder from train-classifier")->required();
  sub.add_option("--samples", a.samples, "samples: .npz (\"images\" or arr_0, uint8 [N,H,W,C]) or a folder of PNGs")
      ->required();
  add_data_flags(sub, a.data, a.data_dir, &a.split);
  add_non_negative(sub, "--num-samples", a.num_samples, "use at most N samples (0 = all)");
  add_positive(sub, "--batch-size", a.batch_size, "images per classifier batch");
  add_positive(sub, "--kid-subsets", a.kid_subsets, "KID subsets");
  add_positive(sub, "--kid-subset-size", a.kid_subset_size, "KID subset size");
  add_positive(sub, "--k", a.k, "neighbour of the precision/recall radii");
  sub.add_flag("!--no-real-vs-real", a.real_vs_real, "skip the train-vs-split floor");
  sub.add_option("--sample-info", a.sample_info, "how the samples were drawn (sampler, steps, variance, EMA)");
}

void add_bpd_flags(CLI::App& sub, BpdArgs& a) {
  sub.add_option("--checkpoint", a.checkpoint, "run folder (latest checkpoint) or a checkpoint folder")->required();
  add_data_flags(sub, a.data, a.data_dir, &a.split);
  add_non_negative(sub, "--limit", a.limit, "first N images only (0 = all; each costs T network calls)");
  add_positive(sub, "--batch-size", a.batch_size, "images per batch");
  sub.add_flag("!--no-ema", a.ema, "use the raw weights instead of the EMA");
  sub.add_flag("!--no-clip", a.clip_x0, "do not clip the x_0 estimate to [-1, 1]");
  sub.add_option("--rate-distortion", a.rate_distortion,
                 "also write DDPM's rate-distortion curve (Ho et al. 2020, Fig. 5) from the same pass to the "
                 "folder DIR: rate_distortion.csv and rate_distortion.png")
      ->type_name("DIR");
  add_positive(sub, "--rd-stride", a.rd_stride,
               "--rate-distortion: write every N-th timestep (and t = T) to the CSV and plot; thins the output "
               "only, since the rate sums every KL term: all T network calls per image are made whatever N is");
  sub.add_flag("--overwrite", a.overwrite, "--rate-distortion: replace an existing non-empty DIR");
  sub.add_option("--variance", a.variance,
                 "reverse variance of a model that did not learn one: fixed_small | fixed_large | analytic "
                 "(Analytic-DPM, Bao et al. 2022: needs --analytic-gamma)")
      ->check(CLI::IsMember({"fixed_small", "fixed_large", "analytic"}))
      ->capture_default_str();
  sub.add_option("--analytic-gamma", a.analytic_gamma,
                 "--variance analytic: the Gamma file of ddpm-eval analytic-gamma for this model, at all T timesteps")
      ->type_name("FILE");
}

void add_analytic_gamma_flags(CLI::App& sub, AnalyticGammaArgs& a) {
  sub.add_option("--checkpoint", a.checkpoint, "run folder (latest checkpoint) or a checkpoint folder")->required();
  add_data_flags(sub, a.data, a.data_dir, &a.split);
  sub.add_option("--out", a.out, "the Gamma file to write (JSON)")->required()->type_name("FILE");
  add_positive(sub, "--num-images", a.num_images,
               "M: the first M images of the split (one noise draw each per timestep)");
  sub.add_option("--timesteps", a.timesteps,
                 "estimate only at a trajectory's timesteps, in ddpm-sample's respacing forms (\"100\", \"ddim50\", "
                 "\"10,15,20\"); default: all T (needed by bpd)");
  add_positive(sub, "--batch-size", a.batch_size, "images per network call");
  sub.add_flag("!--no-ema", a.ema, "use the raw weights instead of the EMA");
  sub.add_flag("--overwrite", a.overwrite, "replace an existing --out file");
}

void add_condition_gap_flags(CLI::App& sub, ConditionGapArgs& a) {
  sub.add_option("--checkpoint", a.checkpoint,
                 "class- or text-conditional run folder (latest checkpoint) or a checkpoint folder")
      ->required();
  add_data_flags(sub, a.data, a.data_dir, &a.split);
  add_non_negative(sub, "--limit", a.limit,
                   "the first N images of the split (0 = all; each costs 3 network calls per t)");
  add_positive(sub, "--batch-size", a.batch_size, "images per network call");
  sub.add_option("--timesteps", a.timesteps, "comma-separated timesteps t in [0, T) to evaluate at")
      ->capture_default_str();
  sub.add_option("--roll", a.roll,
                 "K: image i is also run with the condition of image (i + K) mod N (not a multiple of N)")
      ->capture_default_str();
  sub.add_option("--json", a.json, "also write the table to this JSON file")->type_name("FILE");
  sub.add_flag("--overwrite", a.overwrite, "replace an existing --json file");
  sub.add_flag("!--no-ema", a.ema, "use the raw weights instead of the EMA");
}

void add_video_eval_flags(CLI::App& sub, VideoEvalArgs& a) {
  sub.add_option("--samples", a.samples, "the clips ddpm-sample wrote for a video run: .npz, arr_0 uint8 [N, F, H, W, C]")
      ->required()
      ->type_name("FILE");
  add_non_negative(sub, "--max-shift", a.max_shift,
                   "S: motion_residual takes the best integer shift d in [-S, S]^2 between consecutive frames");
  sub.add_option("--data", a.data, "also measure real clips: ddpm-train's video spec, moving-toy | "
                                   "moving-fashion-mnist[:DIR]")
      ->type_name("SPEC");
  sub.add_option("--frames", a.frames, "--data: frames per clip (as ddpm-train's)")->capture_default_str();
  sub.add_option("--canvas", a.canvas, "--data: canvas size in pixels")->capture_default_str();
  sub.add_option("--item-size", a.item_size, "--data: item size in pixels")->capture_default_str();
  sub.add_option("--moving-items", a.moving_items, "--data: items per clip")->capture_default_str();
  add_non_negative(sub, "--limit", a.limit, "--data: its first M clips (0 = as many as --samples holds)");
  sub.add_option("--json", a.json, "also write the table to this JSON file")->type_name("FILE");
  sub.add_flag("--overwrite", a.overwrite, "replace an existing --json file");
  sub.footer(std::string("Rows: samples; shuffled (frame f of clip (i + f) mod N: real frames, unrelated "
                         "neighbours); data (with --data). --seed draws the --data clips.\n") +
             kCommonFooter);
}

// --data and the clip flags of the two FVD modes' real clips.
void add_clip_flags(CLI::App& sub, EvalClipOptions& c) {
  add_positive(sub, "--frames", c.frames, "frames per clip (as ddpm-train's)");
  add_positive(sub, "--canvas", c.canvas, "canvas size in pixels (a multiple of 8)");
  add_positive(sub, "--item-size", c.item_size, "item size in pixels");
  add_positive(sub, "--moving-items", c.moving_items, "items per clip");
}

void add_train_video_classifier_flags(CLI::App& sub, TrainVideoClassifierArgs& a) {
  sub.add_option("--data", a.data, "ddpm-train's video spec: moving-toy | moving-fashion-mnist[:DIR]")
      ->type_name("SPEC")
      ->capture_default_str();
  sub.add_option("--out", a.out, "output folder (model.safetensors + video_classifier.json)")
      ->required()
      ->type_name("DIR");
  add_clip_flags(sub, a.clips);
  add_positive(sub, "--width", a.base_channels, "channels of the first convolution (then 2x, 4x)");
  add_positive(sub, "--frame-dim", a.frame_dim, "size of the per-frame embedding");
  add_positive(sub, "--temporal-dim", a.temporal_dim, "channels of the temporal convolution");
  add_positive(sub, "--feature-dim", a.feature_dim, "size of the feature layer (the FVD features)");
  add_positive(sub, "--epochs", a.epochs, "passes over the training clips");
  add_positive(sub, "--batch-size", a.batch_size, "clips per step");
  add_positive(sub, "--lr", a.lr, "AdamW learning rate (cosine-decayed to 0)");
  add_non_negative(sub, "--weight-decay", a.weight_decay, "AdamW decoupled weight decay");
  add_non_negative(sub, "--limit", a.limit, "training clips (0 = one per training image)");
  add_non_negative(sub, "--test-limit", a.test_limit, "test clips (0 = one per test image)");
  add_non_negative(sub, "--max-steps", a.max_steps, "stop after N steps (0 = all epochs)");
  sub.add_flag("--overwrite", a.overwrite, "replace an existing non-empty --out folder");
  sub.footer(std::string("Targets: the clip's class and the compass direction (8 bins) of its first item's initial "
                         "velocity. Trains on clips of the source's train split, tests on clips of its test split; "
                         "--seed draws the clips and the network.\n") +
             kCommonFooter);
}

void add_fvd_flags(CLI::App& sub, FvdArgs& a) {
  sub.add_option("--classifier", a.classifier, "video classifier folder from train-video-classifier")
      ->required()
      ->type_name("DIR");
  sub.add_option("--samples", a.samples, "the clips ddpm-sample wrote for a video run: .npz, arr_0 uint8 [N, F, H, W, C]")
      ->required()
      ->type_name("FILE");
  sub.add_option("--data", a.data, "the real clips: moving-toy | moving-fashion-mnist[:DIR] (default: the classifier's)")
      ->type_name("SPEC");
  sub.add_option("--split", a.split, "the reference split of --data (the floor uses the other): train | test")
      ->check(CLI::IsMember({"train", "test"}))
      ->capture_default_str();
  add_non_negative(sub, "--limit", a.limit, "the first N sample clips only (0 = all); the real sets take as many");
  add_positive(sub, "--batch-size", a.batch_size, "clips per classifier batch");
  add_positive(sub, "--kid-subsets", a.kid_subsets, "KVD subsets");
  add_positive(sub, "--kid-subset-size", a.kid_subset_size, "KVD subset size");
  add_positive(sub, "--k", a.k, "neighbour of the precision/recall radii");
  sub.footer(std::string("Lines: samples; real (the other split: the floor); shuffled real (the floor clips with "
                         "their frames permuted, which must score worse than the floor). The real clips take the "
                         "classifier's clip shape; --seed draws them. Not comparable to published FVD (no I3D).\n") +
             kCommonFooter);
}

void add_nll_flags(CLI::App& sub, NllArgs& a) {
  sub.add_option("--checkpoint", a.checkpoint, "run folder (latest checkpoint) or a checkpoint folder (DDPM or EDM)")
      ->required();
  add_data_flags(sub, a.data, a.data_dir, &a.split);
  add_non_negative(sub, "--limit", a.limit, "first N images only (0 = all; each costs 2K network calls + VJPs)");
  add_positive(sub, "--batch-size", a.batch_size, "images per batch");
  sub.add_option("--ode-solver", a.ode_solver,
                 "heun (K fixed steps, 2K evaluations) | rk45 (adaptive Dormand-Prince, --rtol / --atol)")
      ->check(CLI::IsMember({"heun", "rk45"}))
      ->capture_default_str();
  add_positive(sub, "--ode-steps", a.ode_steps, "K Heun steps of the probability-flow ODE (2K evaluations)");
  add_positive(sub, "--rtol", a.rtol, "rk45: relative tolerance (Song et al.: 1e-5)");
  add_positive(sub, "--atol", a.atol, "rk45: absolute tolerance (Song et al.: 1e-5)");
  sub.add_option("--hutchinson", a.hutchinson,
                 "divergence estimator: rademacher | gaussian (Hutchinson probes), exact (tiny images only)")
      ->check(CLI::IsMember({"rademacher", "gaussian", "exact"}))
      ->capture_default_str();
  add_non_negative(sub, "--sigma-min", a.sigma_min,
                   "lowest noise level (0 = the schedule's smallest sigma; EDM 0.002)");
  add_non_negative(sub, "--sigma-max", a.sigma_max, "highest noise level (0 = the schedule's largest sigma; EDM 80)");
  sub.add_flag("--null-label", a.null_label,
               "class-conditional runs: use the null label instead of each image's label (text-conditioned "
               "runs: the empty caption instead of each image's caption); for runs trained with --class-dropout > 0");
  sub.add_flag("!--no-ema", a.ema, "use the raw weights instead of the EMA");
}

void add_class_accuracy_flags(CLI::App& sub, ClassAccuracyArgs& a) {
  sub.add_option("--classifier", a.classifier, "classifier folder from train-classifier")->required();
  sub.add_option("--samples", a.samples,
                 ".npz with \"images\" and \"labels\" (or arr_0, arr_1): the samples and their requested classes")
      ->required();
  sub.footer(kCommonFooter);
  add_positive(sub, "--batch-size", a.batch_size, "images per classifier batch");
}

void add_eval_subcommands(CLI::App& app, EvalCommand& c) {
  app.fallthrough();  // the app's flags (--device, --seed, --config) also work after the subcommand
  app.require_subcommand(1);
  run::add_unknown_word_check(app);  // names a mistyped subcommand instead of "A subcommand is required"
  c.train_classifier_app =
      app.add_subcommand("train-classifier", "train the feature network and save it with its test accuracy");
  add_train_classifier_flags(*c.train_classifier_app, c.train_classifier);
  c.fid_app = app.add_subcommand("fid", "FID, KID and precision/recall of samples against a real split");
  add_fid_flags(*c.fid_app, c.fid);
  c.bpd_app = app.add_subcommand("bpd", "bits/dim (variational bound) of a trained run on a split");
  add_bpd_flags(*c.bpd_app, c.bpd);
  c.nll_app = app.add_subcommand(
      "nll", "exact bits/dim through the probability-flow ODE (DDPM and EDM runs; Song et al. 2021)");
  add_nll_flags(*c.nll_app, c.nll);
  c.class_accuracy_app =
      app.add_subcommand("class-accuracy", "classifier accuracy on samples of each requested class");
  add_class_accuracy_flags(*c.class_accuracy_app, c.class_accuracy);
  c.analytic_gamma_app = app.add_subcommand(
      "analytic-gamma", "Analytic-DPM's Gamma_t = E||eps(x_t, t)||^2 / d on training images, for --variance analytic");
  add_analytic_gamma_flags(*c.analytic_gamma_app, c.analytic_gamma);
  c.condition_gap_app = app.add_subcommand(
      "condition-gap", "does a conditional run read its condition? its error with own, another image's and the "
                       "null condition");
  add_condition_gap_flags(*c.condition_gap_app, c.condition_gap);
  c.video_app = app.add_subcommand(
      "video", "temporal consistency of generated clips: frame difference, motion-compensated residual and "
               "mass drift, beside a frame-shuffled baseline and real clips");
  add_video_eval_flags(*c.video_app, c.video);
  c.train_video_classifier_app = app.add_subcommand(
      "train-video-classifier", "train the FVD feature network on moving-* clips (class and motion direction)");
  add_train_video_classifier_flags(*c.train_video_classifier_app, c.train_video_classifier);
  c.fvd_app = app.add_subcommand(
      "fvd", "Frechet video distance (and KVD) of clips on the home-made video network's features, with a real "
             "floor and a frame-shuffled line");
  add_fvd_flags(*c.fvd_app, c.fvd);
}

EvalMode EvalCommand::mode() const {
  if (train_classifier_app != nullptr && train_classifier_app->parsed()) return EvalMode::train_classifier;
  if (fid_app != nullptr && fid_app->parsed()) return EvalMode::fid;
  if (bpd_app != nullptr && bpd_app->parsed()) return EvalMode::bpd;
  if (nll_app != nullptr && nll_app->parsed()) return EvalMode::nll;
  if (class_accuracy_app != nullptr && class_accuracy_app->parsed()) return EvalMode::class_accuracy;
  if (analytic_gamma_app != nullptr && analytic_gamma_app->parsed()) return EvalMode::analytic_gamma;
  if (condition_gap_app != nullptr && condition_gap_app->parsed()) return EvalMode::condition_gap;
  if (video_app != nullptr && video_app->parsed()) return EvalMode::video;
  if (train_video_classifier_app != nullptr && train_video_classifier_app->parsed())
    return EvalMode::train_video_classifier;
  if (fvd_app != nullptr && fvd_app->parsed()) return EvalMode::fvd;
  DDPM_THROW(ValueError, "ddpm-eval: no subcommand was parsed; expected train-classifier, fid, bpd, nll, "
                         "class-accuracy, analytic-gamma, condition-gap, video, train-video-classifier or fvd");
}

void run_eval_command(EvalCommand& c, Device device, std::uint64_t seed, std::ostream& out) {
  switch (c.mode()) {
    case EvalMode::train_classifier:
      c.train_classifier.device = device;
      c.train_classifier.seed = seed;
      run_train_classifier(c.train_classifier, out);
      return;
    case EvalMode::fid:
      c.fid.device = device;
      c.fid.seed = seed;
      run_fid(c.fid, out);
      return;
    case EvalMode::bpd:
      c.bpd.device = device;
      c.bpd.seed = seed;
      run_bpd(c.bpd, out);
      return;
    case EvalMode::nll:
      c.nll.device = device;
      c.nll.seed = seed;
      run_nll(c.nll, out);
      return;
    case EvalMode::class_accuracy:
      c.class_accuracy.device = device;
      run_class_accuracy(c.class_accuracy, out);
      return;
    case EvalMode::analytic_gamma:
      c.analytic_gamma.device = device;
      c.analytic_gamma.seed = seed;
      run_analytic_gamma(c.analytic_gamma, out);
      return;
    case EvalMode::condition_gap:
      c.condition_gap.device = device;
      c.condition_gap.seed = seed;
      run_condition_gap(c.condition_gap, out);
      return;
    case EvalMode::video:
      c.video.seed = seed;
      run_video_eval(c.video, out);
      return;
    case EvalMode::train_video_classifier:
      c.train_video_classifier.device = device;
      c.train_video_classifier.seed = seed;
      run_train_video_classifier(c.train_video_classifier, out);
      return;
    case EvalMode::fvd:
      c.fvd.device = device;
      c.fvd.seed = seed;
      run_fvd(c.fvd, out);
      return;
  }
}

}  // namespace ddpm::eval
