// models/run/classifier_run.h: the library behind ddpm-classifier, the noisy classifier of
// classifier guidance (models/unet/encoder.h; Dhariwal & Nichol 2021, sec. 4).
//
// Training (ADM's classifier_train): for a labelled batch (x_0, y), t ~ Uniform{0..T-1} per
// image and noise ~ N(0, I) give x_t = q_sample(x_0, t, noise) (DDPM eq. 4) with the SAME
// schedule the diffusion model uses (its name, T and whether it was rescaled to zero terminal
// SNR are recorded, and ddpm-sample refuses a classifier whose schedule differs from the
// model's: the classifier must have seen x_t at the model's alpha_bar_t); the loss is the
// cross-entropy
//   CE = -(1/B) sum_i log softmax(f(x_t,i, t_i))[y_i]
// minimized with AdamW at a constant learning rate by default (--warmup-steps and
// --lr-schedule linear|cosine --lr-min: the trainer's warm-up and decay, models/train/
// lr_schedule.h; no EMA: ADM trains its classifiers without one). Random numbers: Generator(--seed) initializes the weights; a second
// generator, its seed derived from --seed, draws per step the timesteps (uniform [0, 1) ->
// floor(u T)) and the noise; the batch order is the loader's (models/data/loader.h, --seed).
//
// A classifier folder (published atomically; an existing one is refused unless overwrite):
//   OUT/model.safetensors   parameters by name (encoder.h), convolutions in PyTorch's OIHW
//   OUT/classifier.json     {"architecture": "noisy-classifier", "model": EncoderConfig,
//                            "diffusion": {"diffusion_steps", "noise_schedule"
//                                          [, "zero_terminal_snr": true]},
//                            "train": {data, steps, batch_size, lr, weight_decay,
//                            warmup_steps, lr_schedule, lr_min[, lr_decay_steps], seed,
//                            final_loss}, "class_names": [...]}
//
// Evaluation: accuracy of argmax f(x_t, t) on a split, with t drawn uniformly inside each
// quartile [qT/4, (q+1)T/4) of the timesteps (q = 0..3), one table row per quartile: a
// classifier is near chance at high noise and should be accurate at low noise.
//
// Subcommands of ddpm-classifier (flags below; ValueError = exit 2):
//   train --data SPEC --out DIR [--steps --batch-size --lr --weight-decay --warmup-steps
//         --lr-schedule --lr-min --diffusion-steps
//         --noise-schedule --zero-terminal-snr --model-channels --channel-mult --num-res-blocks
//         --attention-resolutions --num-heads --num-head-channels --norm-groups --dropout
//         --no-scale-shift-norm --no-resblock-updown --time-embedding --pad-to-32 --overwrite]
//   eval  --classifier DIR --data SPEC [--split train|test --limit --batch-size]
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "models/data/dataset.h"
#include "models/diffusion/schedule.h"
#include "models/run/lr_schedule_flags.h"
#include "models/run/model_source.h"
#include "models/unet/encoder.h"

namespace ddpm::run {

inline constexpr const char* kNoisyClassifierArchitecture = "noisy-classifier";

struct ClassifierTrainArgs {
  std::string data = "fashion-mnist";  // data_spec.h
  bool pad_to_32 = false;
  std::string out;
  bool overwrite = false;
  std::int64_t steps = 2000;
  std::int64_t batch_size = 64;
  double lr = 3e-4;                    // ADM's classifier settings
  double weight_decay = 0.05;
  std::int64_t warmup_steps = 0;       // linear warm-up, then --lr-schedule (lr_schedule_flags.h)
  LrScheduleFlags lr_schedule;
  std::int64_t diffusion_steps = 1000;
  std::string noise_schedule = "linear";
  bool zero_terminal_snr = false;      // the model's schedule is rescaled to alpha_bar_{T-1} = 0
  // Model size (encoder.h); small defaults that train on the CPU.
  int model_channels = 32;
  std::string channel_mult = "1,2,2";
  int num_res_blocks = 1;
  std::string attention_resolutions;   // "" = attention in the middle block only
  int num_heads = 1;
  int num_head_channels = -1;
  int norm_groups = 8;
  double dropout = 0.0;
  bool use_scale_shift_norm = true;
  bool resblock_updown = true;
  std::string time_embedding = "improved";
  std::int64_t log_every = 100;
  bool gradient_checkpointing = false;  // nn::Context::recompute (engine/recompute.h)
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};

// The encoder config for these flags and a dataset (image size, channels and classes come
// from the data). ValueError naming the flag or the dataset's problem (no labels, one class,
// non-square images).
unet::EncoderConfig encoder_config_for(const ClassifierTrainArgs& a, const Dataset& data);

struct ClassifierTrainReport {
  std::vector<double> losses;  // one per step
  double seconds = 0;
};

// Trains cls on data (labelled) for a.steps steps; `log` gets a line every a.log_every steps.
ClassifierTrainReport train_noisy_classifier(unet::NoisyClassifier& cls, const Dataset& data,
                                             const diffusion::DiffusionSchedule& schedule,
                                             const ClassifierTrainArgs& a,
                                             const std::function<void(const std::string&)>& log = {});

// A classifier folder in memory.
struct NoisyClassifierFolder {
  std::unique_ptr<unet::NoisyClassifier> model;
  // The schedule it was trained on: diffusion_steps, noise_schedule and zero_terminal_snr
  // are set (the other fields keep their defaults); diffusion_betas(diffusion) rebuilds it.
  DiffusionSettings diffusion;
  nlohmann::json info;  // classifier.json as written
};
// Publishes DIR (see above) from the model, the schedule it was trained on (the three fields
// named above) and extra `train` info.
void save_noisy_classifier(const unet::NoisyClassifier& cls, const DiffusionSettings& schedule,
                           const nlohmann::json& train_info, const std::string& dir, bool overwrite);
// IoError naming the file when the folder is missing, damaged or not a noisy classifier;
// a ValueError listing missing / unexpected / mismatched tensors.
NoisyClassifierFolder load_noisy_classifier(const std::string& dir, Device device);

// Accuracy and mean cross-entropy with t inside each quartile of [0, T).
struct QuartileAccuracy {
  std::int64_t t_begin = 0, t_end = 0;  // [t_begin, t_end)
  double accuracy = 0, loss = 0;
  std::int64_t count = 0;
};
std::vector<QuartileAccuracy> evaluate_noisy_classifier(const unet::NoisyClassifier& cls, const Dataset& data,
                                                        const diffusion::DiffusionSchedule& schedule,
                                                        std::int64_t batch_size, std::uint64_t seed);

struct ClassifierEvalArgs {
  std::string classifier, data = "fashion-mnist", split = "test";
  std::int64_t limit = 0;  // > 0: the first `limit` images of the split
  std::int64_t batch_size = 256;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};

// The two programs; progress and the table go to `out`.
void run_classifier_train(const ClassifierTrainArgs& a, std::ostream& out);
std::vector<QuartileAccuracy> run_classifier_eval(const ClassifierEvalArgs& a, std::ostream& out);

// ddpm-classifier's subcommands, bound to the args; the mode is whichever was parsed.
struct ClassifierCommand {
  ClassifierTrainArgs train;
  ClassifierEvalArgs eval;
  CLI::App* train_app = nullptr;
  CLI::App* eval_app = nullptr;
};
void add_classifier_subcommands(CLI::App& app, ClassifierCommand& c);
void run_classifier_command(ClassifierCommand& c, Device device, std::uint64_t seed, std::ostream& out);

}  // namespace ddpm::run
