// models/run/presets.h: named training configurations for ddpm-train --preset.
//
// A preset sets a group of TrainOptions fields; flags given explicitly on the command line
// (or in --config) override it (models/run/train_flags.h re-parses them on top).
//   auto        cpu-small on the CPU, gpu-medium on a GPU
//   cpu-small   a tiny UNet that trains on Fashion-MNIST on a 2-core CPU in minutes
//   gpu-medium  a 32x32 UNet (64 channels, 4 levels, attention at 16) for an hour-scale GPU run
//   gpu-cifar   the DDPM CIFAR-10 network and recipe (Ho et al. 2020, 35.7M parameters)
//   none        the TrainOptions defaults
// A text-conditioned run (o.text.enabled) takes every preset's learning rate capped at
// kTextPresetMaxLr: its transformer text encoder and cross-attention, trained jointly from
// scratch, stop reading the caption at cpu-small's 2e-3 (docs/RESULTS.md, "Text conditioning
// and the learning rate", session 13); an explicit --lr still wins.
#pragma once

#include <string>
#include <vector>

#include "engine/device.h"
#include "models/run/train_run.h"

namespace ddpm::run {

std::vector<std::string> preset_names();
// "auto" -> "cpu-small" or "gpu-medium" by device; other names unchanged (ValueError when unknown).
std::string resolve_preset(const std::string& name, Device device);
inline constexpr double kTextPresetMaxLr = 5e-4;

// Sets the preset's fields of o (name already resolved; ValueError when unknown), with the
// lr cap above when o.text.enabled.
void apply_preset(const std::string& name, TrainOptions& o);

}  // namespace ddpm::run
