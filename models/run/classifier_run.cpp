// models/run/classifier_run.cpp: ddpm-classifier's work (see the header for the math and
// the folder layout).
#include "models/run/classifier_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "engine/seed_streams.h"
#include "models/eval/classifier.h"
#include "models/eval/eval_run.h"
#include "models/run/data_spec.h"
#include "models/run/side_train_checks.h"
#include "engine/io/descriptor.h"
#include "models/run/int_list.h"
#include "models/run/subcommands.h"
#include "models/train/adamw_loop.h"
#include "models/unet/model_io.h"

namespace ddpm::run {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Uniform timesteps in [lo, hi): floor(lo + u (hi - lo)), u ~ U[0, 1) from gen.
std::vector<std::int64_t> uniform_timesteps(std::int64_t n, std::int64_t lo, std::int64_t hi, Generator& gen) {
  const std::vector<double> u = rand({n}, gen, Device::cpu(), DType::f64).to_double_vector();
  std::vector<std::int64_t> t(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < t.size(); ++i)
    t[i] = std::min(hi - 1, lo + static_cast<std::int64_t>(std::floor(u[i] * static_cast<double>(hi - lo))));
  return t;
}

std::vector<double> as_doubles(const std::vector<std::int64_t>& t) { return {t.begin(), t.end()}; }

// x_t = q_sample(x_0, t, noise) for a batch, noise drawn from gen.
Tensor noisy_batch(const diffusion::DiffusionSchedule& schedule, const Tensor& x0, const std::vector<std::int64_t>& t,
                   Generator& gen) {
  const Tensor noise = randn(x0.shape(), gen, x0.device(), x0.dtype());
  return diffusion::q_sample(schedule, x0, t, noise);
}

}  // namespace

unet::EncoderConfig encoder_config_for(const ClassifierTrainArgs& a, const Dataset& data) {
  DDPM_CHECK(data.has_labels() && data.num_classes >= 2,
             "ddpm-classifier train: " << data.name << " has " << (data.has_labels() ? "only one class" : "no labels")
                                       << "; a classifier needs labelled data with at least 2 classes");
  DDPM_CHECK(data.height == data.width,
             "ddpm-classifier train: " << data.name << " has " << data.height << "x" << data.width
                                       << " images; the classifier (like the UNet) needs square images");
  unet::EncoderConfig c;
  c.image_size = static_cast<int>(data.height);
  c.in_channels = static_cast<int>(data.channels);
  c.num_classes = data.num_classes;
  c.model_channels = a.model_channels;
  c.channel_mult = parse_int_list("--channel-mult", a.channel_mult);
  c.num_res_blocks = a.num_res_blocks;
  c.attention_resolutions =
      a.attention_resolutions.empty() ? std::vector<int>{} : parse_int_list("--attention-resolutions", a.attention_resolutions);
  c.num_heads = a.num_heads;
  c.num_head_channels = a.num_head_channels;
  c.norm_groups = a.norm_groups;
  c.dropout = a.dropout;
  c.use_scale_shift_norm = a.use_scale_shift_norm;
  c.resblock_updown = a.resblock_updown;
  c.time_embedding = parse_timestep_embedding_style(a.time_embedding);
  c.validate();
  return c;
}

ClassifierTrainReport train_noisy_classifier(unet::NoisyClassifier& cls, const Dataset& data,
                                             const diffusion::DiffusionSchedule& schedule,
                                             const ClassifierTrainArgs& a,
                                             const std::function<void(const std::string&)>& log) {
  DDPM_CHECK(a.steps >= 1 && a.batch_size >= 1, "ddpm-classifier train: --steps and --batch-size must be positive, got "
                                                    << a.steps << " and " << a.batch_size);
  DDPM_CHECK(data.has_labels(), "ddpm-classifier train: " << data.name << " has no labels");
  validate_lr_schedule_flags(a.lr_schedule, a.lr, a.warmup_steps, a.steps);  // --warmup-steps, --lr-schedule, --lr-min
  const train::LrSchedule lr_schedule = train::parse_lr_schedule(a.lr_schedule.schedule);
  const std::int64_t T = schedule.num_timesteps();
  AdamWConfig ac;
  ac.lr = a.lr;
  ac.weight_decay = a.weight_decay;
  train::AdamWLoop loop(cls.named_parameters(), ac, std::make_shared<const Dataset>(data), a.batch_size, a.seed,
                        cls.device());
  // Timesteps, noise and dropout: SplitMix64 stream 0 of the seed (engine/seed_streams.h), so
  // the per-step draws never reuse the weights' numbers (Generator(seed)).
  Generator gen(splitmix64_stream(a.seed, 0));
  const nn::Context ctx{true, &gen, a.gradient_checkpointing};

  ClassifierTrainReport r;
  train::LossWindow window(a.steps, a.log_every);
  for (std::int64_t step = 0; step < a.steps; ++step) {
    const Batch b = loop.next();
    const std::int64_t n = b.images.dim(0);
    const std::vector<std::int64_t> t = uniform_timesteps(n, 0, T, gen);  // t ~ U{0..T-1}
    const Tensor xt = noisy_batch(schedule, b.images, t, gen);             // [B, H, W, C]
    const Tensor loss = eval::cross_entropy(cls.forward(xt, as_doubles(t), ctx), b.labels);
    r.losses.push_back(
        loop.step(loss, train::scheduled_lr(lr_schedule, a.lr, a.lr_schedule.lr_min, a.warmup_steps, a.steps, step)));
    if (window.add(step, {r.losses.back()}) && log) {
      std::ostringstream line;
      line << "step " << step + 1 << "/" << a.steps << "  loss " << window.mean(0) << "  " << window.seconds() << " s";
      log(line.str());
    }
  }
  r.seconds = window.seconds();
  return r;
}

void save_noisy_classifier(const unet::NoisyClassifier& cls, const DiffusionSettings& schedule,
                           const json& train_info, const std::string& dir, bool overwrite) {
  check_out_may_be_written(dir, overwrite);
  std::error_code ec;
  DDPM_CHECK(!fs::exists(dir, ec) || fs::is_directory(dir, ec), "--out " << dir << " exists and is not a folder");
  const auto tensors = unet::export_state_dict(cls);  // OIHW on disk
  json diffusion = {{"diffusion_steps", schedule.diffusion_steps},
                    {"noise_schedule", diffusion::noise_schedule_name(schedule.noise_schedule)}};
  if (schedule.zero_terminal_snr) diffusion["zero_terminal_snr"] = true;  // absent = false: older folders read the same
  json info = {{"architecture", kNoisyClassifierArchitecture},
               {"model", unet::encoder_config_to_json(cls.config())},
               {"diffusion", diffusion},
               {"train", train_info}};
  publish_directory(
      dir,
      [&](const std::string& tmp) {
        save_safetensors(tmp + "/model.safetensors", tensors, {{"format", "pt"}});
        write_file_atomic(tmp + "/classifier.json", info.dump(2) + "\n");
      },
      overwrite ? IfExists::replace : IfExists::fail);
}

NoisyClassifierFolder load_noisy_classifier(const std::string& dir, Device device) {
  const std::string json_path = dir + "/classifier.json";
  const json info = read_descriptor(
      dir, {"classifier.json", kNoisyClassifierArchitecture, "a noisy classifier", "ddpm-classifier train"});
  NoisyClassifierFolder f;
  try {
    const json& d = info.at("diffusion");
    f.diffusion.diffusion_steps = d.at("diffusion_steps").get<std::int64_t>();
    f.diffusion.noise_schedule = diffusion::parse_noise_schedule(d.at("noise_schedule").get<std::string>());
    f.diffusion.zero_terminal_snr = d.value("zero_terminal_snr", false);
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, json_path << ": \"diffusion\" needs diffusion_steps and noise_schedule (and "
                                     "zero_terminal_snr, when present, a bool): "
                                  << e.what());
  }
  DDPM_CHECK_AS(info.contains("model"), IoError, json_path << " has no \"model\" config");
  const unet::EncoderConfig cfg = unet::encoder_config_from_json(info.at("model"));
  Generator gen(0);
  f.model = std::make_unique<unet::NoisyClassifier>(cfg, gen, device);
  const std::string weights_path = dir + "/model.safetensors";
  unet::load_state_dict(*f.model, load_safetensors(weights_path).tensors,
                        weights_path + " (for " + json_path + "'s model)");
  f.info = info;
  return f;
}

std::vector<QuartileAccuracy> evaluate_noisy_classifier(const unet::NoisyClassifier& cls, const Dataset& data,
                                                        const diffusion::DiffusionSchedule& schedule,
                                                        std::int64_t batch_size, std::uint64_t seed) {
  DDPM_CHECK(data.has_labels() && data.n > 0, "ddpm-classifier eval: " << data.name << " has no labelled images");
  DDPM_CHECK(batch_size >= 1, "ddpm-classifier eval: --batch-size must be positive, got " << batch_size);
  NoGradGuard no_grad;
  const std::int64_t T = schedule.num_timesteps();
  const std::int64_t K = cls.config().num_classes;
  Generator gen(seed);
  std::vector<QuartileAccuracy> rows;
  for (int q = 0; q < 4; ++q) {
    QuartileAccuracy row;
    row.t_begin = T * q / 4;
    row.t_end = std::max(row.t_begin + 1, T * (q + 1) / 4);
    double correct = 0, loss = 0;
    for (std::int64_t b = 0; b < data.n; b += batch_size) {
      const std::int64_t n = std::min(batch_size, data.n - b);
      const Tensor x0 = eval::image_batch(data, b, n, cls.device());
      const std::vector<std::int64_t> t = uniform_timesteps(n, row.t_begin, row.t_end, gen);
      const Tensor logits = cls.forward(noisy_batch(schedule, x0, t, gen), as_doubles(t), nn::Context{});
      const std::vector<std::int64_t> y(data.labels.begin() + b, data.labels.begin() + b + n);
      loss += eval::cross_entropy(logits, y).item() * static_cast<double>(n);
      const std::vector<double> z = logits.to_double_vector();
      for (std::int64_t i = 0; i < n; ++i) {
        const auto row_begin = z.begin() + i * K;
        correct += (std::max_element(row_begin, row_begin + K) - row_begin) == y[static_cast<std::size_t>(i)] ? 1 : 0;
      }
    }
    row.count = data.n;
    row.accuracy = correct / static_cast<double>(data.n);
    row.loss = loss / static_cast<double>(data.n);
    rows.push_back(row);
  }
  return rows;
}

void run_classifier_train(const ClassifierTrainArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.out.empty(), "--out is required: the folder to write the classifier to");
  check_out_may_be_written(a.out, a.overwrite);
  check_steps_batch_lr(a.steps, a.batch_size, a.lr);
  DDPM_CHECK(a.weight_decay >= 0, "--weight-decay must be >= 0, got " << a.weight_decay);
  validate_lr_schedule_flags(a.lr_schedule, a.lr, a.warmup_steps, a.steps);  // --warmup-steps, --lr-schedule, --lr-min
  DDPM_CHECK(a.diffusion_steps >= 2, "--diffusion-steps must be at least 2, got " << a.diffusion_steps);
  DiffusionSettings settings;  // the schedule's three fields; predict does not concern a classifier
  settings.diffusion_steps = a.diffusion_steps;
  settings.noise_schedule = diffusion::parse_noise_schedule(a.noise_schedule);
  settings.zero_terminal_snr = a.zero_terminal_snr;
  const DataSpec spec = parse_data_spec(a.data);
  DataOptions dopt;
  dopt.pad_to_32 = a.pad_to_32;
  dopt.seed = a.seed;
  const Dataset data = load_image_data(spec, dopt, "ddpm-classifier");
  const unet::EncoderConfig cfg = encoder_config_for(a, data);
  const diffusion::DiffusionSchedule schedule(diffusion_betas(settings));
  Generator init(a.seed);
  unet::NoisyClassifier cls(cfg, init, a.device);
  out << "data: " << data.describe() << "\n"
      << "noisy classifier: " << cls.num_parameters() << " parameters, " << cfg.image_size << "x" << cfg.image_size
      << "x" << cfg.in_channels << " -> " << cfg.num_classes << " classes; " << a.diffusion_steps << "-step "
      << a.noise_schedule << " schedule" << (a.zero_terminal_snr ? " (zero terminal SNR)" : "") << "\n";
  const ClassifierTrainReport r =
      train_noisy_classifier(cls, data, schedule, a, [&out](const std::string& line) { out << line << "\n"; });
  json train = {{"data", a.data},
                {"pad_to_32", a.pad_to_32},
                {"steps", a.steps},
                {"batch_size", a.batch_size},
                {"lr", a.lr},
                {"weight_decay", a.weight_decay},
                {"warmup_steps", a.warmup_steps},
                {"seed", a.seed},
                {"final_loss", r.losses.back()},
                {"seconds", r.seconds},
                {"class_names", data.class_names}};
  add_lr_schedule_json(train, a.lr_schedule, a.steps);
  save_noisy_classifier(cls, settings, train, a.out, a.overwrite);
  out << "wrote " << a.out << "/model.safetensors and " << a.out << "/classifier.json\n";
}

std::vector<QuartileAccuracy> run_classifier_eval(const ClassifierEvalArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.classifier.empty(), "--classifier is required: a folder written by ddpm-classifier train");
  DDPM_CHECK(a.limit >= 0, "--limit must be >= 0, got " << a.limit);
  DDPM_CHECK(a.split == "train" || a.split == "test", "--split must be train or test, got " << a.split);
  const NoisyClassifierFolder f = load_noisy_classifier(a.classifier, a.device);
  const unet::EncoderConfig& cfg = f.model->config();
  Dataset data = eval::load_eval_dataset(a.data, a.split);
  if (a.limit > 0 && a.limit < data.n) data = take(data, a.limit);
  if (data.height < cfg.image_size && data.height == data.width) data = pad_to(data, cfg.image_size);  // 28 -> 32
  DDPM_CHECK(data.height == cfg.image_size && data.width == cfg.image_size && data.channels == cfg.in_channels,
             "--data " << a.data << " has " << data.height << "x" << data.width << "x" << data.channels
                       << " images; the classifier takes " << cfg.image_size << "x" << cfg.image_size << "x"
                       << cfg.in_channels);
  DDPM_CHECK(data.num_classes == cfg.num_classes, "--data " << a.data << " has " << data.num_classes
                                                            << " classes; the classifier predicts "
                                                            << cfg.num_classes);
  const diffusion::DiffusionSchedule schedule(diffusion_betas(f.diffusion));
  const std::vector<QuartileAccuracy> rows = evaluate_noisy_classifier(*f.model, data, schedule, a.batch_size, a.seed);
  out << "noisy classifier " << a.classifier << " on " << data.describe() << " (" << a.split << "), "
      << f.diffusion.diffusion_steps << "-step " << diffusion::noise_schedule_name(f.diffusion.noise_schedule)
      << " schedule" << (f.diffusion.zero_terminal_snr ? " (zero terminal SNR)" : "") << "\n";
  out << std::left << std::setw(16) << "t range" << std::setw(10) << "accuracy" << "loss\n";
  for (const QuartileAccuracy& r : rows) {
    std::ostringstream range;
    range << "[" << r.t_begin << ", " << r.t_end << ")";
    out << std::left << std::setw(16) << range.str() << std::setw(10) << std::fixed << std::setprecision(4)
        << r.accuracy << std::setprecision(4) << r.loss << "\n";
    out.unsetf(std::ios::fixed);
  }
  return rows;
}

void add_classifier_subcommands(CLI::App& app, ClassifierCommand& c) {
  app.fallthrough();  // --device, --seed, --config also work after the subcommand
  app.require_subcommand(1);
  add_unknown_word_check(app);
  ClassifierTrainArgs& t = c.train;
  CLI::App* tr = app.add_subcommand("train", "train a noisy, timestep-conditioned classifier for classifier guidance");
  c.train_app = tr;
  tr->add_option("--data", t.data, "fashion-mnist[:DIR] | idx:IMAGES[,LABELS] | cifar10:DIR | folder:DIR | toy (labelled)")
      ->capture_default_str();
  tr->add_flag("--pad-to-32", t.pad_to_32, "centre 28x28 images on 32x32 (as the diffusion model was trained)");
  tr->add_option("--out", t.out, "output folder: model.safetensors, classifier.json")->required();
  tr->add_flag("--overwrite", t.overwrite, "replace an existing --out folder");
  tr->add_option("--steps", t.steps, "training steps")->capture_default_str();
  tr->add_option("--batch-size", t.batch_size, "images per step")->capture_default_str();
  tr->add_option("--lr", t.lr, "AdamW learning rate")->capture_default_str();
  tr->add_option("--weight-decay", t.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  add_warmup_and_lr_schedule_flags(*tr, t.warmup_steps, t.lr_schedule);
  tr->add_option("--diffusion-steps", t.diffusion_steps, "T of the diffusion model this classifier will guide")
      ->capture_default_str();
  tr->add_option("--noise-schedule", t.noise_schedule, "the diffusion model's schedule: linear | cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  tr->add_flag("--zero-terminal-snr", t.zero_terminal_snr,
               "the diffusion model's schedule is rescaled to zero terminal SNR (ddpm-train --zero-terminal-snr)");
  tr->add_option("--model-channels", t.model_channels, "channels of the first level")->capture_default_str()->group("Model");
  tr->add_option("--channel-mult", t.channel_mult, "channel multiplier per level")->capture_default_str()->group("Model");
  tr->add_option("--num-res-blocks", t.num_res_blocks, "residual blocks per level")->capture_default_str()->group("Model");
  tr->add_option("--attention-resolutions", t.attention_resolutions,
                 "feature-map sizes with attention, e.g. 16,8 (the middle block always has it)")
      ->group("Model");
  tr->add_option("--num-heads", t.num_heads, "attention heads")->capture_default_str()->group("Model");
  tr->add_option("--num-head-channels", t.num_head_channels, "channels per head (overrides --num-heads when > 0)")
      ->capture_default_str()->group("Model");
  tr->add_option("--norm-groups", t.norm_groups, "GroupNorm groups")->capture_default_str()->group("Model");
  tr->add_option("--dropout", t.dropout, "dropout in the residual blocks")->capture_default_str()->group("Model");
  tr->add_flag_callback("--no-scale-shift-norm", [&t] { t.use_scale_shift_norm = false; },
                        "plain additive timestep embedding instead of AdaGN")->group("Model");
  tr->add_flag_callback("--no-resblock-updown", [&t] { t.resblock_updown = false; },
                        "strided-conv downsampling instead of resampling residual blocks")->group("Model");
  tr->add_option("--time-embedding", t.time_embedding, "timestep embedding convention: improved ([cos, sin]) | ddpm")
      ->check(CLI::IsMember({"improved", "ddpm"}))
      ->capture_default_str()->group("Model");
  tr->add_option("--log-every", t.log_every, "print the mean loss every N steps")->capture_default_str();
  tr->add_flag("--gradient-checkpointing", t.gradient_checkpointing,
               "recompute the blocks' activations in the backward (less memory, ~1/3 more compute)");

  ClassifierEvalArgs& e = c.eval;
  CLI::App* ev = app.add_subcommand("eval", "accuracy of a noisy classifier at t in each quartile of [0, T)");
  c.eval_app = ev;
  ev->add_option("--classifier", e.classifier, "folder written by ddpm-classifier train")->required();
  add_split_flags(*ev, e.data, e.split, e.limit, e.batch_size);
}

void run_classifier_command(ClassifierCommand& c, Device device, std::uint64_t seed, std::ostream& out) {
  if (c.train_app != nullptr && c.train_app->parsed()) {
    c.train.device = device;
    c.train.seed = seed;
    run_classifier_train(c.train, out);
    return;
  }
  if (c.eval_app != nullptr && c.eval_app->parsed()) {
    c.eval.device = device;
    c.eval.seed = seed;
    run_classifier_eval(c.eval, out);
    return;
  }
  DDPM_THROW(ValueError, "ddpm-classifier: no subcommand was parsed; expected train or eval");
}

}  // namespace ddpm::run
