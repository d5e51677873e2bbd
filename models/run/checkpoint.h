// models/run/checkpoint.h: the run folder written by ddpm-train and read by the other apps.
//
//   RUN/
//     config.json                   {"model": <unet config>, "diffusion": {...}, "train": {...}}
//     metrics.jsonl, metrics.csv    one line per logged step
//     loss.png                      loss curve
//     samples/step_N.png            EMA samples with a fixed seed
//     checkpoints/step_N/           published atomically (written under a temporary name, renamed)
//       model.safetensors           diffusers names, convolutions OIHW (loads in PyTorch)
//       ema.safetensors             same names and layout, the EMA weights
//       optimizer.safetensors       AdamW moments "exp_avg.<name>", "exp_avg_sq.<name>"
//       trainer_state.json          step, AdamW step count, generator (seed, offset), loader
//                                   position, timestep-sampler history, last metrics,
//                                   "posthoc_ema": [{sigma_rel, gamma}] when tracked
//       power_ema.safetensors       (only with --posthoc-ema) the power-function EMAs'
//                                   current values, "phema<i>.<name>" (models/train/posthoc_ema.h)
//     posthoc/step_N.safetensors    (only with --posthoc-ema) snapshots of the power EMAs for
//                                   post-hoc EMA reconstruction (models/run/posthoc_export.h)
//     checkpoints/latest            text file naming the newest complete step folder
//
// Every safetensors file carries a CRC32 that is verified on load (engine/io/safetensors).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"

namespace ddpm {
class ParameterSlab;     // engine/parameters.h
struct LoaderPosition;   // models/data/loader.h
namespace nn {
class Module;            // models/nn/module.h
}
namespace train {
class Trainer;           // models/train/trainer.h
struct TrainerState;
}  // namespace train
}  // namespace ddpm

namespace ddpm::run {

// Checkpoint folder for `step` inside run_dir.
std::string checkpoint_dir(const std::string& run_dir, std::int64_t step);

// Resolves "latest" (via checkpoints/latest) or an explicit path to a checkpoint folder;
// throws IoError when there is none or it is incomplete.
std::string resolve_checkpoint(const std::string& run_dir, const std::string& which);

// True when the folder already holds a run (config.json or checkpoints/).
bool is_run_folder(const std::string& dir);

// Reads RUN/config.json.
nlohmann::json read_run_config(const std::string& run_dir);

// --overwrite: renames the run folder `dir` to "<dir>.replaced-<UTC yyyymmdd-hhmmss>" (an old
// run is moved aside, never deleted) and returns that name.
std::string move_run_aside(const std::string& dir);

// ---- Writing and reading checkpoints (models/run/checkpoint.cpp) ----

// File names inside a checkpoint folder.
inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kEmaFile = "ema.safetensors";
inline constexpr const char* kOptimizerFile = "optimizer.safetensors";
inline constexpr const char* kTrainerStateFile = "trainer_state.json";
inline constexpr const char* kPowerEmaFile = "power_ema.safetensors";  // optional (post-hoc EMA)

// One checkpoint: host tensors with diffusers names (convolutions OIHW) and the trainer's
// JSON state (its "step" names the folder).
struct Checkpoint {
  std::int64_t step = 0;
  std::vector<std::pair<std::string, Tensor>> model, ema, optimizer;
  std::vector<std::pair<std::string, Tensor>> power_ema;  // empty: no power_ema.safetensors
  nlohmann::json trainer_state;
};

// Publishes run_dir/checkpoints/step_N atomically (written under a temporary name, then
// renamed; an existing step_N is replaced), then rewrites checkpoints/latest atomically.
// On failure nothing is left: no step folder, `latest` unchanged. Returns the folder.
std::string save_checkpoint(const std::string& run_dir, const Checkpoint& ckpt);

// Reads a checkpoint folder, verifying every CRC; IoError naming the file when one is
// missing or damaged.
Checkpoint load_checkpoint(const std::string& dir);

// ---- A trainer's checkpoint (ddpm-train, ddpm-control; models/run/checkpoint.cpp) ----
//
// Both trainers keep their trainable parameters packed in one ParameterSlab; the AdamW
// moments and the EMA are flat tensors of the slab's layout. On disk each is split back into
// per-parameter tensors with the model's diffusers names (convolutions OIHW), so a checkpoint
// loads in PyTorch and does not depend on the slab's packing order.

// A slab-shaped flat f32 host tensor from the per-parameter tensors "<prefix><name>" of
// `tensors` (OIHW convolutions turned KRSC). Every slab entry must be present with its shape
// and no other "<prefix>..." tensor may be; else one IoError naming `source` and listing what
// is missing, unexpected or mismatched.
Tensor slab_flat_from(const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& prefix,
                      const ParameterSlab& slab, const std::string& source);

// Appends the per-parameter views of a slab-shaped flat tensor to `out` as host tensors named
// "<prefix><name>" (convolutions OIHW): the inverse of slab_flat_from.
void append_slab(const Tensor& flat, const std::string& prefix, const ParameterSlab& slab,
                 std::vector<std::pair<std::string, Tensor>>& out);

// The trainer's part of a checkpoint of `net` (whose trainable parameters `slab` packs): the
// model and EMA weights, the AdamW moments, and trainer_state {"step", "adam_step",
// "generator": {seed, offset}, "loader": {epoch, index}}, and when the trainer tracks
// power-function EMAs their values ("phema<i>.<name>") and "posthoc_ema": [{"sigma_rel",
// "gamma"}]. The caller adds its own keys.
Checkpoint trainer_checkpoint(train::Trainer& trainer, nn::Module& net, ParameterSlab& slab,
                              const LoaderPosition& loader);

// The inverse, for a resume from checkpoint folder `dir` (already read into `ck`): loads the
// checkpoint's model weights into `net` (so into the slab) and returns the trainer state with
// them, the EMA, the AdamW moments (moved to `device`), the power EMAs when saved, and the
// generator. The loader position
// is checkpoint_loader_position(ck); a run-specific part of the state (ddpm-train's
// importance-sampler history) is the caller's to add before Trainer::load_state.
train::TrainerState restore_trainer_state(const Checkpoint& ck, const std::string& dir, nn::Module& net,
                                          const ParameterSlab& slab, Device device);

// The loader position saved by trainer_checkpoint.
LoaderPosition checkpoint_loader_position(const Checkpoint& ck);

// Writes RUN/config.json atomically.
void write_run_config(const std::string& run_dir, const nlohmann::json& config);

// The names (dotted paths, "model.num_res_blocks") where two configs differ, each as
// "name: A vs B"; keys missing on one side are listed as "(absent)".
std::vector<std::string> config_differences(const nlohmann::json& a, const nlohmann::json& b,
                                            const std::string& prefix = "");

}  // namespace ddpm::run
