// models/run/posthoc_flags.h: post-hoc EMA in a training program's loop (ddpm-train,
// ddpm-control train): the flags --posthoc-ema S1,S2 and --posthoc-snapshot-every N, their
// checks, and the schedule on which the loop writes the snapshots of the trainer's
// power-function EMAs (the file format and the reconstruction are posthoc_export.h, the math
// models/train/posthoc_ema.h).
//
// The schedule every such loop follows, so that ddpm-export --posthoc-ema can reconstruct an
// EMA at any step a run has a checkpoint of:
//   - a snapshot after every N-th step (N = --posthoc-snapshot-every, 0 meaning the run's
//     --save-every) and after the run's last step;
//   - a snapshot of the step a stop signal ends the run on (stop_signals.h), unless the
//     schedule above already wrote it: the run can then be reconstructed at exactly the step
//     it stopped at (posthoc_export.h refuses steps past the last snapshot);
//   - each snapshot is written BEFORE the checkpoint of the same step, so a resume from that
//     checkpoint never misses it; a resumed run rewrites a snapshot it repeats with the same
//     bytes (the trainer's power EMAs resume bit-identically from power_ema.safetensors).
// Only the trainer's parameter slab is snapshotted: ddpm-control's ControlNet alone (its base
// is frozen and never changes), ddpm-train's whole UNet.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}  // namespace CLI

namespace ddpm {
class ParameterSlab;  // engine/parameters.h
namespace train {
class Trainer;  // models/train/trainer.h
}  // namespace train
}  // namespace ddpm

namespace ddpm::run {

// Registers --posthoc-ema (bound to `sigma_rels`, the list as typed) and
// --posthoc-snapshot-every on `app`, in option group `group` when not empty. `run_folder`
// names the folder in the help ("RUN", "CTRL").
void add_posthoc_ema_flags(CLI::App& app, std::string& sigma_rels, std::int64_t& snapshot_every,
                           const std::string& run_folder, const std::string& group = "");

// The widths of --posthoc-ema (each in (0, max_sigma_rel()], no repeats; "" = none). ValueError
// naming the flag for a bad list, a negative --posthoc-snapshot-every, or one without
// --posthoc-ema.
std::vector<double> validate_posthoc_ema_flags(const std::string& sigma_rels, std::int64_t snapshot_every);

// --posthoc-snapshot-every resolved: the flag, or save_every when it is 0.
std::int64_t posthoc_snapshot_interval(std::int64_t snapshot_every, std::int64_t save_every);

// The schedule above for one training loop. Its owner calls after_step once a step is done
// (before that step's checkpoint) and, when a stop signal ends the run, after_step(..., true)
// before the stop's checkpoint. Only the process that writes the run folder calls it.
class PosthocSnapshotSchedule {
 public:
  // every: posthoc_snapshot_interval's; steps: the step the run ends at (--steps).
  PosthocSnapshotSchedule(std::string run_dir, std::int64_t every, std::int64_t steps);

  // Writes RUN/posthoc/step_<trainer.step_count()>.safetensors when the trainer tracks power
  // EMAs and the step is due (a multiple of `every`, the last step, or `stopping`) and its
  // snapshot is not written yet; returns the path written, "" when none.
  std::string after_step(const train::Trainer& trainer, const ParameterSlab& slab, bool stopping = false);

 private:
  std::string run_dir_;
  std::int64_t every_, steps_;
  std::int64_t last_written_ = -1;  // the step of the last snapshot this loop wrote
};

}  // namespace ddpm::run
