// models/eval/eval_run.h: the library behind `ddpm-eval` (the program is a thin CLI shell).
//
// Modes:
//   train-classifier  trains the feature network on a dataset's train split, saves it
//                     (models/eval/classifier.h) with its test accuracy
//   fid               FID, KID (mean and std over subsets) and precision/recall between
//                     generated samples and a real split, on the classifier's features,
//                     with a real-vs-real floor (train split vs the reference split, same
//                     counts) and a noise line (uniform random images) as sanity bounds
//   bpd               bits/dim of a trained run on a split (models/eval/bpd_eval.h); a
//                     text-conditioned run is conditioned on each image's caption
//                     (models/eval/caption_condition.h), as nll's is; and with
//                     --rate-distortion DDPM's rate-distortion curve from the same pass
//                     (models/eval/rate_distortion.h)
//   nll               exact bits/dim through the probability-flow ODE, DDPM and EDM runs
//                     (models/eval/nll_eval.h)
//   class-accuracy    the classifier's accuracy on labelled samples, per requested class
//   condition-gap     how much a class- or text-conditional run reads its condition: the
//                     training error with each image's own, another image's and the null
//                     condition (models/eval/condition_gap.h)
//   video             temporal consistency of generated clips: frame difference, motion-
//                     compensated residual and mass drift (models/eval/video_metrics.h) of
//                     the samples, of the same frames shuffled across clips, and of real clips
//   train-video-classifier, fvd
//                     the Frechet video distance on a home-made video network: models/eval/fvd.h
// Every report names the feature network, the sample count and the reference split.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "models/data/dataset.h"
#include "models/diffusion/schedule.h"
#include "models/eval/bpd_eval.h"
#include "models/eval/condition_gap.h"
#include "models/eval/metrics.h"
#include "models/eval/rate_distortion.h"
#include "models/eval/video_metrics.h"
#include "models/run/data_spec.h"
#include "models/text/text_conditioned.h"
#include "models/unet/unet.h"

namespace ddpm::eval {

// --data of ddpm-eval: ddpm-train's spec (models/run/data_spec.h), read as a split.
//   fashion-mnist[:DIR]   the train or test split (DIR defaults to the Debian package's folder)
//   cifar10:DIR           data_batch_1..5.bin (train) or test_batch.bin (test)
//   toy                   built-in shapes, 16x16, 4 classes: 2000 train / 500 test images
//   idx:IMAGES[,LABELS]   one set of images, used as both splits (--split does not apply)
//   folder:DIR            PNGs (labels from class sub-folders), one set used as both splits
// Older forms, kept so existing command lines work: "toy-shapes" (= toy), a bare existing
// folder (= folder:DIR), and data_dir (--data-dir, deprecated) completing a bare
// "fashion-mnist" or "cifar10" (= NAME:DIR). ValueError, as a sentence naming the flags,
// for anything else (a cifar10 without a folder, a folder given twice, an unknown name).
run::DataSpec parse_eval_data(const std::string& data, const std::string& data_dir = "");

// The `split` ("train" or "test") of parse_eval_data(data, data_dir), named as its loader
// names it ("fashion-mnist/test", "cifar10/test", "toy-shapes/test", or the path).
Dataset load_eval_dataset(const std::string& data, const std::string& split, const std::string& data_dir = "");
// The same, zero-padded to a model's image_size when its images are smaller (Fashion-MNIST's
// 28x28 for a --pad-to-32 model), as the model saw them in training.
Dataset load_eval_images(const std::string& data, const std::string& split, const std::string& data_dir,
                         int image_size);

// data and data_dir: parse_eval_data's arguments (data_dir: the deprecated --data-dir).
struct TrainClassifierArgs {
  std::string data = "fashion-mnist", data_dir, out;
  int image_size = 0;          // 0: the dataset's size rounded up to a multiple of 8 (pad_to)
  int base_channels = 16, feature_dim = 128;
  int epochs = 2;
  std::int64_t batch_size = 64;
  double lr = 2e-3, weight_decay = 1e-4;
  std::int64_t limit = 0;      // > 0: train on the first `limit` training images only
  std::int64_t max_steps = 0;  // > 0: stop early (tests)
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};
struct TrainClassifierResult {
  double test_accuracy = 0, seconds = 0;
  std::vector<double> losses;
};
TrainClassifierResult run_train_classifier(const TrainClassifierArgs& a, std::ostream& out);

struct FidArgs {
  std::string classifier, samples, data = "fashion-mnist", data_dir, split = "test";
  std::int64_t num_samples = 0;  // > 0: use at most this many samples
  std::int64_t batch_size = 256;
  int kid_subsets = 10;
  std::int64_t kid_subset_size = 1000;
  int k = 3;
  bool real_vs_real = true;      // also print the train-vs-split floor
  std::string sample_info;       // sampler / steps / variance / EMA of the samples, printed
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};
struct QualityLine {
  std::string label;
  std::int64_t n = 0;
  double fid = 0;
  KidResult kid;
  PrecisionRecall pr;
};
struct FidResult {
  QualityLine samples, real_vs_real, noise;
};
// Compares two feature sets with every metric.
QualityLine compare_features(const std::string& label, const FeatureMatrix& real, const FeatureMatrix& other,
                             const FidArgs& a);
FidResult run_fid(const FidArgs& a, std::ostream& out);

struct ClassAccuracyArgs {
  std::string classifier, samples;
  std::int64_t batch_size = 256;
  Device device = Device::cpu();
};
struct ClassAccuracyResult {
  double overall = 0;
  std::vector<std::int64_t> count, correct;  // per requested class
};
ClassAccuracyResult run_class_accuracy(const ClassAccuracyArgs& a, std::ostream& out);

// A trained diffusion model opened for evaluation.
struct EvalModel {
  std::unique_ptr<unet::UNet> net;
  // A text-conditioned run (model_source.h ModelSource::text): its encoder, tokenizer and the
  // view over them and net; all null for other models.
  std::unique_ptr<text::TextEncoder> text_encoder;
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::unique_ptr<text::TextConditionedUNet> text;
  std::unique_ptr<diffusion::DiffusionSchedule> schedule;
  std::shared_ptr<const diffusion::GammaCurve> vdm_curve;  // a VDM run's schedule (bpd only); else null
  diffusion::NoiseSchedule noise_schedule = diffusion::NoiseSchedule::linear;  // the schedule's name
  BpdEvalOptions options;  // mean type, learned sigma, variance, classes
  std::string description; // "RUN/checkpoints/step_N (ema), T=1000 cosine, eps, learned_range"
};
// Opens RUN (its latest checkpoint) or a checkpoint folder RUN/checkpoints/step_N: the
// UNet from RUN/config.json "model", the schedule and output type from its "diffusion"
// section (keys diffusion_steps, noise_schedule, mean_type, variance; improved-diffusion
// defaults when absent), the weights from ema.safetensors (or model.safetensors). An EDM run
// is a ValueError starting with `mode` (it has no discrete bound).
EvalModel load_eval_model(const std::string& run_or_checkpoint, bool ema, Device device,
                          const std::string& mode = "bpd");

// bpd, and with rate_distortion = DIR also DDPM's rate-distortion curve from the same pass
// (models/eval/rate_distortion.h), published atomically as the folder DIR (replacing an
// existing one only with overwrite; a non-empty DIR is refused before any work):
//   DIR/rate_distortion.csv   t, term_bpd, rate_bpd, distortion_rmse: t = T and every
//                             rd_stride-th t down to 0
//   DIR/rate_distortion.png   Figure 5's three panels
// and a summary after the bits/dim line: the lossy end point t = 1, and the rate at which
// the distortion first falls below 10, 5 and 1 RMSE. EDM runs have no discrete bound: ValueError.
// variance: the reverse variance of a model that did not learn one, fixed_small (the default),
// fixed_large or analytic (Analytic-DPM, analytic_variance.h), which needs analytic_gamma: a
// Gamma file of ddpm-eval analytic-gamma covering all T timesteps, made for this model's schedule.
struct BpdArgs {
  std::string checkpoint, data = "fashion-mnist", data_dir, split = "test";
  std::string variance = "fixed_small";
  std::string analytic_gamma;
  bool ema = true;
  bool clip_x0 = true;
  std::int64_t limit = 0, batch_size = 16;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
  std::string rate_distortion;  // empty: bits/dim only
  std::int64_t rd_stride = 1;
  bool overwrite = false;
};
BpdEvalReport run_bpd(const BpdArgs& a, std::ostream& out);

// condition-gap (condition_gap.h) of a class-conditional run (each image's label) or a
// text-conditioned one (each image's caption, as bpd gets them: caption_condition.h), printed
// as a table, one row per timestep, and a summary line with the gap averaged over them; with
// json = FILE also written there (atomically; an existing FILE only with overwrite). Refused
// (ValueError, before any work, nothing written): an unconditional model, an EDM, latent or
// super-resolution run, a --timesteps that is not a comma-separated list of integers in
// [0, T), a --roll that is 0 modulo the image count, an existing --json FILE.
struct ConditionGapArgs {
  std::string checkpoint, data = "fashion-mnist", data_dir, split = "test";
  std::string timesteps = "100,300,500,700,900";
  std::int64_t roll = 7;
  std::int64_t limit = 256, batch_size = 64;
  bool ema = true;
  std::string json;  // empty: the table only
  bool overwrite = false;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};
ConditionGapReport run_condition_gap(const ConditionGapArgs& a, std::ostream& out);

// The report file `path` of a mode's `flag` (--json, --out) may be written: ValueError naming
// the mode and flag when it is a folder, or exists and `overwrite` is false. "" passes.
void check_report_file(const std::string& path, const char* flag, bool overwrite, const std::string& mode);

// video (video_metrics.h) of the clips in `samples` (load_sample_clips), of the "shuffled"
// reference built from them (shuffled_clips: the incoherent baseline) and, with data = SPEC,
// of real clips: ddpm-train's --data spec (models/run/data_spec.h load_data, a moving-* one,
// shaped by frames / canvas / item_size / moving_items, clips drawn with `seed`), its first
// `limit` clips (0: as many as the samples). Printed as one table, rows samples, shuffled,
// data; with json = FILE also written there (atomically; an existing FILE only with
// overwrite). Refused (ValueError, before any metric, nothing written): samples that are not
// 5-D uint8 clips with F >= 2 and N >= 2, data that are not clips or whose clips are shaped
// other than the samples', a negative max_shift or limit, an existing --json FILE.
struct VideoEvalArgs {
  std::string samples;
  int max_shift = 4;
  std::string data;  // empty: no data row
  // --frames, --canvas, --item-size, --moving-items: as ddpm-train's (run::DataOptions').
  int frames = run::DataOptions{}.frames, canvas = run::DataOptions{}.canvas;
  int item_size = run::DataOptions{}.item_size, moving_items = run::DataOptions{}.moving_items;
  std::int64_t limit = 0;
  std::string json;  // empty: the table only
  bool overwrite = false;
  std::uint64_t seed = 0;
};
struct VideoEvalRow {
  std::string label;  // "samples", "shuffled", "data"
  VideoMetrics metrics;
};
struct VideoEvalReport {
  std::vector<VideoEvalRow> rows;
};
VideoEvalReport run_video_eval(const VideoEvalArgs& a, std::ostream& out);

}  // namespace ddpm::eval
