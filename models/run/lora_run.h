// models/run/lora_run.h: the run-folder side of ddpm-train --init-from SRC --lora-rank R
// (models/nn/lora.h has the adapters themselves).
//
// A LoRA run is a fine-tune (finetune.h) whose slab holds only the adapters: SRC's weights
// stay frozen (requires_grad cleared), so AdamW, the EMA, gradient clipping and the
// checkpoints see the adapters alone. Its checkpoints' model.safetensors, ema.safetensors and
// optimizer.safetensors therefore hold only "<projection>.lora_A.weight" / ".lora_B.weight"
// tensors (and their moments): a few KiB to MiB instead of the whole model. config.json
// records
//   "lora": {"rank": R, "alpha": A, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}
// beside "init_from" (finetune.h), whose files and SHA-256 digests name the base exactly.
//
// Opening a LoRA run or checkpoint (open_model, model_source.h, for ddpm-sample, ddpm-eval,
// ddpm-export, ...) opens the recorded base (open_recorded_base), checks every recorded
// digest (IoError when the base file changed or is gone: the adapters were trained for
// those exact weights), puts a LoraSet on it, loads the checkpoint's adapters (EMA or raw,
// as asked) and merges them, W <- W + (A/R) B A_mat: the result is an ordinary UNet, so every
// sampler, guidance and ddpm-export (which thus writes the merged model) work unchanged.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "models/run/model_source.h"

namespace ddpm::run {

// config.json's "lora" section; alpha <= 0 means alpha = rank.
nlohmann::json lora_config_json(int rank, double alpha);
// rank and alpha of a "lora" section (ValueError for a malformed one).
std::pair<int, double> lora_rank_alpha(const nlohmann::json& lora);

// The base a fine-tune recorded in its "init_from" section, opened on `device` from the
// recorded weights file (not from SRC's "latest", which may have moved on), every recorded
// file's SHA-256 checked. IoError naming the file when it is missing or changed.
ModelSource open_recorded_base(const nlohmann::json& init_from, Device device);

// Opens a LoRA checkpoint as described above: `config` is its run's config.json (with
// "lora" and "init_from"), `adapters` the checkpoint's model.safetensors or ema.safetensors.
ModelSource open_lora_checkpoint(const nlohmann::json& config, const std::string& adapters, Device device,
                                 const std::string& kind, bool ema);

}  // namespace ddpm::run
