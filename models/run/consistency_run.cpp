// models/run/consistency_run.cpp: the loop and the folder of `ddpm-distill --method
// consistency` (contract in consistency_run.h; the math in models/diffusion/consistency.h).
//
// Order of work, as distill_run.cpp: options, teacher and its refusals, a latent teacher's
// autoencoder, the data, the --out folder, all before the first step. Three networks live on
// the device: the frozen teacher and the target network (eval mode, no-grad) and the student
// (training mode, its parameters in one slab for AdamW, the EMA and the target update).
// The run's state is saved by save_state (distill_state.h: periodically and on a stop) and,
// with --resume, restored before the loop; the loop itself is the one an uninterrupted run
// goes through.
#include "models/run/consistency_run.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/seed_streams.h"
#include "models/data/loader.h"
#include "models/run/checkpoint.h"
#include "models/run/consistency_state.h"
#include "models/run/data_spec.h"
#include "models/run/distill_record.h"
#include "models/run/distill_state.h"
#include "models/run/distill_teacher.h"
#include "models/run/guided_distill.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/run/posthoc_export.h"
#include "models/run/stop_signals.h"
#include "models/train/trainer.h"  // warmup_lr
#include "models/unet/model_io.h"

namespace fs = std::filesystem;

namespace ddpm::run {

namespace {

constexpr const char* kConsistencyKey = "consistency";  // inside the "distillation" section
// Independent streams of one seed (engine/seed_streams.h).
constexpr std::uint64_t kDrawStream = 0, kLoaderStream = 1, kDropoutStream = 2, kGapStream = 3, kGapLoaderStream = 4;
// --guided: linear_1 of the fresh guidance embedding (student and theta^- alike).
constexpr std::uint64_t kGuidedInitStream = 5;

void say(const ConsistencyOptions& o, const std::string& line) {
  if (o.log) o.log(line);
}

std::vector<std::int64_t> uniform_levels(std::int64_t count, std::int64_t N, Generator& gen) {  // in 1..N
  std::vector<std::int64_t> out;
  for (double u : rand({count}, gen, Device::cpu(), DType::f64).to_double_vector())
    out.push_back(1 + std::min<std::int64_t>(N - 1, static_cast<std::int64_t>(u * static_cast<double>(N))));
  return out;
}

std::vector<std::int64_t> drop_labels(std::vector<std::int64_t> labels, int num_classes, double p, Generator& gen) {
  if (num_classes == 0) return {};
  if (p > 0) {
    const std::vector<double> u = rand({static_cast<std::int64_t>(labels.size())}, gen, Device::cpu(), DType::f64)
                                      .to_double_vector();
    for (std::size_t k = 0; k < u.size(); ++k)
      if (u[k] < p) labels[k] = num_classes;  // the null label
  }
  return labels;
}

}  // namespace

void check_consistency_options(const ConsistencyOptions& o) {
  DDPM_CHECK(!o.teacher.empty(), "--teacher is required: a ddpm-train run or checkpoint folder");
  DDPM_CHECK(!o.out.empty(), "--out is required: the folder to write the consistency model to");
  DDPM_CHECK(o.levels >= 1, "--consistency-levels must be at least 1, got " << o.levels);
  DDPM_CHECK(o.steps >= 1, "--steps must be positive, got " << o.steps);
  DDPM_CHECK(o.batch_size >= 1 && o.batch_size <= 65536, "--batch-size must be in [1, 65536], got " << o.batch_size);
  DDPM_CHECK(o.lr > 0 && std::isfinite(o.lr), "--lr must be positive, got " << o.lr);
  DDPM_CHECK(o.warmup_steps >= 0, "--warmup-steps must be >= 0, got " << o.warmup_steps);
  DDPM_CHECK(o.grad_clip >= 0 && std::isfinite(o.grad_clip), "--grad-clip must be >= 0, got " << o.grad_clip);
  DDPM_CHECK(o.ema_rate >= 0 && o.ema_rate < 1, "--ema-rate must be in [0, 1), got " << o.ema_rate);
  DDPM_CHECK(o.target_ema >= 0 && o.target_ema < 1,
             "--target-ema must be in [0, 1) (0: the target is the student itself, as in iCT), got " << o.target_ema);
  (void)diffusion::parse_consistency_distance(o.loss);
  DDPM_CHECK(o.label_dropout <= 1 && std::isfinite(o.label_dropout),
             "--label-dropout must be in [0, 1] (or negative for the teacher's), got " << o.label_dropout);
  if (!o.guided.empty()) (void)parse_guided_range(o.guided);
  DDPM_CHECK(o.log_every >= 1, "--log-every must be positive, got " << o.log_every);
  DDPM_CHECK(o.gap_samples >= 1 && o.gap_samples <= 4096, "--gap-samples must be in [1, 4096], got " << o.gap_samples);
  DDPM_CHECK(o.checkpoint_every >= 0,
             "--checkpoint-every must be >= 0 (0: the state is saved only on a stop signal), got " << o.checkpoint_every);
  std::error_code ec;
  DDPM_CHECK(!fs::exists(o.out, ec) || fs::is_directory(o.out, ec), "--out " << o.out << " exists and is not a folder");
  const bool empty = !fs::is_directory(o.out, ec) || fs::is_empty(o.out, ec);
  if (o.resume) {  // the run's own OUT, published before a crash removed the state, is republished
    DDPM_CHECK(o.overwrite || empty || is_consistency_folder(o.out),
               "--out " << o.out << " exists and is not empty, and the run being resumed was started without "
                        << "--overwrite: move " << o.out << " away to continue it");
    return;
  }
  DDPM_CHECK(o.overwrite || empty, "--out " << o.out << " exists and is not empty; pass --overwrite to replace it");
  DDPM_CHECK(o.overwrite || !fs::exists(distill_state_dir(o.out), ec),
             "--out " << o.out << ": " << distill_state_dir(o.out) << " holds the saved state of a stopped run; continue "
                      << "it with ddpm-distill --resume --out " << o.out << ", or pass --overwrite to start a new one");
}

ConsistencyResult consistency_run(const ConsistencyOptions& given) {
  ConsistencyOptions o = given;
  std::optional<DistillState> resumed;  // --resume: the saved run and the options it ran with
  if (o.resume) {
    DDPM_CHECK(!o.out.empty(), "--resume needs --out: the folder of the run to continue");
    if (std::optional<ConsistencyResult> done = completed_consistency_run(o)) return *done;
    resumed = resume_consistency_state(o);
  }
  check_consistency_options(o);
  const diffusion::ConsistencyDistance distance = diffusion::parse_consistency_distance(o.loss);
  ModelSource teacher = open_teacher(o.teacher, o.device);  // refuses a text model (distill_teacher.h)
  const unet::UNetConfig cfg = teacher.net->config();
  const DiffusionSettings& d = teacher.diffusion;
  DDPM_CHECK(!d.edm, "--teacher " << o.teacher << " was trained with the EDM objective: consistency distillation "
                                  << "here runs on the DDPM timestep grid (distil a DDPM-objective run)");
  DDPM_CHECK(!cfg.super_res(), "--teacher " << o.teacher << " is a super-resolution model: ddpm-distill does not "
                                            << "provide its low-resolution condition");
  DDPM_CHECK(!cfg.guidance_embedding, "--teacher " << o.teacher << " is guidance-distilled (it takes a guidance "
                                                   << "weight): consistency distillation of it is not implemented");
  check_diffusion_settings(d);
  const diffusion::DiffusionSchedule schedule(diffusion_betas(d));
  diffusion::check_mean_type_for_schedule(schedule, d.predict, "ddpm-distill");
  const diffusion::ConsistencyGrid grid = diffusion::consistency_grid(d.diffusion_steps, o.levels);
  const std::optional<GuidedRange> guided =
      o.guided.empty() ? std::nullopt : std::optional<GuidedRange>(parse_guided_range(o.guided));
  DDPM_CHECK(!guided || cfg.num_classes > 0,
             "--guided " << o.guided << " distils classifier-free guidance, and --teacher " << o.teacher
                         << " is unconditional (it has no null label to guide away from): distil a class-conditional "
                            "run, or drop --guided");

  const TeacherData td = open_teacher_data(o.teacher, cfg, o.data, o.device);  // distill_teacher.h
  const LatentCodec* latent = td.latent.get();
  const std::shared_ptr<Dataset>& data = td.data;
  const int num_classes = cfg.num_classes;
  double dropout = o.label_dropout;
  if (dropout < 0) dropout = guided ? 0.0 : td.class_dropout;  // guided: the conditional labels (LCM)
  if (num_classes == 0) dropout = 0;

  say(o, "ddpm-distill: consistency distillation (Song et al. 2023, on the DDPM grid as LCM) of " + o.teacher +
             " (" + teacher.kind + "), predicts " + diffusion::model_mean_type_name(d.predict) + ", T = " +
             std::to_string(d.diffusion_steps) + "; " + data->describe());
  say(o, "ddpm-distill: " + std::to_string(o.levels) + " levels (DDIM stride " +
             std::to_string(d.diffusion_steps / o.levels) + "), " + std::to_string(o.steps) + " steps of batch " +
             std::to_string(o.batch_size) + ", " + o.loss + " loss, target EMA " + fmt_log(o.target_ema) +
             (num_classes > 0 ? ", label dropout " + fmt_log(dropout) : std::string()));
  if (guided)
    say(o, "ddpm-distill: guided consistency distillation (LCM) of guidance scales s in [" +
               fmt_log(guided->scale_min) + ", " + fmt_log(guided->scale_max) + "] (w = s - 1): the teacher's step "
               "uses (1 + w) eps_c - w eps_u, the student takes w");

  // Student and target: copies of the teacher (the target follows the student, consistency_run.h).
  ModelSource student = open_model(o.teacher, o.device, true);
  ModelSource target = open_model(o.teacher, o.device, true);
  if (guided) {  // one fresh embedding for both (last linear zero): theta^- = theta = the teacher's conditional branch
    student.net = with_guidance_embedding(*student.net, splitmix64_stream(o.seed, kGuidedInitStream));
    target.net = with_guidance_embedding(*target.net, splitmix64_stream(o.seed, kGuidedInitStream));
  }
  ParameterSlab slab, target_slab;
  slab.pack(student.net->named_parameters());
  target_slab.pack(target.net->named_parameters());
  const diffusion::DenoiseFn teacher_fn = weighted_denoiser(*teacher.net, {});
  Generator dropout_gen(splitmix64_stream(o.seed, kDropoutStream));
  diffusion::DenoiserReading reading;
  reading.type = d.predict;
  reading.learned_sigma = cfg.learn_sigma;
  reading.clip_x0 = false;  // the ODE's x^ is not clamped (LCM's DDIM solver has no clamp)

  const StudentData sd = student_data(td, o.batch_size, o.gap_samples, splitmix64_stream(o.seed, kLoaderStream),
                                      splitmix64_stream(o.seed, kGapLoaderStream), o.device);  // distill_teacher.h
  BatchLoader loader(data, sd.loader);
  const Batch& gap_batch = sd.held_out;
  const Tensor& gap_x0 = sd.held_out_x0;

  // The held-out figure: z at L_N (fixed noise), the teacher's N-step endpoint computed once.
  Generator gap_gen(splitmix64_stream(o.seed, kGapStream));
  const std::vector<std::int64_t> gap_labels = num_classes > 0 ? gap_batch.labels : std::vector<std::int64_t>{};
  // --guided: the gap at the fixed middle of the range (consistency_run.h), teacher and student alike.
  const double gap_scale = guided ? (guided->scale_min + guided->scale_max) / 2 : 1.0;
  const std::vector<double> gap_w = guided ? std::vector<double>(gap_labels.size(), gap_scale - 1.0)
                                           : std::vector<double>{};
  const diffusion::TeacherGuidance gap_guidance{gap_w, num_classes};
  const diffusion::DenoiseFn student_eval = weighted_denoiser(*student.net, gap_w);
  const Tensor gap_z = diffusion::q_sample(schedule, gap_x0,
                                           diffusion::Timesteps(static_cast<std::size_t>(gap_x0.dim(0)), grid.levels.back()),
                                           randn(gap_x0.shape(), gap_gen, gap_x0.device(), gap_x0.dtype()));
  const Tensor gap_end =
      diffusion::teacher_ode_endpoint(schedule, teacher_fn, reading, grid, gap_z, gap_labels, gap_guidance);
  ConsistencyResult result;  // a resumed run keeps the saved gap_before (of the student at step 0)
  result.gap_before = resumed && resumed->has_gap_before
                          ? resumed->gap_before
                          : diffusion::one_step_endpoint_gap(schedule, student_eval, reading, grid, gap_z, gap_end,
                                                             gap_labels);

  AdamWConfig ac;
  ac.lr = o.lr;
  AdamW opt(slab, ac);
  Ema ema(slab, o.ema_rate);
  StopSignals stop_signals;
  Generator gen(splitmix64_stream(o.seed, kDrawStream));
  const auto t0 = std::chrono::steady_clock::now();
  double window = 0, seconds_before = 0;
  std::int64_t window_n = 0, step = 0;
  result.final_loss = NAN;
  // The loop's objects a saved state records (distill_state.h), the target network beside them.
  const DistillProgress progress{gen, dropout_gen, loader, slab, ema, opt, result.final_loss, window, window_n,
                                 result.losses};
  // The run's state: everything the steps after `done` depend on.
  const nlohmann::json options_json = consistency_options_json(o);
  const auto save_state = [&](std::int64_t done) {
    DistillState st = capture_distill_progress(
        progress, done, result.gap_before,
        seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    st.method = kConsistencyMethod;
    st.options = options_json;
    st.flats.push_back({"target", target_slab.values(), &target_slab});
    save_distill_state(o.out, st);
  };
  if (resumed) {
    restore_distill_progress(*resumed, o.out, progress);
    Tensor tv = target_slab.values();  // a handle on the target's slab
    tv.copy_from(distill_state_flat(*resumed, o.out, "target", target_slab, o.device));
    step = resumed->step;
    seconds_before = resumed->seconds;
    result.steps_done = step;
    say(o, "ddpm-distill: resumed after step " + std::to_string(step) + "/" + std::to_string(o.steps) + " from " +
               distill_state_dir(o.out));
  }
  for (; step < o.steps; ++step) {
    if ((result.stopped_by_signal = stop_signals.pending()) != 0) break;  // between steps only
    const Batch b = loader.next();
    const Tensor x0 = latent ? latent->encode(b.images, gen) : b.images;
    const std::vector<std::int64_t> upper = uniform_levels(x0.dim(0), grid.num_levels(), gen);
    const std::vector<std::int64_t> labels = drop_labels(b.labels, num_classes, dropout, gen);
    const Tensor eps = randn(x0.shape(), gen, x0.device(), x0.dtype());
    // --guided: the examples' w, drawn last (consistency_run.h); none otherwise.
    const diffusion::TeacherGuidance guidance{
        guided ? draw_guidance_weights(x0.dim(0), *guided, gen) : std::vector<double>{}, num_classes};
    const diffusion::ConsistencyExamples e = diffusion::consistency_examples(schedule, grid, x0, upper, eps);
    const diffusion::DenoiseFn target_fn = weighted_denoiser(*target.net, guidance.w);
    const diffusion::DenoiseFn student_train =
        weighted_denoiser(*student.net, guidance.w, nn::Context{true, &dropout_gen});
    const Tensor tgt =
        diffusion::consistency_target(schedule, teacher_fn, target_fn, reading, grid, e, labels, guidance);
    slab.zero_grad();
    const Tensor fz = diffusion::consistency_function(schedule, student_train, reading, grid, e.z, e.upper, labels);
    Tensor loss = diffusion::consistency_loss(fz, tgt, distance);
    loss.backward();
    if (apply_distill_step(progress, loss.item(), o.grad_clip, o.lr, o.warmup_steps, step)) {
      NoGradGuard no_grad;  // theta^- <- mu theta^- + (1 - mu) theta (CM Algorithm 2)
      Tensor tv = target_slab.values();
      tv.copy_from(add(scale(tv, o.target_ema), scale(slab.values(), 1.0 - o.target_ema)));
    }
    result.steps_done = step + 1;
    const std::string line = close_loss_window(progress, step + 1, o.steps, o.log_every);
    if (!line.empty()) say(o, line);
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < o.steps) save_state(step + 1);
  }
  if (result.stopped_by_signal != 0) {
    save_state(step);  // SIGTERM loses nothing: --resume continues after this step
    say(o, std::string("ddpm-distill: stopped by ") + signal_name(result.stopped_by_signal) + " after step " +
               std::to_string(step) + "/" + std::to_string(o.steps) + "; --out not written" +
               (o.overwrite ? " (the old --out is untouched)" : "") + "; the run's state is saved in " +
               distill_state_dir(o.out) + ": continue with ddpm-distill --resume --out " + o.out);
    return result;
  }
  const double seconds = seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ema.copy_to(slab);
  result.gap_after = diffusion::one_step_endpoint_gap(schedule, student_eval, reading, grid, gap_z, gap_end, gap_labels);

  nlohmann::json config = td.config;
  if (config.empty()) {
    config["model"] = unet::config_to_json(cfg);
    config["diffusion"] = diffusion_to_json(d);
  }
  if (guided) config["model"] = unet::config_to_json(student.net->config());  // with guidance_embedding
  config.erase("posthoc_ema");
  config.erase("distill");
  config["data"] = student_data_section(td, sd.loader);
  std::string autoencoder_home = o.teacher;
  if (latent) {
    config["autoencoder"]["folder"] = fs::path(td.autoencoder_dir).filename().string();
    autoencoder_home = fs::path(td.autoencoder_dir).parent_path().string();
  }
  DistillationRecord how;
  how.round = 1;
  how.sampling_steps = 1;  // ddpm-sample's K when --sampling-steps is 0
  how.sampler = "consistency";
  how.clip_x0 = false;
  how.teacher = o.teacher;
  how.guided = guided;  // ddpm-sample's trained range of --guidance-scale
  nlohmann::json rec = distillation_record_json(how);
  rec[kConsistencyKey] = {{"levels", grid.num_levels()},
                          {"timesteps", diffusion::Timesteps(grid.levels.begin() + 1, grid.levels.end())},
                          {"sigma_data", grid.sigma_data},
                          {"timestep_scale", grid.timestep_scale},
                          {"c_skip", "sigma_data^2 / ((s (t + 1))^2 + sigma_data^2), 1 at clean"},
                          {"c_out", "s (t + 1) / sqrt((s (t + 1))^2 + sigma_data^2), 0 at clean"},
                          {"loss", o.loss},
                          {"target_ema", o.target_ema},
                          {"ema_rate", o.ema_rate},
                          {"steps", o.steps},
                          {"batch_size", o.batch_size},
                          {"lr", o.lr},
                          {"label_dropout", dropout},
                          {"seed", o.seed},
                          {"final_loss", result.final_loss},
                          {"gap_before", result.gap_before},
                          {"gap_after", result.gap_after},
                          {"gap_guidance_scale", gap_scale},
                          {"seconds", seconds}};
  config[kDistillationSection] = rec;
  std::vector<std::pair<std::string, Tensor>> weights;
  append_slab(slab.values(), "", slab, weights);
  write_ema_model_folder(config, autoencoder_home, weights,
                         {{"ddpm.distill_method", "consistency"}, {"ddpm.consistency_levels", std::to_string(o.levels)}},
                         o.out, o.overwrite || (o.resume && is_consistency_folder(o.out)));
  std::error_code ec;
  fs::remove_all(distill_state_dir(o.out), ec);  // published: nothing to resume
  result.folder = o.out;
  say(o, "consistency: final loss " + fmt_log(result.final_loss) + "; held-out gap of one step to the teacher's " +
             std::to_string(o.levels) + "-step DDIM endpoint " + fmt_log(result.gap_before) + " -> " +
             fmt_log(result.gap_after) + "; " + fmt_log(seconds) + " s; published " + o.out);
  say(o, "sample: ddpm-sample --checkpoint " + o.out + " --sampler consistency --sampling-steps 1" +
             (guided ? " --guidance-scale " + fmt_log(gap_scale) : std::string()) + " (or 2 .. " +
             std::to_string(o.levels) + " steps" +
             (guided ? ", s in [" + fmt_log(guided->scale_min) + ", " + fmt_log(guided->scale_max) + "]" : std::string()) +
             ")");
  return result;
}

std::optional<diffusion::ConsistencyGrid> read_consistency_grid(const std::string& checkpoint, std::int64_t T) {
  const std::optional<DistillationRecord> r = read_distillation_record(checkpoint);
  if (!r || r->sampler != "consistency") return std::nullopt;
  const std::string path = model_config_path(checkpoint);
  const nlohmann::json j = nlohmann::json::parse(read_file(path), nullptr, false);
  const nlohmann::json& s = j.at(kDistillationSection);
  DDPM_CHECK(s.contains(kConsistencyKey) && s.at(kConsistencyKey).is_object() &&
                 s.at(kConsistencyKey).contains("levels") && s.at(kConsistencyKey).at("levels").is_number_integer(),
             path << ": a consistency model's \"" << kDistillationSection << "\" section needs \"" << kConsistencyKey
                  << "\": {\"levels\": N, ...}");
  const nlohmann::json& c = s.at(kConsistencyKey);
  const diffusion::ConsistencyGrid g = diffusion::consistency_grid(T, c.at("levels").get<std::int64_t>());
  DDPM_CHECK(c.value("sigma_data", g.sigma_data) == g.sigma_data &&
                 std::abs(c.value("timestep_scale", g.timestep_scale) - g.timestep_scale) <= 1e-12 * g.timestep_scale,
             path << ": the consistency record's sigma_data " << c.value("sigma_data", g.sigma_data)
                  << " and timestep_scale " << c.value("timestep_scale", g.timestep_scale) << " are not this "
                  << "engine's (" << g.sigma_data << ", " << g.timestep_scale << " at T = " << T
                  << "): c_skip and c_out would differ from the ones it was trained with");
  return g;
}

void add_consistency_flags(CLI::App& app, ConsistencyFlags& f) {
  app.add_option("--method", f.method,
                 "progressive (Salimans & Ho 2022, the default) or consistency (Song et al. 2023 consistency "
                 "distillation on the DDPM grid, as LCM: one folder OUT sampled with ddpm-sample --sampler "
                 "consistency in 1 to a few steps; stopped runs resume with --resume like progressive ones; with "
                 "--resume the saved run's method is the default)")
      ->check(CLI::IsMember({"progressive", "consistency"}))
      ->capture_default_str();
  app.add_option("--consistency-levels", f.o.levels,
                 "consistency: the N levels of the teacher's DDIM ODE (must divide T; LCM uses 50 at T = 1000)")
      ->capture_default_str();
  app.add_option("--steps", f.o.steps, "consistency: optimiser steps")->capture_default_str();
  app.add_option("--target-ema", f.o.target_ema, "consistency: EMA rate mu of the target network (CM: 0.95)")
      ->capture_default_str();
  app.add_option("--consistency-loss", f.o.loss, "consistency: l2 or pseudo-huber (iCT, c = 0.00054 sqrt(dim))")
      ->capture_default_str();
}

std::optional<int> consistency_cli_main(const CLI::App& app, const DistillOptions& d, ConsistencyFlags& f) {
  bool consistency = f.method == kConsistencyMethod;
  if (d.resume && app.count("--method") == 0 && !d.out.empty()) {  // the method of the run being resumed
    const std::optional<std::string> saved = saved_distill_method(d.out);
    consistency = saved ? *saved == kConsistencyMethod : is_consistency_folder(d.out);
  }
  for (const char* flag : {"--consistency-levels", "--steps", "--target-ema", "--consistency-loss"})
    DDPM_CHECK(consistency || app.count(flag) == 0, flag << " applies to --method consistency only");
  if (!consistency) return std::nullopt;
  for (const char* flag : {"--teacher-steps", "--rounds", "--steps-per-round", "--guided-steps"})
    DDPM_CHECK(app.count(flag) == 0, flag << " applies to --method progressive only; --method consistency takes "
                                             "--consistency-levels and --steps (and --guided S_MIN,S_MAX)");
  ConsistencyOptions& o = f.o;
  o.teacher = d.teacher;
  o.batch_size = d.batch_size;
  o.lr = d.lr;
  o.warmup_steps = d.warmup_steps;
  o.grad_clip = d.grad_clip;
  o.ema_rate = d.ema_rate;
  o.data = d.data;
  o.label_dropout = d.label_dropout;
  o.guided = d.guided;
  o.log_every = d.log_every;
  o.gap_samples = d.gap_samples;
  o.seed = d.seed;
  o.out = d.out;
  o.overwrite = d.overwrite;
  o.checkpoint_every = d.checkpoint_every;
  o.resume = d.resume;
  o.flags_given = d.flags_given;
  o.device = d.device;
  o.log = d.log;
  const ConsistencyResult r = consistency_run(o);
  return r.stopped_by_signal != 0 ? 128 + r.stopped_by_signal : 0;
}

}  // namespace ddpm::run
