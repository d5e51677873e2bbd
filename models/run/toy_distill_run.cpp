// models/run/toy_distill_run.cpp: ddpm-toy distill, the folder side of progressive
// distillation (the algorithm is models/toy/distill.h; the folder layout is in toy_run.h).
//
// Order of work: every flag and the teacher folder are checked before any training; the
// whole OUT folder (round1 .. roundR and distill.csv) is built in a temporary folder and
// published atomically (engine/io/atomic_file.h), so a failure leaves nothing behind.
// The energy distances use the numbers `ddpm-toy sample --seed S --num-samples n` uses:
// samples from Generator(S), scored against make_toy2d(data, n, derived(S, 1)) with the
// floor make_toy2d(data, n, derived(S, 2)) (toy_pictures.cpp), so a row of distill.csv can
// be reproduced with `sample --sampler ddim --sampling-steps K` on the round's folder.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/loss_plot.h"
#include "models/run/toy_run.h"
#include "models/toy/datasets2d.h"
#include "models/toy/distill.h"
#include "models/toy/energy_distance.h"

namespace ddpm::run {

namespace {

// The energy distance of n DDIM samples in K steps to fresh data, as `sample` scores it.
double ddim_energy(const ToyModel& m, std::int64_t K, std::int64_t n, std::uint64_t seed) {
  Generator gen(seed);
  const std::vector<float> xs = sample_toy(m, "ddim", K, n, gen).to_vector();
  return toy::energy_distance(xs, toy::make_toy2d(m.data, n, derived_seed(seed, 1)).points);
}

std::string fixed(double v, int digits) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string format_gap(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

std::vector<ToyDistillRow> run_toy_distill(const ToyDistillArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.teacher.empty(), "--teacher is required: a folder written by ddpm-toy train");
  DDPM_CHECK(a.eval_samples >= 0 && a.eval_samples <= 20000,
             "--eval-samples must be in [0, 20000] (the score compares all pairs), got " << a.eval_samples);
  check_toy_out_folder(a.out, a.overwrite);
  const ToyModel teacher = load_toy_model(a.teacher, a.no_ema);
  DDPM_CHECK(teacher.num_classes == 0,
             "--teacher " << a.teacher << " is class-conditional; ddpm-toy distill handles unconditional models "
                                          "(train without --class-cond)");
  const std::vector<std::int64_t> counts = toy::distill_step_counts(teacher.diffusion_steps, a.teacher_steps, a.rounds);
  toy::DistillArgs da;
  da.data = teacher.data;
  da.steps = a.steps;
  da.batch_size = a.batch_size;
  da.lr = a.lr;
  da.ema_rate = a.ema_rate;
  da.log_every = std::max<std::int64_t>(1, a.steps / 4);
  da.seed = a.seed;
  toy::check_distill_args(da);
  const toy::MlpDenoiserConfig config = teacher.net->config();
  ToyTrainArgs like;  // the student folders describe the teacher's network and diffusion
  like.data = teacher.data;
  like.hidden = config.hidden;
  like.layers = config.layers;
  like.diffusion_steps = teacher.diffusion_steps;
  like.noise_schedule = diffusion::noise_schedule_name(teacher.noise_schedule);
  like.predict = diffusion::model_mean_type_name(teacher.predict);

  out << "teacher: " << a.teacher << " (" << teacher.data << ", predicts " << like.predict << ", " << teacher.diffusion_steps
      << "-step " << like.noise_schedule << " schedule), DDIM with " << a.teacher_steps << " steps\n"
      << "progressive distillation (Salimans & Ho 2022): " << a.rounds << " rounds of " << a.steps
      << " steps, batch " << a.batch_size << ", lr " << a.lr << "; student steps";
  for (std::int64_t c : counts) out << " " << c;
  out << "\n";
  if (teacher.predict == diffusion::ModelMeanType::eps)
    out << "note: an eps-predicting teacher; its x_0 estimate at the first step divides by sqrt(alpha_bar) = "
        << fixed(std::sqrt(diffusion::DiffusionSchedule(teacher.betas).alphas_cumprod.back()), 4)
        << ", which amplifies errors (the paper distils v-models: train --predict v)\n";
  const bool eval = a.eval_samples > 0;
  if (eval)
    out << "teacher at " << a.teacher_steps << " steps: energy distance "
        << fixed(ddim_energy(teacher, a.teacher_steps, a.eval_samples, a.seed), 5) << "\n";

  const diffusion::DiffusionSchedule schedule(teacher.betas);
  std::vector<ToyDistillRow> rows;
  std::ostringstream csv;
  csv << "round,teacher_steps,student_steps,gap_before,gap_after,teacher_energy,student_energy,floor,seconds\n";
  publish_directory(
      a.out,
      [&](const std::string& tmp) {
        toy::progressive_distillation(
            schedule, config, teacher.slab.values(), teacher.predict, a.teacher_steps, a.rounds, da,
            [&](const toy::DistillRoundReport& r, const toy::MlpDenoiser&, const ParameterSlab& slab, const Tensor& ema) {
              ToyModel student = make_toy_model(like);
              Tensor values = student.slab.values();  // a handle on the slab
              values.copy_from(slab.values());
              nlohmann::json train = {{"distill",
                                       {{"teacher", a.teacher},
                                        {"round", r.round},
                                        {"teacher_steps", r.teacher_steps},
                                        {"sampling_steps", r.student_steps},
                                        {"sampler", "ddim"},
                                        {"loss_weight", "max(snr, 1)"},
                                        {"gap_before", r.gap_before},
                                        {"gap_after", r.gap_after}}},
                                      {"steps", a.steps},
                                      {"batch_size", a.batch_size},
                                      {"lr", a.lr},
                                      {"ema_rate", a.ema_rate},
                                      {"seed", a.seed},
                                      {"final_loss", r.log_losses.back()},
                                      {"seconds", r.seconds}};
              constexpr int kPlotH = 360, kPlotW = 640;
              const std::vector<std::uint8_t> plot = draw_loss_curve(r.log_steps, r.log_losses, kPlotH, kPlotW);
              const std::string dir = tmp + "/round" + std::to_string(r.round);
              save_toy_model(student, ema, train, plot, kPlotH, kPlotW, dir, false);
              ToyDistillRow row;
              row.round = r.round;
              row.teacher_steps = r.teacher_steps;
              row.student_steps = r.student_steps;
              row.gap_before = r.gap_before;
              row.gap_after = r.gap_after;
              row.seconds = r.seconds;
              row.teacher_energy = row.student_energy = row.floor = NAN;
              if (eval) {
                values.copy_from(ema);  // sample the EMA, as `sample` does
                row.teacher_energy = ddim_energy(teacher, r.student_steps, a.eval_samples, a.seed);
                row.student_energy = ddim_energy(student, r.student_steps, a.eval_samples, a.seed);
                const std::int64_t n = a.eval_samples;
                row.floor = toy::energy_distance(toy::make_toy2d(teacher.data, n, derived_seed(a.seed, 2)).points,
                                                 toy::make_toy2d(teacher.data, n, derived_seed(a.seed, 1)).points);
              }
              out << "round " << r.round << ": one-step gap to the teacher's two steps " << format_gap(r.gap_before)
                  << " -> " << format_gap(r.gap_after) << " (held-out)";
              if (eval)
                out << "; at " << r.student_steps << " steps energy distance: original teacher "
                    << fixed(row.teacher_energy, 5) << ", student " << fixed(row.student_energy, 5) << " (floor "
                    << fixed(row.floor, 5) << ")";
              out << "; " << fixed(r.seconds, 1) << " s\n";
              csv << row.round << "," << row.teacher_steps << "," << row.student_steps << "," << row.gap_before << ","
                  << row.gap_after << "," << row.teacher_energy << "," << row.student_energy << "," << row.floor << ","
                  << row.seconds << "\n";
              rows.push_back(row);
            },
            [&out](const std::string& line) { out << line << "\n"; });
        write_file_atomic(tmp + "/distill.csv", csv.str());
      },
      a.overwrite ? IfExists::replace : IfExists::fail);
  out << "wrote " << a.out << "/{round1.." << "round" << a.rounds << ", distill.csv}; sample round r with --sampler ddim "
      << "--sampling-steps " << counts.front() << ".." << counts.back() << "\n";
  return rows;
}

void add_toy_distill_subcommand(CLI::App& app, ToyCommand& c) {
  ToyDistillArgs& d = c.distill;
  CLI::App* di = app.add_subcommand(
      "distill", "progressive distillation: halve DDIM's step count --rounds times (Salimans & Ho 2022)");
  c.distill_app = di;
  di->add_option("--teacher", d.teacher, "a folder written by ddpm-toy train (unconditional; --predict v works best)")
      ->required();
  di->add_option("--out", d.out, "output folder: round1..roundR (model folders for sample) and distill.csv")
      ->required();
  di->add_flag("--overwrite", d.overwrite, "replace an existing --out folder");
  di->add_option("--rounds", d.rounds, "halvings of the step count")->capture_default_str();
  di->add_option("--teacher-steps", d.teacher_steps,
                 "the teacher's DDIM steps N = 2^rounds M + 1; round r's student samples with (N - 1)/2^r + 1")
      ->capture_default_str();
  di->add_option("--steps", d.steps, "training steps per round")->capture_default_str();
  di->add_option("--batch-size", d.batch_size, "points per step (fresh draws every step)")->capture_default_str();
  di->add_option("--lr", d.lr, "AdamW learning rate (linear warm-up over 100 steps)")->capture_default_str();
  di->add_option("--ema-rate", d.ema_rate, "EMA decay of the student (with warm-up); the EMA is the next teacher")
      ->capture_default_str();
  di->add_option("--eval-samples", d.eval_samples,
                 "points per energy distance of the teacher and each student (0: skip the evaluation)")
      ->capture_default_str();
  di->add_flag("--no-ema", d.no_ema, "distil the teacher's raw trained weights instead of their EMA");
}

}  // namespace ddpm::run
