// models/run/toy_run.cpp: ddpm-toy's model folder, training and subcommands (the header
// has the folder layout and the sampler list; toy_pictures.cpp draws sample and forward).
#include "models/run/toy_run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "engine/io/safetensors.h"
#include "engine/io/descriptor.h"
#include "engine/seed_streams.h"
#include "models/run/loss_plot.h"
#include "models/run/posthoc_export.h"
#include "models/toy/loss_log.h"
#include "models/run/subcommands.h"
#include "models/toy/datasets2d.h"
#include "models/train/trainer.h"

namespace ddpm::run {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::int64_t kTimeDim = 32;
constexpr std::int64_t kWarmupSteps = 100;
constexpr const char* kToyClassifierArchitecture = "toy-mlp-classifier";

// The trainer's own Philox seed for run seed `seed` (SplitMix64 stream 0, engine/
// seed_streams.h), so the batches, timesteps and noise never reuse the numbers that
// initialized the weights (Generator(seed)).
std::uint64_t trainer_seed(std::uint64_t seed) { return splitmix64_stream(seed, 0); }

ToyModel build_model(const std::string& data, std::int64_t hidden, int layers, std::int64_t T,
                     diffusion::NoiseSchedule schedule, diffusion::ModelMeanType predict, int num_classes,
                     std::uint64_t seed) {
  ToyModel m;
  m.data = data;
  m.num_classes = num_classes;
  toy::MlpDenoiserConfig mc;
  mc.num_classes = num_classes;
  mc.data_dim = 2;
  mc.hidden = hidden;
  mc.layers = layers;
  mc.time_dim = kTimeDim;
  Generator init(seed);
  m.net = std::make_unique<toy::MlpDenoiser>(mc, init);
  m.slab.pack(m.net->parameters());
  m.diffusion_steps = T;
  m.noise_schedule = schedule;
  m.predict = predict;
  m.betas = diffusion::betas_for(schedule, T);
  return m;
}

}  // namespace

void check_toy_out_folder(const std::string& out, bool overwrite) {
  DDPM_CHECK(!out.empty(), "--out is required: the folder to write to");
  std::error_code ec;
  DDPM_CHECK(overwrite || !fs::exists(out, ec) || (fs::is_directory(out, ec) && fs::is_empty(out, ec)),
             "--out " << out << " exists; pass --overwrite to replace it");
  DDPM_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), "--out " << out << " exists and is not a folder");
}

namespace {

// Copies a weights file into the slab; IoError naming the file for a missing, extra or
// mis-shaped tensor.
void load_weights(ParameterSlab& slab, const std::string& path) {
  const SafetensorsFile f = load_safetensors(path);
  DDPM_CHECK_AS(f.tensors.size() == slab.size(), IoError,
                path << " holds " << f.tensors.size() << " tensors; the model described by config.json has "
                     << slab.size());
  for (const SlabEntry& e : slab.entries()) {
    const Tensor& t = f.get(e.name);
    DDPM_CHECK_AS(t.shape() == e.value.shape() && t.dtype() == e.value.dtype(), IoError,
                  path << ": tensor " << e.name << " does not have the shape and dtype config.json implies");
    Tensor dst = e.value;  // a handle on the slab view
    dst.copy_from(t);
  }
}

}  // namespace

void check_toy_train_args(const ToyTrainArgs& a) {
  toy::check_toy2d_name(a.data, "--data");
  DDPM_CHECK(a.steps >= 1, "--steps must be positive, got " << a.steps);
  DDPM_CHECK(a.batch_size >= 1 && a.batch_size <= 65536, "--batch-size must be in [1, 65536], got " << a.batch_size);
  DDPM_CHECK(a.lr > 0 && std::isfinite(a.lr), "--lr must be positive, got " << a.lr);
  validate_lr_schedule_flags(a.lr_schedule, a.lr, kWarmupSteps, a.steps);  // --lr-schedule, --lr-min
  DDPM_CHECK(a.hidden >= 1 && a.hidden <= 4096, "--hidden must be in [1, 4096], got " << a.hidden);
  DDPM_CHECK(a.layers >= 1 && a.layers <= 32, "--layers must be in [1, 32], got " << a.layers);
  DDPM_CHECK(a.diffusion_steps >= 100 && a.diffusion_steps <= 1000,
             "--diffusion-steps must be in [100, 1000], got " << a.diffusion_steps);
  DDPM_CHECK(a.ema_rate >= 0 && a.ema_rate < 1, "--ema-rate must be in [0, 1), got " << a.ema_rate);
  DDPM_CHECK(a.log_every >= 1, "--log-every must be positive, got " << a.log_every);
  DDPM_CHECK(a.class_dropout >= 0 && a.class_dropout < 1,
             "--class-dropout must be in [0, 1), got " << a.class_dropout);
  diffusion::parse_noise_schedule(a.noise_schedule);
  diffusion::parse_model_mean_type(a.predict);
  train::parse_sigma_rel_list("--posthoc-ema", a.posthoc_ema);  // each width in (0, 0.3003], no repeats
  DDPM_CHECK(a.posthoc_snapshot_every >= 0, "--posthoc-snapshot-every must be >= 0, got " << a.posthoc_snapshot_every);
  DDPM_CHECK(a.posthoc_snapshot_every == 0 || !a.posthoc_ema.empty(),
             "--posthoc-snapshot-every " << a.posthoc_snapshot_every << " needs --posthoc-ema (the EMA widths to snapshot)");
}

std::int64_t toy_posthoc_every(const ToyTrainArgs& a) {
  return a.posthoc_snapshot_every > 0 ? a.posthoc_snapshot_every : std::max<std::int64_t>(1, a.steps / 16);
}

ToyModel make_toy_model(const ToyTrainArgs& a) {
  check_toy_train_args(a);
  return build_model(a.data, a.hidden, a.layers, a.diffusion_steps, diffusion::parse_noise_schedule(a.noise_schedule),
                     diffusion::parse_model_mean_type(a.predict),
                     a.class_cond ? toy::toy2d_num_classes(a.data) : 0, a.seed);
}

ToyTrainReport train_toy_model(ToyModel& m, const ToyTrainArgs& a, const std::function<void(const std::string&)>& log) {
  check_toy_train_args(a);
  const diffusion::DiffusionSchedule schedule(m.betas);
  train::TrainerConfig tc;
  tc.loss.mean_type = m.predict;
  tc.adamw.lr = a.lr;
  tc.warmup_steps = kWarmupSteps;
  apply_lr_schedule(tc, a.lr_schedule, a.steps);
  tc.grad_clip = 1.0;
  tc.ema_rate = a.ema_rate;
  tc.seed = trainer_seed(a.seed);
  // Class-conditional: the trainer swaps each label for the null label with probability
  // label_dropout, after drawing t (trainer.h), so p(x | y) and p(x) share one network.
  tc.num_classes = m.num_classes;
  tc.label_dropout = m.num_classes > 0 ? a.class_dropout : 0.0;
  tc.posthoc_sigma_rels = train::parse_sigma_rel_list("--posthoc-ema", a.posthoc_ema);
  const std::int64_t every = toy_posthoc_every(a);
  const std::string data = m.data;
  const std::int64_t batch = a.batch_size;
  const bool labelled = m.num_classes > 0;
  // A fresh batch per step from the trainer's generator: infinite data, no epochs.
  train::BatchProvider batches = [data, batch, labelled](std::int64_t, Generator& gen) {
    PointDataset d = toy::make_toy2d(data, batch, gen);
    train::Batch b;
    b.x0 = Tensor::from_vector(d.points, {batch, 2});  // [B, 2]
    if (labelled) b.labels = std::move(d.labels);     // [B]
    return b;
  };
  train::Trainer trainer(m.slab, m.net->fn(), schedule, batches, tc);
  ToyTrainReport r;
  toy::LossLog loss_log(a.steps, a.log_every, "", 4, log);  // "step S/N  loss L  T s" lines
  for (std::int64_t step = 0; step < a.steps; ++step) {
    const train::StepMetrics s = trainer.step();
    loss_log.after_step(step, s.loss, !s.skipped);
    const std::int64_t done = step + 1;
    if (!trainer.power_emas().empty() && (done % every == 0 || done == a.steps)) {
      // A copy of each tracker (its constructor clones the slab, load overwrites the clone),
      // so later updates leave the snapshot alone.
      ToyPosthocSnapshot snap{done, trainer.optimizer().step_count(), {}};
      for (const train::PowerEma& p : trainer.power_emas()) {
        snap.emas.emplace_back(m.slab, p.sigma_rel());
        snap.emas.back().load(p.values());
      }
      r.posthoc.push_back(std::move(snap));
    }
  }
  r.log_steps = loss_log.steps();
  r.log_losses = loss_log.losses();
  r.seconds = loss_log.seconds();
  r.ema = trainer.ema().values().clone();
  return r;
}

void save_toy_model(const ToyModel& m, const Tensor& ema, const json& train_info,
                    const std::vector<std::uint8_t>& loss_png_rgb, int png_height, int png_width,
                    const std::string& dir, bool overwrite, const std::vector<ToyPosthocSnapshot>& posthoc) {
  check_toy_out_folder(dir, overwrite);
  NamedTensors weights, averaged;
  for (std::size_t i = 0; i < m.slab.size(); ++i) {
    const SlabEntry& e = m.slab.entry(i);
    weights.emplace_back(e.name, e.value);
    averaged.emplace_back(e.name, m.slab.slice(ema, i));
  }
  const toy::MlpDenoiserConfig& mc = m.net->config();
  json info = {{"architecture", kToyArchitecture},
               {"data", m.data},
               {"model",
                {{"hidden", mc.hidden},
                 {"layers", mc.layers},
                 {"time_dim", mc.time_dim},
                 {"num_classes", mc.num_classes}}},
               {"diffusion",
                {{"diffusion_steps", m.diffusion_steps},
                 {"noise_schedule", diffusion::noise_schedule_name(m.noise_schedule)},
                 {"predict", diffusion::model_mean_type_name(m.predict)}}},
               {"train", train_info}};
  publish_directory(
      dir,
      [&](const std::string& tmp) {
        save_safetensors(tmp + "/model.safetensors", weights, {{"format", "pt"}});
        save_safetensors(tmp + "/ema.safetensors", averaged, {{"format", "pt"}});
        if (!loss_png_rgb.empty()) write_png(tmp + "/loss.png", loss_png_rgb.data(), png_height, png_width, 3);
        write_file_atomic(tmp + "/config.json", info.dump(2) + "\n");
        for (const ToyPosthocSnapshot& p : posthoc) write_posthoc_snapshot(tmp, p.step, p.updates, p.emas, m.slab);
      },
      overwrite ? IfExists::replace : IfExists::fail);
}

ToyModel load_toy_model(const std::string& dir, bool raw) {
  const std::string json_path = dir + "/config.json";
  const json info = read_descriptor(dir, {"config.json", kToyArchitecture, "a toy model", "ddpm-toy train"});
  ToyModel m;
  try {
    const json& d = info.at("diffusion");
    const json& mo = info.at("model");
    DDPM_CHECK_AS(mo.at("time_dim").get<std::int64_t>() == kTimeDim, IoError,
                  json_path << " has time_dim " << mo.at("time_dim") << "; ddpm-toy builds " << kTimeDim);
    const std::string data = info.at("data").get<std::string>();
    const auto& names = toy::toy2d_names();
    DDPM_CHECK_AS(std::find(names.begin(), names.end(), data) != names.end(), IoError,
                  json_path << " names data '" << data << "', which is not one of ddpm-toy's datasets");
    // Folders written before class conditioning have no num_classes: unconditional.
    const int num_classes = mo.value("num_classes", 0);
    DDPM_CHECK_AS(num_classes == 0 || num_classes == toy::toy2d_num_classes(data), IoError,
                  json_path << " has num_classes " << num_classes << "; " << data << " has "
                            << toy::toy2d_num_classes(data) << " classes");
    m = build_model(data, mo.at("hidden").get<std::int64_t>(), mo.at("layers").get<int>(),
                    d.at("diffusion_steps").get<std::int64_t>(),
                    diffusion::parse_noise_schedule(d.at("noise_schedule").get<std::string>()),
                    diffusion::parse_model_mean_type(d.at("predict").get<std::string>()), num_classes, 0);
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, json_path << " lacks a field of a toy model (data, model.hidden/layers/time_dim, "
                                     "diffusion.diffusion_steps/noise_schedule/predict): "
                                  << e.what());
  }
  load_weights(m.slab, dir + (raw ? "/model.safetensors" : "/ema.safetensors"));
  return m;
}

void check_toy_autoguide_fits(const ToyModel& m, const ToyModel& guide) {
  // The guide's error direction is only meaningful for the same task (autoguide_run.h).
  DDPM_CHECK(guide.data == m.data,
             "--autoguide: the guide was trained on " << guide.data << ", the model on " << m.data);
  DDPM_CHECK(guide.diffusion_steps == m.diffusion_steps && guide.noise_schedule == m.noise_schedule,
             "--autoguide: the guide has a " << guide.diffusion_steps << "-step "
                                             << diffusion::noise_schedule_name(guide.noise_schedule)
                                             << " schedule, the model a " << m.diffusion_steps << "-step "
                                             << diffusion::noise_schedule_name(m.noise_schedule) << " one");
  DDPM_CHECK(guide.predict == m.predict, "--autoguide: the guide predicts "
                                             << diffusion::model_mean_type_name(guide.predict) << ", the model "
                                             << diffusion::model_mean_type_name(m.predict));
  DDPM_CHECK(guide.num_classes == m.num_classes,
             "--autoguide: the guide has " << guide.num_classes << " classes (0 = unconditional), the model "
                                           << m.num_classes << ": both get the same labels");
}

void run_toy_train(const ToyTrainArgs& a, std::ostream& out) {
  check_toy_train_args(a);
  check_toy_out_folder(a.out, a.overwrite);  // before the work, not after it
  ToyModel m = make_toy_model(a);
  out << "data: " << a.data << " (2-D, unit variance; a fresh batch of " << a.batch_size << " per step)\n"
      << "model: MLP, " << a.layers << " hidden layers of " << a.hidden << ", " << m.slab.numel()
      << " parameters; predicts " << a.predict << "; " << a.diffusion_steps << "-step " << a.noise_schedule
      << " schedule\n";
  if (m.num_classes > 0)
    out << "class-conditional: " << m.num_classes << " classes of " << a.data << " + the null label, dropped to it "
        << "with probability " << a.class_dropout << " (classifier-free guidance training)\n";
  const ToyTrainReport r = train_toy_model(m, a, [&out](const std::string& line) { out << line << "\n"; });
  constexpr int kPlotH = 360, kPlotW = 640;
  const std::vector<std::uint8_t> plot = draw_loss_curve(r.log_steps, r.log_losses, kPlotH, kPlotW);
  json train = {{"steps", a.steps},   {"batch_size", a.batch_size}, {"lr", a.lr},
                {"ema_rate", a.ema_rate}, {"warmup_steps", kWarmupSteps}, {"seed", a.seed},
                {"final_loss", r.log_losses.back()}, {"seconds", r.seconds},
                {"class_dropout", m.num_classes > 0 ? a.class_dropout : 0.0}};
  add_lr_schedule_json(train, a.lr_schedule, a.steps);
  if (!r.posthoc.empty()) {
    train["posthoc_ema"] = train::parse_sigma_rel_list("--posthoc-ema", a.posthoc_ema);
    train["posthoc_snapshot_every"] = toy_posthoc_every(a);
  }
  save_toy_model(m, r.ema, train, plot, kPlotH, kPlotW, a.out, a.overwrite, r.posthoc);
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1f", r.seconds);
  out << "trained in " << secs << " s; wrote " << a.out << "/{config.json, model.safetensors, ema.safetensors, "
      << "loss.png" << (r.posthoc.empty() ? "" : ", posthoc/ (" + std::to_string(r.posthoc.size()) + " snapshots)")
      << "}\n";
}

ToyClassifier make_toy_classifier(const ToyModel& m, std::int64_t hidden, int layers, std::uint64_t seed) {
  DDPM_CHECK(hidden >= 1 && hidden <= 4096, "--hidden must be in [1, 4096], got " << hidden);
  DDPM_CHECK(layers >= 1 && layers <= 32, "--layers must be in [1, 32], got " << layers);
  ToyClassifier c;
  c.data = m.data;
  c.diffusion_steps = m.diffusion_steps;
  c.noise_schedule = m.noise_schedule;
  toy::NoisyMlpClassifierConfig cc;
  cc.hidden = hidden;
  cc.layers = layers;
  cc.time_dim = kTimeDim;
  cc.num_classes = toy::toy2d_num_classes(m.data);
  Generator init(seed);
  c.net = std::make_unique<toy::NoisyMlpClassifier>(cc, init);
  return c;
}

void save_toy_classifier(const ToyClassifier& c, const json& train_info, const std::string& dir, bool overwrite) {
  check_toy_out_folder(dir, overwrite);
  const toy::NoisyMlpClassifierConfig& cc = c.net->config();
  const json info = {{"architecture", kToyClassifierArchitecture},
                     {"data", c.data},
                     {"num_classes", cc.num_classes},
                     {"hidden", cc.hidden},
                     {"layers", cc.layers},
                     {"time_dim", cc.time_dim},
                     {"diffusion",
                      {{"diffusion_steps", c.diffusion_steps},
                       {"noise_schedule", diffusion::noise_schedule_name(c.noise_schedule)}}},
                     {"train", train_info}};
  publish_directory(
      dir,
      [&](const std::string& tmp) {
        save_safetensors(tmp + "/classifier.safetensors", c.net->parameters(), {{"format", "pt"}});
        write_file_atomic(tmp + "/classifier.json", info.dump(2) + "\n");
      },
      overwrite ? IfExists::replace : IfExists::fail);
}

ToyClassifier load_toy_classifier(const std::string& dir) {
  const std::string json_path = dir + "/classifier.json";
  const json info =
      read_descriptor(dir, {"classifier.json", kToyClassifierArchitecture, "a toy classifier", "ddpm-toy classifier"});
  ToyClassifier c;
  try {
    c.data = info.at("data").get<std::string>();
    const auto& names = toy::toy2d_names();
    DDPM_CHECK_AS(std::find(names.begin(), names.end(), c.data) != names.end(), IoError,
                  json_path << " names data '" << c.data << "', which is not one of ddpm-toy's datasets");
    c.diffusion_steps = info.at("diffusion").at("diffusion_steps").get<std::int64_t>();
    c.noise_schedule = diffusion::parse_noise_schedule(info.at("diffusion").at("noise_schedule").get<std::string>());
    toy::NoisyMlpClassifierConfig cc;
    cc.hidden = info.at("hidden").get<std::int64_t>();
    cc.layers = info.at("layers").get<int>();
    cc.time_dim = info.at("time_dim").get<std::int64_t>();
    cc.num_classes = info.at("num_classes").get<int>();
    DDPM_CHECK_AS(cc.num_classes == toy::toy2d_num_classes(c.data), IoError,
                  json_path << " has num_classes " << cc.num_classes << "; " << c.data << " has "
                            << toy::toy2d_num_classes(c.data) << " classes");
    Generator init(0);
    c.net = std::make_unique<toy::NoisyMlpClassifier>(cc, init);
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, json_path << " lacks a field of a toy classifier (data, num_classes, hidden, layers, "
                                     "time_dim, diffusion.diffusion_steps/noise_schedule): "
                                  << e.what());
  }
  // The weights go into the network's own tensors, which do not require grad: guidance
  // differentiates with respect to x_t only (classifier_guidance.h).
  const std::string path = dir + "/classifier.safetensors";
  const SafetensorsFile f = load_safetensors(path);
  const NamedTensors params = c.net->parameters();
  DDPM_CHECK_AS(f.tensors.size() == params.size(), IoError,
                path << " holds " << f.tensors.size() << " tensors; the classifier described by classifier.json has "
                     << params.size());
  for (const auto& [name, value] : params) {
    const Tensor& t = f.get(name);
    DDPM_CHECK_AS(t.shape() == value.shape() && t.dtype() == value.dtype(), IoError,
                  path << ": tensor " << name << " does not have the shape and dtype classifier.json implies");
    Tensor dst = value;
    dst.copy_from(t);
  }
  return c;
}

void run_toy_classifier(const ToyClassifierArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.checkpoint.empty(), "--checkpoint is required: the model folder whose data and diffusion to use");
  check_toy_out_folder(a.out, a.overwrite);
  const ToyModel m = load_toy_model(a.checkpoint, false);
  ToyClassifier c = make_toy_classifier(m, a.hidden, a.layers, a.train.seed);
  ParameterSlab slab;
  slab.pack(c.net->parameters());
  toy::NoisyClassifierTrainArgs ta = a.train;
  ta.seed = trainer_seed(a.train.seed);  // batches, t and noise apart from the weights' numbers
  const diffusion::DiffusionSchedule schedule(m.betas);
  out << "noisy classifier p(y | x_t, t) of " << m.data << " (" << c.net->config().num_classes << " classes): MLP, "
      << a.layers << " hidden layers of " << a.hidden << ", " << slab.numel() << " parameters; the model's "
      << m.diffusion_steps << "-step " << diffusion::noise_schedule_name(m.noise_schedule) << " schedule\n";
  const toy::NoisyClassifierReport r =
      toy::train_noisy_mlp_classifier(*c.net, slab, m.data, schedule, ta, [&out](const std::string& l) { out << l << "\n"; });
  // Accuracy on fresh noisy points: the guidance signal is strong where the classifier is
  // sure, and fades to nothing where x_t is noise (accuracy 1/K).
  const std::int64_t T = m.diffusion_steps;
  const std::vector<std::int64_t> ts = {0, T / 4, T / 2, 3 * T / 4, T - 1};
  const std::vector<double> acc = toy::noisy_accuracy(*c.net, m.data, schedule, ts, 2000, trainer_seed(a.train.seed + 1));
  out << "accuracy on 2000 fresh noisy points:";
  for (std::size_t i = 0; i < ts.size(); ++i) {
    char item[48];
    std::snprintf(item, sizeof item, "  t=%lld %.3f", static_cast<long long>(ts[i]), acc[i]);
    out << item;
  }
  out << "  (chance " << 1.0 / c.net->config().num_classes << ")\n";
  // The slab holds the trained values; the network's tensors are its views.
  const json train = {{"checkpoint", a.checkpoint}, {"steps", ta.steps},        {"batch_size", ta.batch_size},
                      {"lr", ta.lr},                {"seed", a.train.seed},     {"final_loss", r.log_losses.back()},
                      {"seconds", r.seconds}};
  save_toy_classifier(c, train, a.out, a.overwrite);
  out << "wrote " << a.out << "/{classifier.json, classifier.safetensors}\n";
}

void add_toy_subcommands(CLI::App& app, ToyCommand& c) {
  app.fallthrough();
  app.require_subcommand(1);
  add_unknown_word_check(app);
  std::string datasets;
  for (const std::string& n : toy::toy2d_names()) datasets += (datasets.empty() ? "" : " | ") + n;

  ToyTrainArgs& t = c.train;
  CLI::App* tr = app.add_subcommand(
      "train", "train the MLP denoiser on a 2-D dataset (the defaults take about 17 s of one CPU core)");
  c.train_app = tr;
  tr->add_option("--data", t.data, datasets)->capture_default_str();
  tr->add_option("--out", t.out, "output folder: config.json, model.safetensors, ema.safetensors, loss.png")
      ->required();
  tr->add_flag("--overwrite", t.overwrite, "replace an existing --out folder");
  tr->add_option("--steps", t.steps, "training steps")->capture_default_str();
  tr->add_option("--batch-size", t.batch_size, "points per step (fresh draws every step)")->capture_default_str();
  tr->add_option("--lr", t.lr, "AdamW learning rate (linear warm-up over 100 steps)")->capture_default_str();
  add_lr_schedule_flags(*tr, t.lr_schedule);
  tr->add_option("--hidden", t.hidden, "width of the MLP's hidden layers")->capture_default_str();
  tr->add_option("--layers", t.layers, "hidden layers of the MLP")->capture_default_str();
  tr->add_option("--diffusion-steps", t.diffusion_steps, "T, the number of diffusion steps (100 to 1000)")
      ->capture_default_str();
  tr->add_option("--noise-schedule", t.noise_schedule, "linear | cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  tr->add_option("--predict", t.predict, "what the network predicts: eps | x0 | v")
      ->check(CLI::IsMember({"eps", "x0", "v"}))
      ->capture_default_str();
  tr->add_option("--ema-rate", t.ema_rate, "EMA decay (with warm-up)")->capture_default_str();
  tr->add_option("--log-every", t.log_every, "a loss line (and a point of loss.png) every N steps")
      ->capture_default_str();
  tr->add_flag("--class-cond", t.class_cond,
               "condition on the dataset's classes (for guidance: sample --class, guidance)");
  tr->add_option("--class-dropout", t.class_dropout,
                 "with --class-cond: probability of training a sample with the null label instead of its class")
      ->capture_default_str();
  tr->add_option("--posthoc-ema", t.posthoc_ema,
                 "track power-function EMAs of these relative widths (EDM2), e.g. 0.05,0.10, and snapshot them into "
                 "OUT/posthoc/; ddpm-toy posthoc then reconstructs and scores any width");
  tr->add_option("--posthoc-snapshot-every", t.posthoc_snapshot_every,
                 "with --posthoc-ema: a snapshot every N steps and at the last (0: steps / 16)")
      ->capture_default_str();

  ToySampleArgs& s = c.sample;
  CLI::App* sa = app.add_subcommand("sample", "draw samples, score them against the data, and draw the pictures");
  c.sample_app = sa;
  sa->add_option("--checkpoint", s.checkpoint, "a folder written by ddpm-toy train")->required();
  sa->add_option("--out", s.out, "output folder: samples.npz, scatter.png, trajectory.png")->required();
  sa->add_flag("--overwrite", s.overwrite, "replace an existing --out folder");
  std::string samplers;
  for (const std::string& n : toy_sampler_names()) samplers += (samplers.empty() ? "" : " | ") + n;
  sa->add_option("--sampler", s.sampler, samplers)->check(CLI::IsMember(toy_sampler_names()))->capture_default_str();
  sa->add_option("--sampling-steps", s.sampling_steps,
                 "steps of the sampler (heun: noise levels, 2K - 1 evaluations); 0: T for ddpm, 50 for the others")
      ->capture_default_str();
  sa->add_option("--num-samples", s.num_samples, "points to draw (and fresh data points to score them against)")
      ->capture_default_str();
  sa->add_flag("--no-ema", s.no_ema, "sample with the raw trained weights instead of their EMA");
  sa->add_option("--class", s.class_label,
                 "a class-conditional model: draw class K, or 'all' (every class, equal counts, coloured by class)");
  sa->add_option("--guidance-scale", s.guidance_scale,
                 "classifier-free guidance s with --class: eps_u + s (eps_c - eps_u); 1 = conditional, 0 = unconditional")
      ->capture_default_str();

  sa->add_option("--autoguide", s.autoguide,
                 "autoguidance (Karras et al. 2024) by this weaker ddpm-toy train folder of the same data and "
                 "diffusion (e.g. fewer --steps): guide + s (model - guide), s = --guidance-scale; no --class needed");
  sa->add_option("--guidance-interval", s.guidance_interval,
                 "LO,HI: guide only at noise levels sigma = sqrt((1 - abar) / abar) in [LO, HI] (Kynkaanniemi et al. "
                 "2024); default: every step");
  sa->add_option("--classifier", s.classifier,
                 "classifier guidance with --class: a folder of ddpm-toy classifier (ddpm and ddim only)");
  sa->add_option("--classifier-scale", s.classifier_scale, "the classifier guidance scale (needs --classifier)")
      ->capture_default_str();

  ToyClassifierArgs& k = c.classifier;
  CLI::App* cl = app.add_subcommand(
      "classifier", "train the noisy classifier p(y | x_t, t) of classifier guidance for a model folder's data");
  c.classifier_app = cl;
  cl->add_option("--checkpoint", k.checkpoint, "a folder written by ddpm-toy train (its data and diffusion)")
      ->required();
  cl->add_option("--out", k.out, "output folder: classifier.json, classifier.safetensors")->required();
  cl->add_flag("--overwrite", k.overwrite, "replace an existing --out folder");
  cl->add_option("--steps", k.train.steps, "training steps")->capture_default_str();
  cl->add_option("--batch-size", k.train.batch_size, "points per step (fresh draws every step)")->capture_default_str();
  cl->add_option("--lr", k.train.lr, "AdamW learning rate (linear warm-up over 100 steps)")->capture_default_str();
  cl->add_option("--hidden", k.hidden, "width of the classifier's hidden layers")->capture_default_str();
  cl->add_option("--layers", k.layers, "hidden layers of the classifier")->capture_default_str();

  ToyGuidanceArgs& g = c.guidance;
  CLI::App* gu = app.add_subcommand(
      "guidance", "one class at several guidance scales (classifier-free, or --classifier) from one seed: guidance.png, guidance.csv");
  c.guidance_app = gu;
  gu->add_option("--checkpoint", g.checkpoint, "a folder written by ddpm-toy train --class-cond")->required();
  gu->add_option("--out", g.out, "output folder: guidance.png, guidance.csv")->required();
  gu->add_flag("--overwrite", g.overwrite, "replace an existing --out folder");
  gu->add_option("--class", g.class_label, "the class to draw")->required();
  gu->add_option("--scales", g.scales, "comma-separated guidance scales, one panel each")->capture_default_str();
  gu->add_option("--sampler", g.sampler, samplers)->check(CLI::IsMember(toy_sampler_names()))->capture_default_str();
  gu->add_option("--sampling-steps", g.sampling_steps, "steps of the sampler")->capture_default_str();
  gu->add_option("--num-samples", g.num_samples, "points per scale")->capture_default_str();
  gu->add_flag("--no-ema", g.no_ema, "sample with the raw trained weights instead of their EMA");
  gu->add_option("--guidance-interval", g.guidance_interval,
                 "LO,HI: classifier-free guidance only at noise levels sigma in [LO, HI] (Kynkaanniemi et al. 2024)");
  gu->add_option("--classifier", g.classifier,
                 "vary the classifier-guidance scale of this ddpm-toy classifier folder instead (the model unconditional)");

  add_toy_distill_subcommand(app, c);
  add_toy_posthoc_subcommand(app, c);

  ToyForwardArgs& f = c.forward;
  CLI::App* fw = app.add_subcommand("forward", "draw the forward process q(x_t | x_0) at six t: forward.png");
  c.forward_app = fw;
  fw->add_option("--data", f.data, datasets)->capture_default_str();
  fw->add_option("--out", f.out, "output folder: forward.png")->required();
  fw->add_flag("--overwrite", f.overwrite, "replace an existing --out folder");
  fw->add_option("--diffusion-steps", f.diffusion_steps, "T (100 to 1000)")->capture_default_str();
  fw->add_option("--noise-schedule", f.noise_schedule, "linear | cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  fw->add_option("--num-points", f.num_points, "data points per panel")->capture_default_str();
}

void run_toy_command(ToyCommand& c, std::uint64_t seed, std::ostream& out) {
  if (c.train_app != nullptr && c.train_app->parsed()) {
    DDPM_CHECK(c.train.class_cond || c.train_app->count("--class-dropout") == 0,
               "--class-dropout needs --class-cond: an unconditional model has no labels to drop");
    c.train.seed = seed;
    run_toy_train(c.train, out);
  } else if (c.sample_app != nullptr && c.sample_app->parsed()) {
    DDPM_CHECK(!c.sample.classifier.empty() || c.sample_app->count("--classifier-scale") == 0,
               "--classifier-scale needs --classifier: a folder written by ddpm-toy classifier");
    c.sample.seed = seed;
    run_toy_sample(c.sample, out);
  } else if (c.classifier_app != nullptr && c.classifier_app->parsed()) {
    c.classifier.train.seed = seed;
    run_toy_classifier(c.classifier, out);
  } else if (c.guidance_app != nullptr && c.guidance_app->parsed()) {
    c.guidance.seed = seed;
    run_toy_guidance(c.guidance, out);
  } else if (c.distill_app != nullptr && c.distill_app->parsed()) {
    c.distill.seed = seed;
    run_toy_distill(c.distill, out);
  } else if (c.posthoc_app != nullptr && c.posthoc_app->parsed()) {
    c.posthoc.seed = seed;
    run_toy_posthoc(c.posthoc, out);
  } else if (c.forward_app != nullptr && c.forward_app->parsed()) {
    c.forward.seed = seed;
    run_toy_forward(c.forward, out);
  } else {
    DDPM_THROW(ValueError, "ddpm-toy: no subcommand was parsed; expected train, sample, classifier, guidance, distill, posthoc or forward");
  }
}

}  // namespace ddpm::run
