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
//                                   position, timestep-sampler history, last metrics
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

// ---- Writing and reading checkpoints (models/run/checkpoint.cpp) ----

// File names inside a checkpoint folder.
inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kEmaFile = "ema.safetensors";
inline constexpr const char* kOptimizerFile = "optimizer.safetensors";
inline constexpr const char* kTrainerStateFile = "trainer_state.json";

// One checkpoint: host tensors with diffusers names (convolutions OIHW) and the trainer's
// JSON state (its "step" names the folder).
struct Checkpoint {
  std::int64_t step = 0;
  std::vector<std::pair<std::string, Tensor>> model, ema, optimizer;
  nlohmann::json trainer_state;
};

// Publishes run_dir/checkpoints/step_N atomically (written under a temporary name, then
// renamed; an existing step_N is replaced), then rewrites checkpoints/latest atomically.
// On failure nothing is left: no step folder, `latest` unchanged. Returns the folder.
std::string save_checkpoint(const std::string& run_dir, const Checkpoint& ckpt);

// Reads a checkpoint folder, verifying every CRC; IoError naming the file when one is
// missing or damaged.
Checkpoint load_checkpoint(const std::string& dir);

// Writes RUN/config.json atomically.
void write_run_config(const std::string& run_dir, const nlohmann::json& config);

// The names (dotted paths, "model.num_res_blocks") where two configs differ, each as
// "name: A vs B"; keys missing on one side are listed as "(absent)".
std::vector<std::string> config_differences(const nlohmann::json& a, const nlohmann::json& b,
                                            const std::string& prefix = "");

}  // namespace ddpm::run
