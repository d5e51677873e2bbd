// models/run/distill_run.cpp: the loop and the folders of ddpm-distill (contract in
// distill_run.h; the math in models/diffusion/progressive_distill.h).
//
// Order of work: the options, the teacher (open_model, EMA weights), its refusals, a latent
// teacher's autoencoder, the data and the --out folder are all checked before the first
// training step. Two networks live on the device: the frozen teacher (eval mode, run under
// no-grad) and the student (training mode, its parameters packed in one slab for AdamW and
// the EMA). Between rounds both take the finished round's EMA weights. Each round is
// published as it ends (publish_round); the stop-signal flag is polled before every step.
// The round in progress is saved by save_state (models/run/distill_state.h: periodically, at
// round starts, on a stop) and, with --resume, restored before the loop and at the start of
// its round; the loop itself is the one an uninterrupted run goes through. Stage 1 of guided
// distillation is the loop's index -1 (round 0, published as round_0): saved, resumed and
// published like any round.
#include "models/run/distill_run.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/seed_streams.h"
#include "models/data/loader.h"
#include "models/diffusion/progressive_distill.h"
#include "models/run/checkpoint.h"
#include "models/run/data_spec.h"
#include "models/run/distill_record.h"
#include "models/run/distill_state.h"
#include "models/run/distill_teacher.h"
#include "models/run/guided_distill.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/run/posthoc_export.h"
#include "models/run/stop_signals.h"
#include "models/unet/model_io.h"
#include "models/train/trainer.h"  // warmup_lr

namespace fs = std::filesystem;

namespace ddpm::run {

namespace {

void say(const DistillOptions& o, const std::string& line) {
  if (o.log) o.log(line);
}

// Independent streams of one seed (engine/seed_streams.h), as ddpm-train derives its own.
constexpr std::uint64_t kDrawStream = 0, kLoaderStream = 1, kDropoutStream = 2, kGapStream = 3, kGapLoaderStream = 4;
// Guided distillation: the fresh embedding's linear_1 and stage 1's held-out examples (the
// rounds' gap streams are kGapStream + 16 r).
constexpr std::uint64_t kGuidedInitStream = 5, kGuidedGapStream = 6;

// A uniform draw in {0..n-1} per sample, from one rand tensor of the generator.
std::vector<std::int64_t> uniform_indices(std::int64_t count, std::int64_t n, Generator& gen) {
  std::vector<std::int64_t> out;
  for (double u : rand({count}, gen, Device::cpu(), DType::f64).to_double_vector())
    out.push_back(std::min<std::int64_t>(n - 1, static_cast<std::int64_t>(u * static_cast<double>(n))));
  return out;
}

// One batch of examples of a round: z_t = q_sample(x_0, t, eps) at student indices i, and the
// labels (each replaced by the null label with probability `dropout`; empty when unconditional).
// Guided distillation adds each example's guidance weight w (guided_distill.h), drawn last.
struct Examples {
  Tensor z;
  std::vector<std::int64_t> index, labels;
  diffusion::Timesteps t;
  std::vector<double> w;  // empty unless guided
};
Examples draw_examples(const diffusion::DiffusionSchedule& s, const diffusion::DistillGrid& g, const Tensor& x0,
                       const std::vector<std::int64_t>& labels, int num_classes, double dropout, Generator& gen,
                       const std::optional<GuidedRange>& guided) {
  Examples e;
  const std::int64_t n = x0.dim(0);
  e.index = uniform_indices(n, g.student_steps(), gen);
  for (std::int64_t i : e.index) e.t.push_back(g.student[static_cast<std::size_t>(i)]);
  if (num_classes > 0) {
    e.labels = labels;
    if (dropout > 0) {
      const std::vector<double> u = rand({n}, gen, Device::cpu(), DType::f64).to_double_vector();
      for (std::size_t k = 0; k < u.size(); ++k)
        if (u[k] < dropout) e.labels[k] = num_classes;  // the null label
    }
  }
  const Tensor eps = randn(x0.shape(), gen, x0.device(), x0.dtype());
  e.z = diffusion::q_sample(s, x0, e.t, eps);
  if (guided) e.w = draw_guidance_weights(n, *guided, gen);
  return e;
}

// A network at inference, with the examples' guidance weights (a guided run) or none.
diffusion::DenoiseFn eval_fn(const unet::UNet& net, const std::vector<double>& w = {}) {
  return weighted_denoiser(net, w);
}

}  // namespace

void check_distill_options(const DistillOptions& o) {
  DDPM_CHECK(!o.teacher.empty(), "--teacher is required: a ddpm-train run or checkpoint folder");
  DDPM_CHECK(!o.out.empty(), "--out is required: the folder to write the rounds to");
  DDPM_CHECK(o.teacher_steps >= 2, "--teacher-steps must be at least 2, got " << o.teacher_steps);
  DDPM_CHECK(o.rounds >= (o.guided.empty() ? 1 : 0) && o.rounds <= 12,
             "--rounds must be in [" << (o.guided.empty() ? "1" : "0 (--guided: stage 1 only)") << ", 12], got "
                                     << o.rounds);
  if (!o.guided.empty()) (void)parse_guided_range(o.guided);
  DDPM_CHECK(o.guided_steps >= 0, "--guided-steps must be >= 0 (0: --steps-per-round), got " << o.guided_steps);
  DDPM_CHECK(o.guided_steps == 0 || !o.guided.empty(), "--guided-steps " << o.guided_steps << " needs --guided");
  DDPM_CHECK(o.steps_per_round >= 1, "--steps-per-round must be positive, got " << o.steps_per_round);
  DDPM_CHECK(o.batch_size >= 1 && o.batch_size <= 65536, "--batch-size must be in [1, 65536], got " << o.batch_size);
  DDPM_CHECK(o.lr > 0 && std::isfinite(o.lr), "--lr must be positive, got " << o.lr);
  DDPM_CHECK(o.warmup_steps >= 0, "--warmup-steps must be >= 0, got " << o.warmup_steps);
  DDPM_CHECK(o.grad_clip >= 0 && std::isfinite(o.grad_clip), "--grad-clip must be >= 0, got " << o.grad_clip);
  DDPM_CHECK(o.ema_rate >= 0 && o.ema_rate < 1, "--ema-rate must be in [0, 1), got " << o.ema_rate);
  DDPM_CHECK(o.label_dropout <= 1 && std::isfinite(o.label_dropout),
             "--label-dropout must be in [0, 1] (or negative for the teacher's), got " << o.label_dropout);
  DDPM_CHECK(o.log_every >= 1, "--log-every must be positive, got " << o.log_every);
  DDPM_CHECK(o.gap_samples >= 1 && o.gap_samples <= 4096, "--gap-samples must be in [1, 4096], got " << o.gap_samples);
  DDPM_CHECK(o.checkpoint_every >= 0, "--checkpoint-every must be >= 0 (0: only at round starts and on a stop signal), got " << o.checkpoint_every);
  std::error_code ec;
  DDPM_CHECK(!fs::exists(o.out, ec) || fs::is_directory(o.out, ec), "--out " << o.out << " exists and is not a folder");
  if (o.resume) return;  // a resumed run continues the OUT it made
  DDPM_CHECK(o.overwrite || !fs::is_directory(o.out, ec) || fs::is_empty(o.out, ec),
             "--out " << o.out << " exists and is not empty; pass --overwrite to replace it");
  DDPM_CHECK(o.overwrite || !fs::exists(distill_state_dir(o.out), ec),
             "--out " << o.out << ": " << distill_state_dir(o.out) << " holds the saved state of a stopped run; continue "
                      << "it with ddpm-distill --resume --out " << o.out << ", or pass --overwrite to start a new one");
}

DistillResult distill_run(const DistillOptions& given) {
  DistillOptions o = given;
  std::optional<DistillState> resumed;  // --resume: the round in progress and the options it ran with
  if (o.resume) {
    DDPM_CHECK(!o.out.empty(), "--resume needs --out: the folder of the run to continue");
    if (std::optional<DistillResult> done = completed_distill_run(o)) return *done;
    resumed = resume_distill_state(o);
  }
  check_distill_options(o);
  ModelSource teacher = open_teacher(o.teacher, o.device);  // refuses a text model (distill_teacher.h)
  const unet::UNetConfig cfg = teacher.net->config();  // a copy: a guided run replaces teacher.net
  const DiffusionSettings& d = teacher.diffusion;
  DDPM_CHECK(!d.edm, "--teacher " << o.teacher << " was trained with the EDM objective: it has no discrete schedule "
                                  << "and ddpm-sample draws it with Heun, so there is no DDIM grid to halve (distil "
                                     "a DDPM-objective run)");
  DDPM_CHECK(!cfg.super_res(), "--teacher " << o.teacher << " is a super-resolution model: ddpm-distill does not "
                                            << "provide its low-resolution condition");
  check_diffusion_settings(d);
  const std::optional<GuidedRange> guided =
      o.guided.empty() ? std::nullopt : std::optional<GuidedRange>(parse_guided_range(o.guided));
  DDPM_CHECK(!guided || cfg.num_classes > 0,
             "--guided " << o.guided << " distils classifier-free guidance, and --teacher " << o.teacher
                         << " is unconditional (no class labels to guide)");
  const diffusion::DistillGrid stage1_grid =
      guided ? guided_stage_grid(d.diffusion_steps, o.teacher_steps) : diffusion::DistillGrid{};
  const std::vector<std::int64_t> counts =
      o.rounds == 0 ? std::vector<std::int64_t>{}
                    : diffusion::distill_step_counts(d.diffusion_steps, o.teacher_steps, o.rounds);
  const diffusion::DiffusionSchedule schedule(diffusion_betas(d));
  diffusion::check_mean_type_for_schedule(schedule, d.predict, "ddpm-distill");

  // The teacher's config, its autoencoder (a latent teacher: the data are encoded as ddpm-train
  // encodes them) and its data, unless --data is given (distill_teacher.h).
  const TeacherData td = open_teacher_data(o.teacher, cfg, o.data, o.device);
  const LatentCodec* latent = td.latent.get();
  const std::shared_ptr<Dataset>& data = td.data;
  const std::string& ae_dir = td.autoencoder_dir;
  const int f = td.factor();
  const int num_classes = cfg.num_classes;
  double dropout = o.label_dropout;
  if (dropout < 0 && guided) dropout = 0;  // a guided student is sampled with the class label only
  if (dropout < 0)
    dropout = td.class_dropout;
  if (num_classes == 0) dropout = 0;

  const char* predict = diffusion::model_mean_type_name(d.predict);
  say(o, "ddpm-distill: teacher " + o.teacher + " (" + teacher.kind + ", EMA weights " +
             (teacher.ema ? "yes" : "no") + "), predicts " + predict + ", " + std::to_string(d.diffusion_steps) +
             "-step " + diffusion::noise_schedule_name(d.noise_schedule) + " schedule; " + data->describe());
  if (latent)
    say(o, "ddpm-distill: latent diffusion: the data are encoded by " + ae_dir + " (f = " + std::to_string(f) +
               "), and every round folder carries a copy of it");
  std::string plan = "ddpm-distill: " + std::to_string(o.rounds) + " rounds of " + std::to_string(o.steps_per_round) +
                     " steps (batch " + std::to_string(o.batch_size) + "): DDIM steps " + std::to_string(o.teacher_steps);
  for (std::int64_t c : counts) plan += " -> " + std::to_string(c);
  say(o, plan);
  if (d.predict == diffusion::ModelMeanType::eps)
    say(o, "ddpm-distill: warning: an eps-prediction teacher; its x_0 estimate at the first step divides by "
           "sqrt(alpha_bar_{T-1}) = " + fmt_log(schedule.sqrt_alphas_cumprod.back()) +
           ", which amplifies errors (the paper distils x0 or v networks: ddpm-train --predict v)");
  if (cfg.learn_sigma)
    say(o, "ddpm-distill: note: the learned variance is not used by eta = 0 DDIM and is not distilled; "
           "sample the students with --sampler ddim only");
  if (guided)
    say(o, "ddpm-distill: guided distillation (Meng et al. 2023) of guidance scales s in [" + fmt_log(guided->scale_min) +
               ", " + fmt_log(guided->scale_max) + "] (w = s - 1): stage 1 (" +
               std::to_string(o.guided_steps > 0 ? o.guided_steps : o.steps_per_round) + " steps on the " +
               std::to_string(o.teacher_steps) + "-step grid) is published as round_0; one network call per step");
  else if (num_classes > 0)
    say(o, "ddpm-distill: class-conditional: labels dropped to the null label with probability " + fmt_log(dropout) +
           " (plain distillation of both branches, not guided distillation)");

  // The student: a second copy of the teacher, its parameters in one slab. Guided: both get a
  // fresh guidance embedding (last linear zero: the teacher still computes exactly its own
  // branches in stage 1, and the student starts as its conditional branch).
  ModelSource student = open_model(o.teacher, o.device, true);
  if (guided) {
    teacher.net = with_guidance_embedding(*teacher.net, splitmix64_stream(o.seed, kGuidedInitStream));
    student.net = with_guidance_embedding(*student.net, splitmix64_stream(o.seed, kGuidedInitStream));
  }
  ParameterSlab teacher_slab, slab;
  teacher_slab.pack(teacher.net->named_parameters());
  slab.pack(student.net->named_parameters());
  // Both with the examples' guidance weights w (empty unless guided).
  const auto teacher_fn = [&](const std::vector<double>& w) { return eval_fn(*teacher.net, w); };
  const auto student_eval = [&](const std::vector<double>& w) { return eval_fn(*student.net, w); };
  Generator dropout_gen(splitmix64_stream(o.seed, kDropoutStream));
  const auto student_train = [&](const std::vector<double>& w) {
    return weighted_denoiser(*student.net, w, nn::Context{true, &dropout_gen});
  };
  diffusion::DenoiserReading reading;
  reading.type = d.predict;
  reading.learned_sigma = cfg.learn_sigma;
  reading.clip_x0 = false;  // x~ leaves [-1, 1] at high noise: see distill_run.h

  const StudentData sd = student_data(td, o.batch_size, o.gap_samples, splitmix64_stream(o.seed, kLoaderStream),
                                      splitmix64_stream(o.seed, kGapLoaderStream), o.device);  // distill_teacher.h
  BatchLoader loader(data, sd.loader);
  const Batch& gap_batch = sd.held_out;
  const Tensor& gap_x0 = sd.held_out_x0;

  // The config of every round folder: the teacher's (our format) or one built from its
  // settings, without a previous distillation's or post-hoc export's record. A latent
  // teacher's autoencoder is copied from where find_run_autoencoder found it (a checkpoint
  // folder's run, or an earlier round folder).
  nlohmann::json base = td.config;
  if (base.empty()) {
    base["model"] = unet::config_to_json(cfg);
    base["diffusion"] = diffusion_to_json(d);
  }
  if (guided) base["model"] = unet::config_to_json(student.net->config());  // with guidance_embedding
  base.erase("posthoc_ema");
  base.erase("distill");  // the key of the first ddpm-distill's folders
  base.erase(kDistillationSection);
  base["data"] = student_data_section(td, sd.loader);
  std::string autoencoder_home = o.teacher;  // write_ema_model_folder's source_run_dir
  if (latent) {
    base["autoencoder"]["folder"] = fs::path(ae_dir).filename().string();
    autoencoder_home = fs::path(ae_dir).parent_path().string();
  }

  DistillResult result;
  result.rounds_planned = o.rounds;
  nlohmann::json record = {{"teacher", o.teacher},
                           {"teacher_steps", o.teacher_steps},
                           {"predict", predict},
                           {"latent", latent != nullptr},
                           {"steps_per_round", o.steps_per_round},
                           {"batch_size", o.batch_size},
                           {"lr", o.lr},
                           {"warmup_steps", o.warmup_steps},
                           {"grad_clip", o.grad_clip},
                           {"ema_rate", o.ema_rate},
                           {"label_dropout", dropout},
                           {"clip_x0", false},
                           {"loss_weight", "max(snr, 1)"},
                           {"seed", o.seed},
                           {"data", td.spec},
                           {"rounds_planned", o.rounds},
                           {"student_steps_planned", counts},
                           {"rounds_done", 0},
                           {"complete", false},
                           {"rounds", nlohmann::json::array()}};
  if (guided)
    record["guided"] = {{"scale_min", guided->scale_min}, {"scale_max", guided->scale_max},
                        {"stage1_steps", o.guided_steps > 0 ? o.guided_steps : o.steps_per_round},
                        {"stage1_folder", "round_0"}, {"weight", "w = s - 1"}};
  const auto write_record = [&record](const std::string& dir) {
    write_file_atomic(dir + "/distill.json", record.dump(2) + "\n");
  };
  // Publishes a finished round (see distill_run.h "Output"): round 1 brings OUT into being
  // (replacing an old one only now, with --overwrite); later rounds add their folder, then
  // the record that lists it.
  // A resumed state older than its round's publication (a crash between the two) runs the
  // round again to the same bits and republishes it in place (`again`).
  const auto publish_round = [&](const DistillRound& rep, const nlohmann::json& config,
                                 const std::vector<std::pair<std::string, Tensor>>& weights, bool again) {
    const std::string name = "round_" + std::to_string(rep.round);
    const std::map<std::string, std::string> meta = {{"ddpm.distill_round", std::to_string(rep.round)},
                                                     {"ddpm.sampling_steps", std::to_string(rep.student_steps)}};
    if (rep.round == (guided ? 0 : 1)) {  // the first published round
      publish_directory(
          o.out,
          [&](const std::string& tmp) {
            write_ema_model_folder(config, autoencoder_home, weights, meta, tmp + "/" + name);
            write_record(tmp);
          },
          o.overwrite || again ? IfExists::replace : IfExists::fail);
    } else {
      write_ema_model_folder(config, autoencoder_home, weights, meta, o.out + "/" + name, again);
      write_record(o.out);
    }
  };

  StopSignals stop_signals;  // Ctrl-C / SIGTERM: finish the step, keep the published rounds, return
  Generator gen(splitmix64_stream(o.seed, kDrawStream));
  const nlohmann::json options_json = distill_options_json(o);
  // The loop index r runs from `start` (-1: stage 1 of guided distillation, the guided target
  // (4) on the teacher's grid, published as round_0) to rounds - 1; round r + 1 is published.
  const int start = guided ? -1 : 0;
  int first = start;  // the loop index of the first round this call runs
  if (resumed) {  // the round's teacher and the record (the loop state: at the round's start)
    first = resumed->round - 1;
    DDPM_CHECK_AS(first >= start && first < o.rounds, IoError,
                  distill_state_dir(o.out) << " saved round " << resumed->round << ", which is not a round of this run ("
                                           << start + 1 << " .. " << o.rounds << ")");
    Tensor tv = teacher_slab.values();
    tv.copy_from(distill_state_flat(*resumed, o.out, "teacher", teacher_slab, o.device));
    record["rounds"] = resumed->record["rounds"];
    record["rounds_done"] = resumed->record.value("rounds_done", 0);
    record["resumed"] = resumed->record.value("resumed", nlohmann::json::array());
    record["resumed"].push_back({{"round", resumed->round}, {"step", resumed->step}});
    result.rounds = rounds_from_record(record, o.out);
    if (!result.rounds.empty()) write_record(o.out);  // its "stopped" goes: the run goes on
  }
  for (int r = first; r < o.rounds && result.stopped_by_signal == 0; ++r) {
    const bool resuming = resumed && r == first;
    const bool stage1 = r < 0;
    const diffusion::DistillGrid g =
        stage1 ? stage1_grid : diffusion::distill_grid(d.diffusion_steps, counts[static_cast<std::size_t>(r)]);
    const std::int64_t round_steps = stage1 && o.guided_steps > 0 ? o.guided_steps : o.steps_per_round;
    DistillRound rep;
    rep.round = r + 1;
    rep.teacher_steps = g.teacher_steps();
    rep.student_steps = g.student_steps();
    say(o, stage1 ? "stage 1: the teacher's guided output on its " + std::to_string(rep.teacher_steps) + "-step grid"
                  : "round " + std::to_string(rep.round) + "/" + std::to_string(o.rounds) + ": " +
                        std::to_string(rep.teacher_steps) + " teacher steps -> " +
                        std::to_string(rep.student_steps) + " student steps");
    // Held-out gap: fixed images, noise and indices per round (its own stream).
    Generator gap_gen(
        splitmix64_stream(o.seed, stage1 ? kGuidedGapStream : kGapStream + 16 * static_cast<std::uint64_t>(r)));
    const Examples held = draw_examples(schedule, g, gap_x0, gap_batch.labels, num_classes, 0.0, gap_gen, guided);
    const auto held_gap = [&](const diffusion::DenoiseFn& model) {
      return stage1 ? diffusion::guided_x0_gap(schedule, unguided_denoiser(*teacher.net), model, reading, held.z,
                                               held.t, held.labels, num_classes, held.w)
                    : diffusion::one_step_gap(schedule, teacher_fn(held.w), model, reading, g, held.z, held.index,
                                              held.labels);
    };
    // Stage 1: of the conditional branch (w has no effect yet). A resumed round keeps the saved value.
    rep.gap_before = resuming && resumed->has_gap_before ? resumed->gap_before : held_gap(teacher_fn(held.w));
    AdamWConfig ac;
    ac.lr = o.lr;
    AdamW opt(slab, ac);
    Ema ema(slab, o.ema_rate);
    const auto t0 = std::chrono::steady_clock::now();
    double window = 0, seconds_before = 0;
    std::int64_t window_n = 0, step = 0;
    rep.final_loss = NAN;
    // The loop's objects a saved state records (distill_state.h), the round's own beside them.
    const DistillProgress progress{gen, dropout_gen, loader, slab, ema, opt, rep.final_loss, window, window_n, rep.losses};
    // The round's state: everything the steps after `done` depend on.
    const auto save_state = [&](std::int64_t done) {
      DistillState st = capture_distill_progress(
          progress, done, rep.gap_before,
          seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      st.options = options_json;
      st.round = rep.round;
      st.record = record;
      st.flats.push_back({"teacher", teacher_slab.values(), &teacher_slab});
      save_distill_state(o.out, st);
    };
    if (resuming) {  // the draws (the w of a guided run too), the data position, the round's networks
      restore_distill_progress(*resumed, o.out, progress);
      step = resumed->step;
      seconds_before = resumed->seconds;
      say(o, "round " + std::to_string(rep.round) + ": resumed after step " + std::to_string(step) + "/" +
                 std::to_string(round_steps) + " from " + distill_state_dir(o.out));
    } else if (r > start) {
      save_state(0);  // the next round's start: the finished round's state is stale from here on
    }
    for (; step < round_steps; ++step) {
      if ((result.stopped_by_signal = stop_signals.pending()) != 0) break;  // between steps only
      const Batch b = loader.next();
      // s * z ~ s q(z | x_0) for a latent teacher: ddpm-train's encoding, eps from this generator.
      const Tensor x0 = latent ? latent->encode(b.images, gen) : b.images;
      const Examples e = draw_examples(schedule, g, x0, b.labels, num_classes, dropout, gen, guided);
      const Tensor target = stage1 ? diffusion::teacher_guided_x0(schedule, unguided_denoiser(*teacher.net), reading,
                                                                  e.z, e.t, e.labels, num_classes, e.w)
                                   : [&] {
                                       const diffusion::TeacherSteps ts = diffusion::teacher_ddim_steps(
                                           schedule, teacher_fn(e.w), reading, g, e.z, e.index, e.labels);
                                       return diffusion::distillation_target(schedule, e.z, ts.z_end, ts.start, ts.end);
                                     }();
      slab.zero_grad();
      const Tensor x_hat = diffusion::x0_estimate(schedule, student_train(e.w), reading, e.z, e.t, e.labels);
      Tensor loss = diffusion::distillation_loss(schedule, x_hat, target, e.t);
      loss.backward();
      apply_distill_step(progress, loss.item(), o.grad_clip, o.lr, o.warmup_steps, step);
      const std::string line = close_loss_window(progress, step + 1, round_steps, o.log_every);
      if (!line.empty()) say(o, line);
      if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < round_steps)
        save_state(step + 1);
    }
    if (result.stopped_by_signal != 0) {
      save_state(step);  // SIGTERM loses nothing: --resume continues after this step
      const int done = static_cast<int>(result.rounds.size());
      say(o, std::string("ddpm-distill: stopped by ") + signal_name(result.stopped_by_signal) + " after step " +
                 std::to_string(step) + "/" + std::to_string(round_steps) + " of round " +
                 std::to_string(rep.round) + " (not published); " + std::to_string(done) + " of " +
                 std::to_string(o.rounds) + " rounds complete" +
                 (done > 0 ? " in " + o.out + " (round_" + std::to_string(result.rounds.front().round) +
                                 " .. round_" + std::to_string(result.rounds.back().round) + ")"
                           : std::string(", nothing published") + (o.overwrite ? " (the old --out is untouched)" : "")) +
                 "; the round's state is saved in " + distill_state_dir(o.out) +
                 ": continue with ddpm-distill --resume --out " + o.out);
      if (done > 0) {
        record["stopped"] = {{"signal", signal_name(result.stopped_by_signal)},
                             {"round", rep.round},
                             {"steps_done", step}};
        write_record(o.out);
      }
      break;
    }
    rep.seconds = seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The EMA is the round's result: the next teacher and the next student's start. Its gap
    // is measured against this round's teacher, before the teacher takes its weights.
    ema.copy_to(slab);
    rep.gap_after = held_gap(student_eval(held.w));
    {
      Tensor tv = teacher_slab.values();  // a handle on the teacher's slab
      tv.copy_from(slab.values());
    }
    rep.folder = o.out + "/round_" + std::to_string(rep.round);
    nlohmann::json config = base;
    DistillationRecord how;
    how.round = rep.round;
    how.sampling_steps = rep.student_steps;
    how.sampler = "ddim";
    how.clip_x0 = reading.clip_x0;
    how.teacher = o.teacher;
    how.guided = guided;
    config[kDistillationSection] = distillation_record_json(how);
    config[kDistillationSection]["teacher_steps"] = rep.teacher_steps;
    config[kDistillationSection]["final_loss"] = rep.final_loss;
    config[kDistillationSection]["gap_before"] = rep.gap_before;
    config[kDistillationSection]["gap_after"] = rep.gap_after;
    std::vector<std::pair<std::string, Tensor>> weights;
    append_slab(slab.values(), "", slab, weights);
    record["rounds"].push_back({{"round", rep.round},
                                {"folder", "round_" + std::to_string(rep.round)},
                                {"teacher_steps", rep.teacher_steps},
                                {"student_steps", rep.student_steps},
                                {"final_loss", rep.final_loss},
                                {"gap_before", rep.gap_before},
                                {"gap_after", rep.gap_after},
                                {"seconds", rep.seconds}});
    record["rounds_done"] = rep.round;
    record["complete"] = rep.round == o.rounds;
    std::error_code ec;
    publish_round(rep, config, weights, resuming && fs::exists(rep.folder, ec));
    if (rep.round == o.rounds) fs::remove_all(distill_state_dir(o.out), ec);  // complete: nothing to resume
    say(o, "round " + std::to_string(rep.round) + ": final loss " + fmt_log(rep.final_loss) +
               (rep.round == 0 ? "; held-out gap to the teacher's guided x^ (guided_x0_gap) "  // stage 1
                               : "; held-out one-step gap to the teacher's two steps ") +
               fmt_log(rep.gap_before) + " -> " +
               fmt_log(rep.gap_after) + "; " + fmt_log(rep.seconds) + " s; published " + rep.folder);
    result.rounds.push_back(rep);
  }
  for (const DistillRound& r : result.rounds)
    say(o, "sample round " + std::to_string(r.round) + ": ddpm-sample --checkpoint " + r.folder +
               " --sampler ddim --sampling-steps " + std::to_string(r.student_steps) +
               " --clip-x0 false" +  // the folder's default too (distill_record.h), spelt out
               (guided ? " --guidance-scale " + fmt_log((guided->scale_min + guided->scale_max) / 2) : std::string()));
  return result;
}

}  // namespace ddpm::run
