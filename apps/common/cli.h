// apps/common/cli.h: what every ddpm-* program shares.
//
// - Common flags: --device auto|cpu|cuda[:N], --seed, --config FILE. The config file is TOML
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
};

// Adds --device, --seed and --config to app.
void add_common_flags(CLI::App& app, CommonFlags& flags);

// Resolves --device (a ValueError, i.e. exit 2, when CUDA is asked for and unusable) and
// selects the CUDA device for this process.
Device resolve_device(const CommonFlags& flags);

// Parses argv into app, then runs body; maps exceptions to the exit codes above.
int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

// Throws ValueError "<flag> must be positive, got <v>" and friends: small helpers for the
// checks every app repeats.
void require_positive(const char* flag, double value);
void require_in_range(const char* flag, double value, double lo, double hi);

}  // namespace ddpm::cli
