// models/run/posthoc_export.h: the post-hoc EMA snapshots of a ddpm-train or ddpm-control
// train run and the reconstruction of an EMA of any width from them (ddpm-export
// --posthoc-ema; the math is models/train/posthoc_ema.h, EDM2 sec. 3.2).
//
// Snapshots. With --posthoc-ema S1,S2,... the training loop writes, every
// --posthoc-snapshot-every steps (default --save-every), at the last step and at the step a
// stop signal ends the run on (the schedule of posthoc_flags.h),
//   RUN/posthoc/step_N.safetensors      atomically, never pruned
//     "phema<i>.<name>"                 profile i's weights, diffusers names, OIHW (like ema.safetensors)
//     metadata "ddpm.step"              N, the trainer step
//              "ddpm.updates"           t, the AdamW updates so far (the profile's t; < N only
//                                       when non-finite steps were skipped)
//              "ddpm.posthoc_ema"       JSON [{"sigma_rel": s, "gamma": g}, ...] in profile order
// Storage: one flat copy of the weights per profile per snapshot (2 profiles every 1000 steps
// of a 100k-step run: 200 copies of the model).
//
// Reconstruction of width sigma_rel at trainer step N (default: the last snapshot): every
// profile of every snapshot taken at or before N is a basis profile (gamma_i, t_i); the target
// is (gamma(sigma_rel), t_r) with t_r the updates at N (that of the last snapshot <= N plus the
// steps since; exact unless steps were skipped in between). solve_posthoc_coefficients gives
// x and the residual; the weights sum_i x_i snapshot_i are accumulated in double, one snapshot
// file in memory at a time, and stored as f32.
//
// The exported folder is checkpoint-shaped (model_source.h case 2), not a diffusers folder:
//   DIR/config.json       the run's config.json plus "posthoc_ema": {sigma_rel, gamma, step,
//                         updates, relative_residual, rank, snapshots, coefficients}
//   DIR/ema.safetensors   the reconstructed weights
//   DIR/autoencoder/      a latent run's autoencoder (copied), so latent runs work too
// A ddpm-control run's folder is the same with the control run's config.json (its snapshots
// hold the ControlNet alone); open_control_run reads it (control_run.h).
// Why: the run's own config keeps every diffusion setting, including the EDM objective and
// zero-terminal-SNR, which a DDPMScheduler config cannot express (export_diffusers refuses
// EDM), and a latent model's autoencoder; ddpm-sample, ddpm-eval and open_model read it as a
// checkpoint folder. Convert it to diffusers afterwards with a plain ddpm-export if wanted.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/train/posthoc_ema.h"

namespace ddpm::run {

inline constexpr const char* kPosthocFolder = "posthoc";

// Writes RUN/posthoc/step_<step>.safetensors atomically (replacing one of that step, as a
// resumed run rewrites it identically); returns its path.
std::string write_posthoc_snapshot(const std::string& run_dir, std::int64_t step, std::int64_t updates,
                                   const std::vector<train::PowerEma>& emas, const ParameterSlab& slab);

struct PosthocSnapshot {
  std::string path;
  std::int64_t step = 0, updates = 0;
  std::vector<double> sigma_rels, gammas;  // per profile, in "phema<i>." order
};

// The snapshots of a run folder (or of the run two levels above a checkpoint folder), sorted
// by step; only the headers are read. IoError when there is no posthoc/ folder or it holds no
// snapshot, or a header is damaged (naming the file).
std::vector<PosthocSnapshot> list_posthoc_snapshots(const std::string& run_or_checkpoint);

// The run folder that holds posthoc/ for what the user passed to --checkpoint.
std::string posthoc_run_folder(const std::string& run_or_checkpoint);

struct PosthocResult {
  std::string run_dir;
  double sigma_rel = 0.0, gamma = 0.0;
  std::int64_t step = 0, updates = 0;  // the target: trainer step N and its update count t_r
  std::vector<std::int64_t> snapshot_steps;  // the snapshots used, in order
  std::int64_t next_snapshot_step = 0;       // the first snapshot after `step`; 0 when none
  std::vector<train::PowerProfile> basis;    // their profiles, snapshot-major
  train::PosthocSolution solution;           // coefficients per basis profile, residual
  std::vector<std::pair<std::string, Tensor>> weights;  // diffusers names, OIHW, f32 host tensors
};

// At least this many snapshots at or before the requested step: with one, the reconstruction
// can only mix the tracked widths at one time, and misses any other width badly.
inline constexpr std::size_t kMinPosthocSnapshots = 2;

// Reconstructs the EMA of width sigma_rel at trainer step `step` (<= 0: the last snapshot).
// ValueError for sigma_rel out of range, a step before 1 or past the last snapshot (naming
// the last snapshot's step), or fewer than kMinPosthocSnapshots snapshots at or before it;
// IoError for missing or damaged files. An error of the solve itself (posthoc_ema.h) names
// the posthoc/ folder and the snapshot steps it used (solve_posthoc_snapshots).
PosthocResult reconstruct_posthoc_ema(const std::string& run_or_checkpoint, double sigma_rel, std::int64_t step = 0);

// solve_posthoc_coefficients for the profiles of the snapshots of `steps` in folder `where`:
// the math stays free of file names, and this layer adds them to its errors (the solve's
// ValueError is rethrown as a ValueError, prefixed by the folder and the steps; any other
// ddpm::Error as an Error).
train::PosthocSolution solve_posthoc_snapshots(const std::string& where, const std::vector<std::int64_t>& steps,
                                               const std::vector<train::PowerProfile>& basis,
                                               const train::PowerProfile& target);

// "" when the result's step is a snapshot's. Otherwise a sentence for the user: the steps
// after the last snapshot at or before it are in no snapshot (no basis profile covers them:
// every profile of a snapshot at step s ends at s), so the reconstruction can only
// extrapolate over them and its residual grows with their number; it names the snapshot
// steps that bracket the request (or the last one, when none follows) and the nearest one.
std::string posthoc_gap_note(const PosthocResult& result);

// Writes the checkpoint-shaped folder described above, published atomically; an existing
// non-empty `dir` is a ValueError unless overwrite.
void write_posthoc_model(const PosthocResult& result, const std::string& dir, bool overwrite = false);

// The writer behind it, for any EMA weights that belong to a run's network (also
// ddpm-distill's round folders, models/run/distill_run.h): DIR/config.json = config,
// DIR/ema.safetensors = weights (diffusers names, OIHW) with `metadata` (plus "format": "pt"),
// and for a latent config the autoencoder copied from source_run_dir. Published atomically;
// an existing non-empty `dir` is a ValueError unless overwrite.
void write_ema_model_folder(nlohmann::json config, const std::string& source_run_dir,
                            const std::vector<std::pair<std::string, Tensor>>& weights,
                            const std::map<std::string, std::string>& metadata, const std::string& dir,
                            bool overwrite = false);

}  // namespace ddpm::run
