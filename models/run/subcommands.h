// models/run/subcommands.h: what the programs with subcommands (ddpm-eval, ddpm-classifier,
// ddpm-autoencoder) share: one clear message for a word that is neither a subcommand nor a
// flag, and the flags of an evaluation over one split of a dataset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace ddpm::run {

// Levenshtein distance (insertions, deletions and substitutions each cost 1).
std::size_t edit_distance(const std::string& a, const std::string& b);

// Makes `app` report the first stray word as "unknown subcommand 'W' (did you mean X?); the
// subcommands are ..." (or, after a subcommand, as an unexpected argument of it), a CLI11
// ExtrasError, i.e. exit 2 in the apps. The subcommands are looked up when a word arrives, so
// it may be called before or after they are added.
void add_unknown_word_check(CLI::App& app);

// --data (ddpm-eval's forms), --split (train | test), --limit (the first N images, 0 = all)
// and --batch-size (images per forward pass) on `sub`, bound to the given fields.
void add_split_flags(CLI::App& sub, std::string& data, std::string& split, std::int64_t& limit,
                     std::int64_t& batch_size);

}  // namespace ddpm::run
