// models/run/posthoc_flags.cpp: see posthoc_flags.h.
#include "models/run/posthoc_flags.h"

#include <utility>

#include <CLI/CLI.hpp>

#include "engine/error.h"
#include "models/run/posthoc_export.h"
#include "models/train/posthoc_ema.h"
#include "models/train/trainer.h"

namespace ddpm::run {

void add_posthoc_ema_flags(CLI::App& app, std::string& sigma_rels, std::int64_t& snapshot_every,
                           const std::string& run_folder, const std::string& group) {
  CLI::Option* e = app.add_option("--posthoc-ema", sigma_rels,
                                  "post-hoc EMA (Karras et al. 2024): also track power-function EMAs of these "
                                  "relative widths, e.g. 0.05,0.10, and snapshot them into " +
                                      run_folder +
                                      "/posthoc/; ddpm-export --posthoc-ema SIGMA_REL then reconstructs the EMA of "
                                      "any width");
  CLI::Option* s = app.add_option("--posthoc-snapshot-every", snapshot_every,
                                  "with --posthoc-ema: a snapshot every N steps and at the end (0: --save-every)")
                       ->capture_default_str();
  if (!group.empty()) {
    e->group(group);
    s->group(group);
  }
}

std::vector<double> validate_posthoc_ema_flags(const std::string& sigma_rels, std::int64_t snapshot_every) {
  std::vector<double> widths = train::parse_sigma_rel_list("--posthoc-ema", sigma_rels);  // (0, 0.3003], no repeats
  DDPM_CHECK(snapshot_every >= 0, "--posthoc-snapshot-every must be >= 0 (0: --save-every), got " << snapshot_every);
  DDPM_CHECK(snapshot_every == 0 || !widths.empty(),
             "--posthoc-snapshot-every " << snapshot_every << " needs --posthoc-ema (the EMA widths to snapshot)");
  return widths;
}

std::int64_t posthoc_snapshot_interval(std::int64_t snapshot_every, std::int64_t save_every) {
  return snapshot_every > 0 ? snapshot_every : save_every;
}

PosthocSnapshotSchedule::PosthocSnapshotSchedule(std::string run_dir, std::int64_t every, std::int64_t steps)
    : run_dir_(std::move(run_dir)), every_(every), steps_(steps) {
  DDPM_CHECK(every_ >= 1, "PosthocSnapshotSchedule: the snapshot interval must be >= 1, got " << every_);
}

std::string PosthocSnapshotSchedule::after_step(const train::Trainer& trainer, const ParameterSlab& slab,
                                                bool stopping) {
  const std::int64_t done = trainer.step_count();
  if (trainer.power_emas().empty() || done == last_written_) return "";
  if (!stopping && done % every_ != 0 && done != steps_) return "";
  // t of the profiles is the AdamW update count: below the step count when non-finite steps
  // were skipped (posthoc_export.h "ddpm.updates").
  const std::string path =
      write_posthoc_snapshot(run_dir_, done, trainer.optimizer().step_count(), trainer.power_emas(), slab);
  last_written_ = done;
  return path;
}

}  // namespace ddpm::run
