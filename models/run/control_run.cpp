// models/run/control_run.cpp: see control_run.h. ddpm-control train and the subcommands; the
// ControlNet's side of ddpm-sample (--control) is control_sample.cpp.
#include "models/run/control_run.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <filesystem>
#include <ostream>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/parameters.h"
#include "models/data/loader.h"
#include "models/run/checkpoint.h"
#include "models/run/data_spec.h"
#include "engine/io/descriptor.h"
#include "models/run/latent_run.h"
#include "models/run/metrics.h"
#include "models/run/model_source.h"
#include "models/run/posthoc_flags.h"
#include "models/run/sample_run.h"
#include "models/run/stop_signals.h"
#include "models/run/subcommands.h"
#include "models/train/trainer.h"
#include "models/unet/model_io.h"

namespace fs = std::filesystem;

namespace ddpm::run {
namespace {

// The ControlNet's weights are drawn from this stream of --seed, its training draws from the
// trainer's generator (seeded with --seed), the batch order from the loader's.
constexpr std::uint64_t kInitSalt = 0xC0117201ull, kLoaderSalt = 0x10AD3Bull;

void say(std::ostream* log, const std::string& text) {
  if (log) *log << "ddpm-control: " << text << "\n" << std::flush;
}

// The base run: its EMA weights frozen, its config.json and its diffusion settings.
struct BaseRun {
  ModelSource model;
  nlohmann::json config;
  std::unique_ptr<LatentCodec> latent;  // a latent diffusion base's frozen autoencoder (its run's copy)
};

BaseRun open_base(const std::string& dir, Device device) {
  DDPM_CHECK(is_run_folder(dir), "--base " << dir << " is not a ddpm-train run folder (no config.json or checkpoints/)");
  BaseRun b{open_model(dir, device, /*use_ema=*/true), read_run_config(dir), nullptr};
  refuse_vdm_or_ict_model(b.model, dir, "ControlNet (--base)");
  refuse_video_model(b.model, dir, "ControlNet (--base)");
  const std::string ae_dir = find_run_autoencoder(dir);
  if (!ae_dir.empty()) b.latent = std::make_unique<LatentCodec>(ae_dir, device);  // frozen (latent_run.h)
  DDPM_CHECK(!b.model.text, "--base " << dir
                                      << " is text-conditioned (ddpm-train --text-cond): ddpm-control does not pass "
                                         "prompts to its base yet; give a class-conditional or unconditional run");
  DDPM_CHECK(!b.model.net->config().super_res(),
             "--base " << dir << " is a super-resolution model; ddpm-control needs a plain UNet base");
  for (auto& [name, p] : b.model.net->named_parameters()) p.set_requires_grad(false);  // frozen
  return b;
}

nlohmann::json control_config_json(const ControlTrainArgs& a, const BaseRun& b, const unet::ControlNetConfig& cc,
                                   double class_dropout) {
  nlohmann::json j;
  j["architecture"] = kControlNetArchitecture;
  j["hint"] = data::hint_string(data::parse_hint(a.hint));
  j["controlnet"] = unet::controlnet_config_to_json(cc);
  j["base"] = {{"run", fs::absolute(a.base).lexically_normal().string()},
               {"model", unet::config_to_json(b.model.net->config())},
               {"diffusion", diffusion_to_json(b.model.diffusion)}};
  if (b.latent) j["base"]["autoencoder"] = autoencoder_fingerprint(*b.latent);  // pixel bases: no key
  j["data"] = {{"data", a.data}, {"pad_to_32", a.pad_to_32}, {"toy_count", a.toy_count}};
  j["train"] = {{"batch_size", a.batch_size}, {"lr", a.lr},           {"weight_decay", a.weight_decay},
                {"grad_clip", a.grad_clip},   {"ema_rate", a.ema_rate}, {"class_dropout", class_dropout},
                {"seed", a.seed},             {"warmup_steps", a.warmup_steps},
                {"schedule_sampler", a.schedule_sampler},
                {"posthoc_ema", train::parse_sigma_rel_list("--posthoc-ema", a.posthoc_ema)}};
  add_lr_schedule_json(j["train"], a.lr_schedule, a.steps);  // and the decay's horizon (lr_schedule_flags.h)
  j["run"] = {{"steps", a.steps},
              {"save_every", a.save_every},
              {"log_every", a.log_every},
              {"device", a.device.str()},
              {"gradient_checkpointing", a.gradient_checkpointing},
              {"posthoc_snapshot_every", posthoc_snapshot_interval(a.posthoc_snapshot_every, a.save_every)}};
  return j;
}

// Returns the checkpoint to resume from ("" for a new run); writes config.json.
std::string prepare_control_folder(const ControlTrainArgs& a, const nlohmann::json& config, std::ostream* log) {
  std::string resume_dir;
  if (!a.resume.empty()) {
    resume_dir = resolve_checkpoint(a.out, a.resume);
    nlohmann::json saved = read_run_config(a.out), now = config;
    saved.erase("run");
    now.erase("run");
    // Runs from before these were recorded: they ran no warm-up and no learning-rate
    // schedule, drew t uniformly and tracked no power-function EMAs; their latent base's
    // autoencoder cannot be checked (the base's model and diffusion still are).
    if (saved.contains("train") && saved["train"].is_object()) {
      if (!saved["train"].contains("warmup_steps")) saved["train"]["warmup_steps"] = 0;
      default_lr_schedule_json(saved["train"]);
      if (!saved["train"].contains("schedule_sampler")) saved["train"]["schedule_sampler"] = "uniform";
      if (!saved["train"].contains("posthoc_ema")) saved["train"]["posthoc_ema"] = nlohmann::json::array();
    }
    if (saved.contains("base") && !saved["base"].contains("autoencoder") && now["base"].contains("autoencoder"))
      now["base"].erase("autoencoder");
    const std::vector<std::string> diffs = config_differences(saved, now);
    if (!diffs.empty()) {
      std::ostringstream os;
      os << "the control run " << a.out << " was trained with a different configuration than these flags ("
         << diffs.size() << " difference" << (diffs.size() == 1 ? "" : "s") << ", run vs flags):";
      for (std::size_t i = 0; i < diffs.size(); ++i) os << (i ? "; " : " ") << diffs[i];  // one line
      DDPM_THROW(ValueError, os.str());
    }
  } else if (fs::exists(a.out) && is_run_folder(a.out)) {
    DDPM_CHECK(a.overwrite, "--out " << a.out
                                     << " already holds a run; pass --resume latest to continue it, or --overwrite "
                                        "to start a new one there (the old run is moved aside, not deleted)");
    const std::string aside = move_run_aside(a.out);
    say(log, "moved the previous run in " + a.out + " aside to " + aside);
  }
  fs::create_directories(fs::path(a.out) / "checkpoints");
  write_run_config(a.out, config);
  return resume_dir;
}

}  // namespace

void check_control_train_args(const ControlTrainArgs& a) {
  DDPM_CHECK(!a.base.empty(), "--base is required: the ddpm-train run folder whose UNet the ControlNet steers");
  DDPM_CHECK(!a.out.empty(), "--out is required: the folder of the control run");
  data::parse_hint(a.hint);  // ValueError naming the known hints
  DDPM_CHECK(a.steps >= 1, "--steps must be >= 1, got " << a.steps);
  DDPM_CHECK(a.batch_size >= 1, "--batch-size must be >= 1, got " << a.batch_size);
  DDPM_CHECK(std::isfinite(a.lr) && a.lr > 0, "--lr must be a positive number, got " << a.lr);
  DDPM_CHECK(std::isfinite(a.weight_decay) && a.weight_decay >= 0, "--weight-decay must be >= 0, got " << a.weight_decay);
  validate_lr_schedule_flags(a.lr_schedule, a.lr, a.warmup_steps, a.steps);  // --warmup-steps, --lr-schedule, --lr-min
  DDPM_CHECK(std::isfinite(a.grad_clip) && a.grad_clip >= 0, "--grad-clip must be >= 0 (0 = off), got " << a.grad_clip);
  DDPM_CHECK(a.ema_rate >= 0 && a.ema_rate < 1, "--ema-rate must lie in [0, 1), got " << a.ema_rate);
  DDPM_CHECK(a.save_every >= 1, "--save-every must be >= 1, got " << a.save_every);
  DDPM_CHECK(a.log_every >= 1, "--log-every must be >= 1, got " << a.log_every);
  DDPM_CHECK(a.resume.empty() || !a.overwrite, "--resume and --overwrite exclude each other");
  DDPM_CHECK(a.schedule_sampler.empty() || a.schedule_sampler == "uniform" || a.schedule_sampler == "loss-second-moment",
             "--schedule-sampler must be uniform or loss-second-moment, got '" << a.schedule_sampler << "'");
  validate_posthoc_ema_flags(a.posthoc_ema, a.posthoc_snapshot_every);  // and --posthoc-snapshot-every
}

ControlTrainResult train_control_run(const ControlTrainArgs& args, std::ostream* log) {
  check_control_train_args(args);
  const data::HintSpec hint = data::parse_hint(args.hint);
  BaseRun base = open_base(args.base, args.device);
  ControlTrainArgs a = args;
  if (a.data.empty()) {  // the base run's own data
    const nlohmann::json& d = base.config.value("data", nlohmann::json::object());
    DDPM_CHECK(d.contains("data"), "--base " << a.base << " records no data in its config.json; give --data");
    a.data = d.at("data").get<std::string>();
    a.pad_to_32 = d.value("pad_to_32", false);
    a.toy_count = d.value("toy_count", a.toy_count);
  }
  if (a.schedule_sampler.empty())  // the base's (an EDM base records none: sigma is drawn, not t)
    a.schedule_sampler = base.config.value("diffusion", nlohmann::json::object()).value("schedule_sampler", "uniform");
  DDPM_CHECK(!base.model.diffusion.edm || a.schedule_sampler == "uniform",
             "--schedule-sampler " << a.schedule_sampler << " does not apply to the EDM base " << a.base
                                   << ": its training draws the noise level sigma, not a timestep t");
  const unet::UNet& net = *base.model.net;
  const unet::UNetConfig& bc = net.config();

  DataOptions dopt;
  dopt.pad_to_32 = a.pad_to_32;
  dopt.toy_count = a.toy_count;
  dopt.seed = a.seed;
  auto dataset = std::make_shared<Dataset>(load_image_data(parse_data_spec(a.data), dopt, "ddpm-control"));
  // The images (and so the hint) are pixels: a latent base's UNet works on H / f latents.
  const int f = base.latent ? base.latent->factor() : 1;
  const int H = bc.image_size * f, C = base.latent ? base.latent->config().in_channels : bc.in_channels;
  DDPM_CHECK(dataset->height == H && dataset->width == H && dataset->channels == C,
             "--data " << a.data << " has " << dataset->height << "x" << dataset->width << "x" << dataset->channels
                       << " images; the base " << a.base << " makes " << H << "x" << H << "x" << C
                       << (f > 1 ? " (decoded from its latents)" : "")
                       << (dataset->height == 28 && H == 32 ? " (add --pad-to-32)" : ""));
  DDPM_CHECK(bc.num_classes == 0 || (dataset->has_labels() && dataset->num_classes <= bc.num_classes),
             "the base " << a.base << " is class-conditional (" << bc.num_classes << " classes) and --data " << a.data
                         << " has " << (dataset->has_labels() ? std::to_string(dataset->num_classes) : "no")
                         << " labels");
  data::check_hint_fits(hint, H);

  unet::ControlNetConfig cc;
  cc.base = bc;
  cc.conditioning_channels = data::hint_channels(hint, C);
  // A latent base: log2 f stride-2 pairs bring the pixel hint to the latent size (controlnet.h),
  // widths 16, 32, ..., 16 2^k (16, 32 for f <= 2, as in pixel space).
  cc.hint_downsampling_factor = f;
  for (int k = 2; k <= cc.hint_stride2_pairs(); ++k) cc.conditioning_embedding_out_channels.push_back(16 << k);
  const nlohmann::json& train_section = base.config.value("train", nlohmann::json::object());
  const double class_dropout = bc.num_classes > 0 ? train_section.value("class_dropout", 0.1) : 0.0;
  const nlohmann::json config = control_config_json(a, base, cc, class_dropout);
  const std::string resume_dir = prepare_control_folder(a, config, log);

  Generator init_gen(a.seed ^ kInitSalt);
  unet::ControlNet cn(cc, init_gen, a.device);
  cn.copy_encoder_from(net);  // the trainable copy starts as the base's encoder (controlnet.h)
  ParameterSlab slab;
  slab.pack(cn.named_parameters());  // the ControlNet alone: the base has no optimizer state
  const diffusion::DiffusionSchedule schedule(diffusion_betas(base.model.diffusion));

  const nlohmann::json& bd = base.config.value("diffusion", nlohmann::json::object());
  train::TrainerConfig tc;
  // An EDM base (edm.h) keeps its objective: the trainer draws ln sigma ~ N(P_mean, P_std^2)
  // and calls the closure below with c_in x and t = c_noise, so the residuals enter the
  // preconditioned F exactly as they enter a DDPM base's eps (or v, x0) prediction.
  if (base.model.diffusion.edm) {
    tc.objective = train::Objective::edm;
    tc.edm = *base.model.diffusion.edm;
  }
  tc.loss.loss = diffusion::parse_loss_type(bd.value("loss", std::string("simple")));
  tc.loss.mean_type = base.model.diffusion.predict;
  tc.loss.learned_sigma = bc.learn_sigma;
  tc.timesteps = train::parse_timestep_sampling(a.schedule_sampler);
  tc.adamw.lr = a.lr;
  tc.adamw.weight_decay = a.weight_decay;
  tc.warmup_steps = a.warmup_steps;
  apply_lr_schedule(tc, a.lr_schedule, a.steps);
  tc.grad_clip = a.grad_clip;
  tc.ema_rate = a.ema_rate;
  // Power-function EMAs of the ControlNet's slab (the frozen base has nothing to average).
  tc.posthoc_sigma_rels = train::parse_sigma_rel_list("--posthoc-ema", a.posthoc_ema);
  tc.num_classes = bc.num_classes;
  tc.label_dropout = class_dropout;
  tc.seed = a.seed;

  LoaderOptions lopt;
  lopt.batch_size = a.batch_size;
  lopt.seed = a.seed ^ kLoaderSalt;
  lopt.device = a.device;
  BatchLoader loader(dataset, lopt);

  const unet::ControlNet& control = cn;
  train::Trainer* trainer_ptr = nullptr;
  // The batch's hint [B, H, W, Ch] (pixels, also for a latent base whose x is [B, H/f, W/f, z])
  // rides beside the batch rather than in train::Batch::cond, which the trainer concatenates
  // to x_t and so must share its size. The trainer calls the closure with the whole batch
  // (no microbatches here), once or more per step, always after the provider made the batch.
  Tensor batch_hint;
  diffusion::DenoiseFn fn = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    DDPM_CHECK(batch_hint.defined() && batch_hint.dim(0) == x.dim(0),
               "ddpm-control: the network was called with " << x.dim(0) << " samples for a batch of "
                                                            << (batch_hint.defined() ? batch_hint.dim(0) : 0)
                                                            << " hints");
    const unet::ControlResiduals r =
        control.forward(x, t, y, batch_hint,
                        nn::Context{true, &trainer_ptr->dropout_generator(), a.gradient_checkpointing});
    // The frozen base: evaluation mode (its blocks still backpropagate to the residuals).
    return net.forward(x, t, y, nn::Context{false, nullptr, a.gradient_checkpointing}, &r);
  };
  const LatentCodec* latent = base.latent.get();
  train::BatchProvider batches = [&](std::int64_t, Generator& gen) {
    ddpm::Batch b = loader.next();
    batch_hint = data::compute_hint(hint, b.host_images).to(a.device);  // [B, H, W, Ch] from the pixels
    // A latent base: x_0 = s z, z ~ q(z | image), drawn from the trainer's generator as
    // ddpm-train does (latent_run.h), so a resumed run stays bit-identical.
    const Tensor x0 = latent ? latent->encode(b.images, gen) : b.images;
    return train::Batch{x0, bc.num_classes > 0 ? b.labels : std::vector<std::int64_t>{}, Tensor()};
  };
  train::Trainer trainer(slab, fn, schedule, batches, tc);
  trainer_ptr = &trainer;

  if (!resume_dir.empty()) {
    const Checkpoint ck = load_checkpoint(resume_dir);
    train::TrainerState st = restore_trainer_state(ck, resume_dir, cn, slab, a.device);
    if (trainer.importance()) {  // the sampler's loss history, as ddpm-train restores it
      st.importance.emplace(schedule.num_timesteps());
      if (ck.trainer_state.contains("importance_history"))
        st.importance->set_history(ck.trainer_state.at("importance_history").get<std::vector<std::vector<double>>>());
    }
    trainer.load_state(st);
    loader.set_position(checkpoint_loader_position(ck));
    say(log, "resumed from " + resume_dir + " at step " + std::to_string(ck.step));
  }

  ControlTrainResult result;
  result.run_dir = a.out;
  result.last_checkpoint = resume_dir;
  auto save = [&](double last_loss) {
    Checkpoint ck = trainer_checkpoint(trainer, cn, slab, loader.position());
    ck.trainer_state["last_loss"] = last_loss;
    // JSON numbers round-trip doubles exactly, so the resumed sampler draws the same t.
    if (trainer.importance()) ck.trainer_state["importance_history"] = trainer.importance()->history();
    result.last_checkpoint = save_checkpoint(a.out, ck);
  };

  say(log, "base " + a.base + " (" + base.model.weights_path + ", frozen, " + std::to_string(net.num_parameters()) +
               " parameters); ControlNet " + std::to_string(cn.num_parameters()) + " trainable parameters; hint " +
               data::hint_string(hint) + "; t " + a.schedule_sampler + "; " + dataset->describe());
  // metrics.csv / metrics.jsonl / loss.png as ddpm-train writes them (metrics.h): on resume
  // the lines past the checkpoint's step (an interrupted run's) are dropped, so the files
  // describe one continuous run; loss.png is redrawn with each checkpoint.
  MetricsWriter metrics(a.out, !resume_dir.empty(), trainer.step_count());
  double w_loss = 0, w_grad = 0, w_time = 0;
  std::array<double, 4> w_q{};
  std::array<std::int64_t, 4> w_qn{};
  std::int64_t w_steps = 0, last_saved = -1;
  StopSignals stop_signals;  // Ctrl-C / SIGTERM: finish the step, checkpoint it, return (as ddpm-train)
  PosthocSnapshotSchedule posthoc_snapshots(a.out, posthoc_snapshot_interval(a.posthoc_snapshot_every, a.save_every),
                                            a.steps);
  take_peak_mib(a.device.type);  // the first metrics window starts here
  while (trainer.step_count() < a.steps) {
    const auto t0 = std::chrono::steady_clock::now();
    const train::StepMetrics m = trainer.step();
    w_time += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    DDPM_CHECK_AS(!m.skipped, Error,
                  "non-finite loss or gradient at step " << m.step + 1 << " (loss " << m.loss << "); the last good "
                                                         << "checkpoint is "
                                                         << (result.last_checkpoint.empty() ? "none"
                                                                                            : result.last_checkpoint)
                                                         << "; try a lower --lr");
    result.losses.push_back(m.loss);
    w_loss += m.loss;
    w_grad += m.grad_norm;
    ++w_steps;
    for (int q = 0; q < 4; ++q)
      if (m.quartile_count[q] > 0) {
        w_q[q] += m.loss_quartile[q] * static_cast<double>(m.quartile_count[q]);
        w_qn[q] += m.quartile_count[q];
      }
    const std::int64_t done = trainer.step_count();
    if (done % a.log_every == 0 || done == a.steps) {
      MetricsLine line;
      line.step = done;
      line.loss = w_loss / w_steps;
      for (int q = 0; q < 4; ++q)
        line.loss_quartile[q] = w_qn[q] > 0 ? w_q[q] / w_qn[q] : std::numeric_limits<double>::quiet_NaN();
      line.grad_norm = w_grad / w_steps;
      line.lr = m.lr;
      line.images_per_s = static_cast<double>(a.batch_size) * w_steps / std::max(w_time, 1e-9);
      line.peak_mib = take_peak_mib(a.device.type);
      metrics.append(line);
      std::ostringstream os;
      os << "step " << done << "/" << a.steps << "  loss " << line.loss << "  grad norm " << line.grad_norm;
      say(log, os.str());
      w_loss = w_grad = w_time = 0;
      w_q = {};
      w_qn = {};
      w_steps = 0;
    }
    // Post-hoc EMA snapshots (posthoc_flags.h), before the checkpoint of the same step, so a
    // resume from that checkpoint never misses the snapshot.
    posthoc_snapshots.after_step(trainer, slab);
    if (done % a.save_every == 0 || done == a.steps) {
      metrics.write_loss_png();
      save(m.loss);
      last_saved = done;
      say(log, "checkpoint " + result.last_checkpoint);
    }
    if (const int sig = stop_signals.pending(); sig != 0) {
      // The stopping step's snapshot (unless written above) and checkpoint, in that order.
      result.stopped_by_signal = sig;
      posthoc_snapshots.after_step(trainer, slab, /*stopping=*/true);
      if (last_saved != done) {
        metrics.write_loss_png();
        save(m.loss);
      }
      say(log, std::string("stopped by ") + signal_name(sig) + " after step " + std::to_string(done) + "; checkpoint " +
                   result.last_checkpoint + "; continue with --resume latest");
      break;
    }
  }
  result.steps_done = trainer.step_count();
  return result;
}

// --- the program ----------------------------------------------------------------------------

void add_control_subcommands(CLI::App& app, ControlCommand& c) {
  app.fallthrough();  // --device, --seed, --config also work after the subcommand
  app.require_subcommand(1);
  add_unknown_word_check(app);
  ControlTrainArgs& t = c.train;
  CLI::App* tr = app.add_subcommand("train", "train a ControlNet on a frozen ddpm-train run (Zhang et al. 2023)");
  c.train_app = tr;
  tr->add_option("--base", t.base, "the ddpm-train run folder whose UNet (latest EMA weights) stays frozen")->required();
  tr->add_option("--hint", t.hint, "the spatial condition computed from each image: " + data::hint_help())
      ->capture_default_str();
  tr->add_option("--data", t.data,
                 "fashion-mnist[:DIR] | idx:IMAGES[,LABELS] | cifar10:DIR | folder:DIR | toy; default: the base run's "
                 "data, padding and toy count");
  tr->add_flag("--pad-to-32", t.pad_to_32, "centre 28x28 images on 32x32 (as the base was trained)");
  tr->add_option("--toy-count", t.toy_count, "images of --data toy")->capture_default_str();
  tr->add_option("--out", t.out, "the control run folder: config.json, checkpoints/")->required();
  tr->add_option("--resume", t.resume, "continue the run in --out: latest or a checkpoint folder");
  tr->add_flag("--overwrite", t.overwrite, "start a new run in an --out that holds one (the old is moved aside)");
  tr->add_option("--steps", t.steps, "total training steps")->capture_default_str();
  tr->add_option("--batch-size", t.batch_size, "images per step")->capture_default_str();
  tr->add_option("--lr", t.lr, "AdamW learning rate")->capture_default_str();
  tr->add_option("--weight-decay", t.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  add_warmup_and_lr_schedule_flags(*tr, t.warmup_steps, t.lr_schedule);
  tr->add_option("--grad-clip", t.grad_clip, "max global gradient norm (0 = off)")->capture_default_str();
  tr->add_option("--ema-rate", t.ema_rate, "EMA decay of the ControlNet's weights (warmed up)")->capture_default_str();
  tr->add_option("--save-every", t.save_every, "checkpoint every N steps (and at the end)")->capture_default_str();
  tr->add_option("--log-every", t.log_every, "print the mean loss every N steps")->capture_default_str();
  tr->add_flag("--gradient-checkpointing", t.gradient_checkpointing,
               "recompute the blocks' activations in the backward (less memory, ~1/3 more compute)");
  tr->add_option("--schedule-sampler", t.schedule_sampler,
                 "uniform | loss-second-moment: how t is drawn (default: the base run's setting)");
  add_posthoc_ema_flags(*tr, t.posthoc_ema, t.posthoc_snapshot_every, "CTRL");
  c.eval_app = add_control_eval_subcommand(app, c.eval);
}

int run_control_command(ControlCommand& c, Device device, std::uint64_t seed, std::ostream& out) {
  if (c.eval_app != nullptr && c.eval_app->parsed()) {
    c.eval.device = device;
    c.eval.seed = seed;
    run_control_eval(c.eval, out);
    return 0;
  }
  DDPM_CHECK(c.train_app != nullptr && c.train_app->parsed(),
             "ddpm-control: no subcommand was parsed; expected train or eval");
  c.train.device = device;
  c.train.seed = seed;
  const ControlTrainResult r = train_control_run(c.train, &out);
  out << "ddpm-control: trained " << r.steps_done << " steps; last checkpoint " << r.last_checkpoint << "\n";
  return r.stopped_by_signal != 0 ? 128 + r.stopped_by_signal : 0;
}

}  // namespace ddpm::run
