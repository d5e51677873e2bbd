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

#include <nlohmann/json.hpp>

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

}  // namespace ddpm::run
