// apps/common/cli.h: what every ddpm-* program shares.
//
// - Common flags: --device auto|cpu|cuda[:N], --seed, --tf32, --conv-algo, --config FILE.
//   --tf32 and --conv-algo set the CUDA math settings of engine/math_mode.h (no effect on the
//   CPU). The config file is TOML
//   (CLI11's reader): `key = value` lines using the long flag names without dashes
//   (`batch-size = 64`); a key that is not a flag of this program is an error.
// - Exit codes: 0 success; 2 usage errors (bad flags, bad values, ddpm::ValueError raised
//   while validating them); 1 anything else (I/O, CUDA, a failed run). Exactly one line
//   "ddpm-xxx: error: <message>" is printed to stderr (without the library's [file:line] suffix
//   unless DDPM_DEBUG is set).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/device.h"

namespace ddpm::cli {

struct CommonFlags {
  std::string device = "auto";
  std::uint64_t seed = 0;
  // TF32 in cuDNN convolutions and cuBLAS GEMMs: on by default in the apps, as PyTorch does
  // for convolutions (the engine's own default, and the tests', is off: exact fp32).
  bool tf32 = true;
  // How cuDNN algorithms are chosen: "benchmark" (timed once per shape) or "heuristic".
  // An app may change the default before add_common_flags (ddpm-train uses heuristic, whose
  // choice does not vary between processes, so a resumed run stays bit-identical).
  std::string conv_algo = "benchmark";
};

// Adds --device, --seed, --tf32, --conv-algo and --config to app.
void add_common_flags(CLI::App& app, CommonFlags& flags);

// Resolves --device (a ValueError, i.e. exit 2, when CUDA is asked for and unusable),
// selects the CUDA device for this process and applies --tf32 and --conv-algo.
Device resolve_device(const CommonFlags& flags);

// Parses argv into app, then runs body; maps exceptions to the exit codes above.
int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

// Throws ValueError "<flag> must be positive, got <v>" and friends: small helpers for the
// checks every app repeats.
void require_positive(const char* flag, double value);
void require_in_range(const char* flag, double value, double lo, double hi);

}  // namespace ddpm::cli
