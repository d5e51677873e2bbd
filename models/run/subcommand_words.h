// models/run/subcommand_words.h: one clear message for a word that is neither a subcommand
// nor a flag, shared by the programs with subcommands (ddpm-eval, ddpm-classifier,
// ddpm-autoencoder).
#pragma once

#include <cstddef>
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

}  // namespace ddpm::run
