// models/run/toy_posthoc.cpp: ddpm-toy posthoc, post-hoc EMA on the 2-D toy (Karras et al.
// 2024, EDM2 sec. 3): which EMA length samples best, decided after training.
//
// A folder of `ddpm-toy train --posthoc-ema 0.05,0.10` holds snapshots of two power-function
// EMAs (posthoc/step_N.safetensors, the format of ddpm-train, models/run/posthoc_export.h).
// For each requested relative width sigma_rel, reconstruct_posthoc_ema finds the least-squares
// mix of the snapshots' averaging profiles closest to the profile of width sigma_rel at the
// last snapshot, or at --posthoc-step N (at most the last snapshot's step, as ddpm-export's
// flag; the raw and ema rows stay the end of training; models/train/posthoc_ema.h, EDM2
// sec. 3.2) and applies it to the weights; the row's residual is that fit's relative error
// ||sum_i x_i w_i - w_r|| / ||w_r||.
//
// Every row samples the same way: `sample`'s default sampler and step count, samples from
// Generator(seed) (the same x_T and noise for every row, so the rows differ by the weights
// alone), scored against the data draw make_toy2d(data, n, derived_seed(seed, 1)) with the
// floor make_toy2d(data, n, derived_seed(seed, 2)): the streams of `sample`, so the raw and
// ema rows equal `ddpm-toy sample [--no-ema]` with the same --seed and --num-samples.
//
// The reference rows:
//   raw  model.safetensors, the last iterate: the limit sigma_rel -> 0 of a power EMA.
//   ema  ema.safetensors, the classic EMA of decay beta (--ema-rate). Its weights on the
//        iterate k steps back are (1 - beta) beta^k, a geometric law of mean beta / (1 - beta)
//        and standard deviation sqrt(beta) / (1 - beta) steps; over t updates its relative
//        width is therefore about sqrt(beta) / ((1 - beta) t) (EDM2 sec. 3.1 compares the two
//        families the same way). Approximate: the warm-up and the start of training at t = 0
//        are ignored. beta = 0.995 over 4000 steps: 0.050. A value past 0.30, the widest power
//        EMA (a run shorter than about 670 steps at 0.995), only says the EMA spans the run.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <ostream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "models/run/posthoc_export.h"
#include "models/run/scatter_plot.h"
#include "models/run/toy_run.h"
#include "models/toy/datasets2d.h"
#include "models/toy/energy_distance.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

// The panels' axes and colours, as sample's scatter.png (toy_pictures.cpp); the panels'
// font (engine/io/bitmap_font.h) lacks '_', '~' and most capitals: hence "sigma rel", "ema".
constexpr double kLo = -3.0, kHi = 3.0;
const Rgb kData{175, 175, 175}, kSamples{31, 100, 200};
constexpr std::size_t kMaxSigmaRels = 8;  // one panel each, plus the two reference rows

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Copies reconstructed weights (slab names, f32 host tensors) into m's slab; IoError naming
// the folder for a missing or mis-shaped tensor (snapshots of another model).
void load_reconstruction(ToyModel& m, const PosthocResult& r) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : r.weights) by_name[name] = &t;
  DDPM_CHECK_AS(by_name.size() == m.slab.size(), IoError,
                r.run_dir << "/" << kPosthocFolder << " snapshots hold " << by_name.size()
                          << " tensors per profile; the model of config.json has " << m.slab.size());
  for (const SlabEntry& e : m.slab.entries()) {
    const auto it = by_name.find(e.name);
    DDPM_CHECK_AS(it != by_name.end() && it->second->shape() == e.value.shape(), IoError,
                  r.run_dir << "/" << kPosthocFolder << ": the snapshots lack tensor " << e.name
                            << " in the shape config.json implies");
    Tensor dst = e.value;  // a handle on the slab view
    dst.copy_from(*it->second);
  }
}

}  // namespace

std::vector<ToyPosthocRow> run_toy_posthoc(const ToyPosthocArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.checkpoint.empty(), "--checkpoint is required: a folder written by ddpm-toy train --posthoc-ema");
  DDPM_CHECK(a.num_samples >= 1 && a.num_samples <= 20000,
             "--num-samples must be in [1, 20000] (the score compares all pairs), got " << a.num_samples);
  DDPM_CHECK(a.sampling_steps >= 0, "--sampling-steps must be >= 0, got " << a.sampling_steps);
  DDPM_CHECK(a.posthoc_step >= 0,
             "--posthoc-step must be a training step >= 1 (or 0 for the last snapshot), got " << a.posthoc_step);
  const std::vector<double> sigma_rels = train::parse_sigma_rel_list("--sigma-rels", a.sigma_rels);
  DDPM_CHECK(!sigma_rels.empty() && sigma_rels.size() <= kMaxSigmaRels,
             "--sigma-rels takes 1 to " << kMaxSigmaRels << " relative EMA widths (one panel each), got "
                                        << sigma_rels.size());
  check_toy_out_folder(a.out, a.overwrite);
  const ToyModel raw = load_toy_model(a.checkpoint, true);  // checks config.json before the snapshots
  std::error_code ec;
  DDPM_CHECK_AS(fs::is_directory(fs::path(a.checkpoint) / kPosthocFolder, ec), IoError,
                a.checkpoint << " has no " << kPosthocFolder << "/ folder of post-hoc EMA snapshots: train it with "
                             << "ddpm-toy train --posthoc-ema 0.05,0.10");
  // Every reconstruction first, so a failure (too few snapshots, a step past the last one, a
  // damaged file) costs no sampling.
  std::vector<PosthocResult> recon;
  for (const double s : sigma_rels) recon.push_back(reconstruct_posthoc_ema(a.checkpoint, s, a.posthoc_step));
  // The raw and ema rows are the weights at the end of training, the last snapshot's step
  // (train snapshots its last step), whatever --posthoc-step asks of the reconstructions.
  const PosthocSnapshot last = list_posthoc_snapshots(a.checkpoint).back();
  const std::int64_t updates = last.updates;

  const std::int64_t K = a.sampling_steps > 0 ? a.sampling_steps : (a.sampler == "ddpm" ? raw.diffusion_steps : 50);
  const std::int64_t n = a.num_samples;
  const std::vector<float> ref = toy::make_toy2d(raw.data, n, derived_seed(a.seed, 1)).points;
  const double floor = toy::energy_distance(toy::make_toy2d(raw.data, n, derived_seed(a.seed, 2)).points, ref);
  const double nan = std::numeric_limits<double>::quiet_NaN();

  std::vector<ToyPosthocRow> rows;
  std::vector<ScatterPanel> panels;
  auto score = [&](const ToyModel& m, ToyPosthocRow row, const std::string& title) {
    Generator gen(a.seed);  // the same x_T and noise for every row
    const std::vector<float> xs = sample_toy(m, a.sampler, K, n, gen).to_vector();
    row.energy = toy::energy_distance(xs, ref);
    row.floor = floor;
    rows.push_back(row);
    ScatterPanel p;
    p.title = title;
    p.caption = "energy " + fmt("%.4f", row.energy);
    p.layers.push_back({ref, kData, 0});
    p.layers.push_back({xs, kSamples, 1});
    panels.push_back(std::move(p));
  };
  score(raw, {"raw", 0.0, nan, 0, 0}, "raw weights");
  const ToyModel ema = load_toy_model(a.checkpoint, false);
  const nlohmann::json config = nlohmann::json::parse(read_file(a.checkpoint + "/config.json"));
  const double beta = config.at("train").value("ema_rate", 0.995);
  const double ema_width = std::sqrt(beta) / ((1.0 - beta) * static_cast<double>(updates));
  score(ema, {"ema", ema_width, nan, 0, 0}, "ema " + fmt("%g", beta) + " = width " + fmt("%.3f", ema_width));
  ToyModel m = load_toy_model(a.checkpoint, true);
  for (const PosthocResult& r : recon) {
    load_reconstruction(m, r);
    score(m, {"posthoc", r.sigma_rel, r.solution.relative_residual, 0, 0}, "sigma rel " + fmt("%g", r.sigma_rel));
  }
  const std::size_t best = static_cast<std::size_t>(
      std::min_element(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.energy < y.energy; }) -
      rows.begin());

  std::string csv = "weights,sigma_rel,residual,energy,floor\n";
  for (const ToyPosthocRow& r : rows)
    csv += r.kind + "," + fmt("%.6g", r.sigma_rel) + "," + (std::isnan(r.residual) ? "" : fmt("%.3e", r.residual)) +
           "," + fmt("%.6f", r.energy) + "," + fmt("%.6f", r.floor) + "\n";
  const Image strip = draw_scatter_strip(panels, kLo, kHi, 300, 270);
  publish_directory(
      a.out,
      [&](const std::string& tmp) {
        write_png(tmp + "/posthoc.png", strip);
        write_file_atomic(tmp + "/posthoc.csv", csv);
      },
      a.overwrite ? IfExists::replace : IfExists::fail);

  const PosthocResult& r0 = recon.front();
  out << raw.data << ": post-hoc EMA at step " << r0.step << " (" << r0.updates << " updates) from "
      << r0.snapshot_steps.size() << " snapshots of " << r0.basis.size() / r0.snapshot_steps.size()
      << " profiles; " << a.sampler << " " << K << " steps, " << n << " samples per row, seed " << a.seed << "\n"
      << "  weights  sigma_rel  residual  energy   (data floor " << fmt("%.4f", floor) << ")\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const ToyPosthocRow& r = rows[i];
    char line[128];
    std::snprintf(line, sizeof line, "  %-7s  %s%-8.3f  %-8s  %.5f%s\n", r.kind.c_str(), r.kind == "ema" ? "~" : " ",
                  r.sigma_rel, std::isnan(r.residual) ? "-" : fmt("%.1e", r.residual).c_str(), r.energy,
                  i == best ? "  <- best" : "");
    out << line;
  }
  out << "(raw: the last iterate, sigma_rel 0; ema: ema.safetensors, ~ its equivalent width sqrt(beta) / ((1 - beta) "
         "t))\n";
  if (r0.step != last.step)
    out << "note: the raw and ema rows are the weights at the end of training (step " << last.step
        << "), the posthoc rows those at step " << r0.step << "\n";
  const std::string gap = posthoc_gap_note(r0);
  if (!gap.empty()) out << "warning: " << gap << "\n";
  out << "wrote "
      << a.out << "/{posthoc.csv, posthoc.png}\n";
  return rows;
}

void add_toy_posthoc_subcommand(CLI::App& app, ToyCommand& c) {
  ToyPosthocArgs& p = c.posthoc;
  CLI::App* ph = app.add_subcommand(
      "posthoc", "post-hoc EMA (EDM2): reconstruct EMAs of several widths from train --posthoc-ema snapshots and "
                 "score each: posthoc.csv, posthoc.png");
  c.posthoc_app = ph;
  ph->add_option("--checkpoint", p.checkpoint, "a folder written by ddpm-toy train --posthoc-ema")->required();
  ph->add_option("--out", p.out, "output folder: posthoc.csv, posthoc.png")->required();
  ph->add_flag("--overwrite", p.overwrite, "replace an existing --out folder");
  ph->add_option("--sigma-rels", p.sigma_rels, "comma-separated relative EMA widths in (0, 0.3003], one row each")
      ->capture_default_str();
  ph->add_option("--posthoc-step", p.posthoc_step,
                 "the training step to reconstruct the EMAs at (at most the last snapshot's; 0: the last snapshot)")
      ->capture_default_str();
  std::string samplers;
  for (const std::string& n : toy_sampler_names()) samplers += (samplers.empty() ? "" : " | ") + n;
  ph->add_option("--sampler", p.sampler, samplers)->check(CLI::IsMember(toy_sampler_names()))->capture_default_str();
  ph->add_option("--sampling-steps", p.sampling_steps, "steps of the sampler; 0: T for ddpm, 50 for the others")
      ->capture_default_str();
  ph->add_option("--num-samples", p.num_samples, "points per row (and fresh data points to score them against)")
      ->capture_default_str();
}

}  // namespace ddpm::run
