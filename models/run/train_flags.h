// models/run/train_flags.h: ddpm-train's command line, as a library so tests can parse argv.
//
// Flags are kebab-case in the spirit of improved-diffusion (--num-channels, --learn-sigma,
// ...). Presets: after a first parse, the options are reset to the preset named by
// --preset (auto resolved by the device) and the command line is parsed again on top, so
// every flag given explicitly (or in --config) overrides the preset.
#pragma once

#include <CLI/CLI.hpp>

#include "models/run/train_run.h"

namespace ddpm::run {

// Registers every ddpm-train flag except the common ones (--device, --seed, --config, added
// by apps/common/cli.h) on app, bound to o.
void add_train_flags(CLI::App& app, TrainOptions& o);

// After app.parse(argc, argv): applies the preset, then re-parses argv so explicit flags
// win. `device` resolves --preset auto. o.log, o.seed, o.device and o.comm are kept.
void apply_preset_under_flags(CLI::App& app, int argc, const char* const* argv, TrainOptions& o, Device device);

}  // namespace ddpm::run
