// models/run/subcommands.cpp: see subcommands.h.
#include "models/run/subcommands.h"

#include <algorithm>
#include <vector>

namespace ddpm::run {

// One row of the dynamic-programming table at a time.
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];  // D[i-1][j-1]
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];  // D[i-1][j]
      row[j] = std::min({up + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// Catches the first word that is neither a subcommand nor a flag. CLI11 alone would report
// a mistyped subcommand (`ddpm-eval fdi ...`) as "A subcommand is required", without the
// word: its requirement check runs before the leftover arguments are reported. Option
// callbacks run before that check, so a hidden positional on the top-level app sees the word
// first. Words after a subcommand reach it too (the subcommands take no positionals and fall
// through to their parent), and are then reported as unexpected arguments of that subcommand.
// The positional sits in a nameless option group with no group title: CLI11 2.1 still lists
// a hidden positional of the app itself in the usage line (as "[]"), not one of a group's.
void add_unknown_word_check(CLI::App& app) {
  auto reject = [&app](const std::string& word) {
    std::string names, parsed, closest;
    std::size_t best = word.size();  // a hint only when closer than retyping the word
    for (const CLI::App* sub : app.get_subcommands([](CLI::App* s) { return !s->get_name().empty(); })) {
      names += (names.empty() ? "" : ", ") + sub->get_name();  // (nameless ones are option groups)
      if (sub->parsed() && parsed.empty()) parsed = sub->get_name();
      const std::size_t d = edit_distance(word, sub->get_name());
      if (d <= 2 && d < best) {
        best = d;
        closest = sub->get_name();
      }
    }
    if (!parsed.empty())
      throw CLI::ExtrasError("unexpected argument '" + word + "' for " + app.get_name() + " " + parsed +
                                 ", which takes flags only (one subcommand per run)",
                             CLI::ExitCodes::ExtrasError);
    throw CLI::ExtrasError("unknown subcommand '" + word + "'" +
                               (closest.empty() ? "" : " (did you mean " + closest + "?)") +
                               "; the subcommands are " + names,
                           CLI::ExitCodes::ExtrasError);
  };
  app.add_option_group("")->add_option_function<std::string>("unknown-word", reject, "");
}

void add_split_flags(CLI::App& sub, std::string& data, std::string& split, std::int64_t& limit,
                     std::int64_t& batch_size) {
  sub.add_option("--data", data, "dataset (ddpm-eval's --data forms)")->capture_default_str();
  sub.add_option("--split", split, "train | test")->check(CLI::IsMember({"train", "test"}))->capture_default_str();
  sub.add_option("--limit", limit, "use the first N images of the split (0 = all)")->capture_default_str();
  sub.add_option("--batch-size", batch_size, "images per forward pass")->capture_default_str();
}

}  // namespace ddpm::run
