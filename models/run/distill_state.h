// models/run/distill_state.h: the saved state of a ddpm-distill round in progress, so that a
// stopped or crashed run continues where it was (`ddpm-distill --resume --out OUT`) and
// ends with the same bits as a run that was never interrupted. The loop that writes and
// reads it is models/run/distill_run.cpp; the user-facing contract is distill_run.h
// ("Resume").
//
// Where it lives: the sibling folder OUT.distill-state/ (distill_state_dir), for every
// round. Not inside OUT, because
//   - round 1 has no OUT yet, and with --overwrite the old OUT must stay whole until round 1
//     is published (publish_directory replaces it then), so round 1's state cannot be there;
//   - OUT holds only published rounds and distill.json: whatever lists OUT (ddpm-eval over
//     round_*, a user, the tests) never meets anything unfinished;
//   - one place for every round: a resume never has to guess where the newest state is.
// It is published as a whole with publish_directory (a temporary folder renamed over the
// previous state), so a crash while writing leaves the previous state intact, and it is
// removed when the run completes.
//
//   OUT.distill-state/
//     state.json         what the JSON below holds: format, the options that define the run
//                        (--guided and --guided-steps among them), the round (its number: 0 is
//                        stage 1 of guided distillation) and the steps done in it, the AdamW
//                        step count, every generator of the loop by name (seed, offset), the
//                        data loader's position, the held-out gap_before (null: measure it
//                        again), the loss window, the per-step losses (null for a skipped
//                        step), the seconds spent, and distill.json's record as of the rounds
//                        published before this one
//     state.safetensors  flat slab tensors split per parameter, "<what>.<parameter name>"
//                        (convolutions OIHW, checkpoint.h's layout): "student.", "ema.",
//                        "exp_avg.", "exp_avg_sq.", "teacher." (the round's teacher: the
//                        previous round's EMA, or the original teacher in the first round,
//                        with a guided run's fresh guidance embedding). CRC32 checked on load.
//
// ddpm-distill --method consistency (consistency_run.h "Resume") saves its run in the same
// folder and format with "method": "consistency": no round (one run, one folder OUT) and no
// record; its tensors are "student.", "ema.", "exp_avg.", "exp_avg_sq." and "target." (the
// target network theta^-); its options are consistency_state.h's. A state.json without
// "method" (written before there was a second method) is a progressive one.
//
// Bit-identical continuation: every random draw of a step comes from the generators saved here
// (the step's t indices, eps, label dropout, a guided run's per-example w and a latent
// teacher's posterior samples from the draw generator; the student's dropout from its own) or
// from the loader's position (the data order and the flips are functions of its seed, epoch and
// index: models/data/loader.h); the held-out examples of a round are drawn from a per-round
// seed. A later per-example draw made from one of these generators needs nothing new; a new
// generator is saved by adding it to `generators`.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/data/loader.h"
#include "models/run/distill_run.h"

namespace ddpm {
class ParameterSlab;  // engine/parameters.h
class AdamW;          // engine/optim.h
class Ema;
}  // namespace ddpm

namespace ddpm::run {

inline constexpr const char* kDistillStateJson = "state.json";
inline constexpr const char* kDistillStateTensors = "state.safetensors";

// "OUT.distill-state" beside OUT (a trailing '/' of OUT ignored).
std::string distill_state_dir(const std::string& out);

inline constexpr const char* kProgressiveMethod = "progressive";
inline constexpr const char* kConsistencyMethod = "consistency";

struct DistillState {
  std::string method = kProgressiveMethod;  // --method of the run; "consistency": no round, no record
  nlohmann::json options;  // the defining options, as distill_run records them
  int round = 1;           // the round in progress, by its folder's number (progressive only)
  std::int64_t step = 0;   // optimiser steps done in it (0: it has not started)
  std::int64_t adam_step = 0;
  std::map<std::string, Generator> generators;  // by name; seed and offset
  LoaderPosition loader;
  double gap_before = 0;
  bool has_gap_before = false;  // false: measured again on resume
  double final_loss = 0;        // the last logged window's mean (NaN: none yet)
  double window_sum = 0;        // the loss window being summed
  std::int64_t window_n = 0;
  std::vector<double> losses;   // per step done, NaN for a skipped step
  double seconds = 0;
  nlohmann::json record;        // distill.json as of the rounds published before this one (progressive only)
  // Save: flat slab-shaped tensors by name ("student", "ema", ...), each split with its own
  // slab (the student's and the teacher's may differ). Load: the per-parameter tensors as
  // read, for distill_state_flat.
  struct Flat {
    std::string name;
    Tensor values;
    const ParameterSlab* slab = nullptr;
  };
  std::vector<Flat> flats;
  std::vector<std::pair<std::string, Tensor>> tensors;
};

// Publishes `st` as distill_state_dir(out), replacing the previous state atomically.
void save_distill_state(const std::string& out, const DistillState& st);

// Reads the state of OUT: ValueError when there is none (nothing to resume), IoError naming
// the file for an incomplete or damaged one (a CRC that does not match, a JSON that is not a
// state of this format, a value of the wrong type).
DistillState load_distill_state(const std::string& out);

// The --method of the state saved beside OUT; nullopt when there is none or its state.json
// does not read (the resume that follows says what is wrong). ddpm-distill --resume without
// --method runs the method it names.
std::optional<std::string> saved_distill_method(const std::string& out);

// --resume with `method`: ValueError naming --method, both methods and the state file when
// the state of OUT was saved by the other method.
void check_saved_method(const DistillState& st, const std::string& method, const std::string& out);

// The flat tensor `name` of a loaded state in `slab`'s layout, on `device`; IoError naming
// the state file when a parameter is missing or of another shape.
Tensor distill_state_flat(const DistillState& st, const std::string& out, const std::string& name,
                          const ParameterSlab& slab, Device device);

// Loads the saved student, EMA and AdamW state of the round in progress into `slab`, `ema`
// and `opt` (IoError naming the state file when they do not fit the model).
void restore_round_state(const DistillState& st, const std::string& out, ParameterSlab& slab, Ema& ema, AdamW& opt);

// The options that define a distillation run's result, as state.json records them
// (--checkpoint-every and --device are run controls: they may change on resume; --log-every
// is not, as a round's final loss is the mean of its last logged window).
nlohmann::json distill_options_json(const DistillOptions& o);

// --resume, step 1: when OUT/distill.json says the run is complete, the result it lists (a
// leftover state folder is removed); nullopt otherwise.
std::optional<DistillResult> completed_distill_run(const DistillOptions& o);

// --resume, step 2: the saved state of OUT, with the defining options of `o` replaced by the
// saved ones. ValueError naming the flag and both values when a flag in o.flags_given
// differs from the saved value, when there is no state, or when it is a consistency run's; IoError for a damaged state, or
// one whose published rounds are no longer in OUT.
DistillState resume_distill_state(DistillOptions& o);

// The published rounds distill.json's record lists (their per-step losses are not kept).
std::vector<DistillRound> rounds_from_record(const nlohmann::json& record, const std::string& out);

// The resume rule for options: `saved` is state.json's "options", `given` the same keys
// built from this command line, `flags_given` the flags it spelt out, `flag_of_key` the
// flag of each key. A given flag whose value differs from the saved one is refused
// (ValueError naming the flag and both values); the caller then takes the saved values.
void check_resume_flags(const nlohmann::json& saved, const nlohmann::json& given,
                        const std::vector<std::string>& flags_given,
                        const std::vector<std::pair<std::string, std::string>>& flag_of_key,
                        const std::string& state_file);

// ---- The defining options of a method, listed once ----
//
// Each method has one table of OptionBinding: for every option that defines its result, the
// key state.json records it under, the flag that sets it and the member of the options struct
// that holds it. The three things a resume needs come from that one table, so they cannot
// disagree: the "options" object written to state.json (options_json), the key -> flag list
// check_resume_flags compares (option_flags), and the saved values taken back into the
// options on --resume (take_saved_options). An option is added by adding one row.
template <typename Options>
struct OptionBinding {
  const char* key;   // state.json's "options" key
  const char* flag;  // the command-line flag that sets it
  std::function<nlohmann::json(const Options&)> save;          // the value state.json records
  std::function<void(const nlohmann::json&, Options&)> take;   // the saved value back (json errors thrown)
};

// A row for the member `member`, recorded as it is.
template <typename Options, typename T>
OptionBinding<Options> bind_option(const char* key, const char* flag, T Options::*member) {
  return {key, flag, [member](const Options& o) { return nlohmann::json(o.*member); },
          [member](const nlohmann::json& v, Options& o) { o.*member = v.get<T>(); }};
}

// A row whose recorded value is `canonical(o.*member)`: one spelling of the many the flag
// accepts (--guided's "1, 5" and "1.0,5" are one range), so that equal options compare equal.
// The canonical form is what is taken back, and it must parse as the flag does.
template <typename Options, typename T, typename Canonical>
OptionBinding<Options> bind_option(const char* key, const char* flag, T Options::*member, Canonical canonical) {
  return {key, flag, [member, canonical](const Options& o) { return nlohmann::json(canonical(o.*member)); },
          [member](const nlohmann::json& v, Options& o) { o.*member = v.get<T>(); }};
}

template <typename Options>
using OptionTable = std::vector<OptionBinding<Options>>;

// --guided (guided_distill.h parse_guided_range) as numbers, written back as "S_MIN,S_MAX" in
// the shortest round-trip form: "1, 5", "1,5.0" and "1.0,5" are one range, saved and compared
// as "1.0,5.0"; "" (off) stays "". The canonical form of both methods' "guided" option.
std::string canonical_guided(const std::string& spec);

// The "options" object of state.json: every row's key and recorded value.
template <typename Options>
nlohmann::json options_json(const OptionTable<Options>& table, const Options& o) {
  nlohmann::json js = nlohmann::json::object();
  for (const OptionBinding<Options>& b : table) js[b.key] = b.save(o);
  return js;
}

// The key -> flag list of check_resume_flags, in the table's order (the first differing flag
// is the one named).
template <typename Options>
std::vector<std::pair<std::string, std::string>> option_flags(const OptionTable<Options>& table) {
  std::vector<std::pair<std::string, std::string>> flags;
  for (const OptionBinding<Options>& b : table) flags.emplace_back(b.key, b.flag);
  return flags;
}

// IoError: `state_file` is damaged, "options"."key" is missing or of the wrong type (`what`:
// the JSON library's reason).
[[noreturn]] void throw_damaged_option(const std::string& state_file, const std::string& key, const std::string& what);

// --resume: every row's saved value (`saved`: state.json's "options") into `o`; IoError
// naming the file and the key for a missing or ill-typed one.
template <typename Options>
void take_saved_options(const OptionTable<Options>& table, const nlohmann::json& saved, Options& o,
                        const std::string& state_file) {
  for (const OptionBinding<Options>& b : table) {
    try {
      b.take(saved.at(b.key), o);
    } catch (const nlohmann::json::exception& e) {
      throw_damaged_option(state_file, b.key, e.what());
    }
  }
}

// --resume of a method's options, the whole rule: a flag in o.flags_given whose value differs
// from the saved one is refused (check_resume_flags), then the saved values replace o's.
template <typename Options>
void resume_options(const OptionTable<Options>& table, const nlohmann::json& saved, Options& o,
                    const std::string& state_file) {
  check_resume_flags(saved, options_json(table, o), o.flags_given, option_flags(table), state_file);
  take_saved_options(table, saved, o, state_file);
}

// ---- The loop's side, shared by both methods ----
//
// What a distillation loop carries from one step to the next, by reference to the loop's own
// objects: both methods save these fields the same way (save_state fills a DistillState from
// them) and restore them the same way. Each loop adds only what is its own: the progressive
// round, record and round teacher; the consistency method and target network theta^-.
struct DistillProgress {
  Generator& draws;    // "draws": t / levels, eps, label dropout, w, latent posterior samples
  Generator& dropout;  // "dropout": the student's dropout
  BatchLoader& loader;
  ParameterSlab& slab;  // the student
  Ema& ema;
  AdamW& opt;
  double& final_loss;  // the last logged window's mean (NaN: none yet)
  double& window_sum;  // the loss window being summed
  std::int64_t& window_n;
  std::vector<double>& losses;  // per step done
};

// The common fields of the state after `done` steps, `seconds` spent: step, AdamW step,
// generators, loader position, gap_before (measured: has_gap_before), the loss window, the
// losses, and the flats "student", "ema", "exp_avg", "exp_avg_sq" (p.slab's layout). method,
// options, round, record and further flats are the caller's.
DistillState capture_distill_progress(const DistillProgress& p, std::int64_t done, double gap_before,
                                      double seconds);

// The inverse, on --resume: the generators by name (IoError naming the state file when one is
// missing), the loader position, the student, EMA and AdamW (restore_round_state), the final
// loss, the loss window and the losses. The caller takes st.step, st.seconds and st.gap_before
// (whose measure it skips when st.has_gap_before) itself.
void restore_distill_progress(const DistillState& st, const std::string& out, const DistillProgress& p);

// The tail of one training step of either method, after loss.backward() of step `step`
// (0-based): the gradient norm, clipped to grad_clip when > 0. A non-finite loss or norm skips
// the step: its loss is recorded as NaN and nothing moves (weights, moments, EMA, window).
// Otherwise AdamW steps at train::warmup_lr(lr, warmup_steps, step), the EMA follows, and the
// loss joins the window. Returns whether the step was applied.
bool apply_distill_step(const DistillProgress& p, double loss, double grad_clip, double lr, std::int64_t warmup_steps,
                        std::int64_t step);

// After `done` of `total` steps: at every log_every-th step and at the last, the window's mean
// becomes final_loss (kept when every step of the window was skipped), the window restarts and
// the log line "  step done/total loss L" is returned; an empty string otherwise.
std::string close_loss_window(const DistillProgress& p, std::int64_t done, std::int64_t total,
                              std::int64_t log_every);

// A number in a log line (a loss, a gap, a scale): 4 significant digits.
std::string fmt_log(double v);

}  // namespace ddpm::run
