// models/run/lr_schedule_flags.h: the learning-rate schedule flags every training program
// shares (--lr-schedule, --lr-min), their checks, their config.json entries and the
// TrainerConfig they fill; the schedule itself is models/train/lr_schedule.h.
//
// A decaying schedule (linear, cosine) runs out at the run's --steps, so that count belongs
// to the schedule: config.json's "train" section records it as "lr_decay_steps", and a
// resumed run must repeat it (changing --steps mid-run would bend the curve the earlier steps
// followed). A constant schedule records no horizon, so --steps may still grow on resume.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "models/train/trainer.h"

namespace CLI {
class App;
}  // namespace CLI

namespace ddpm::run {

struct LrScheduleFlags {
  std::string schedule = "constant";  // --lr-schedule: constant | linear | cosine
  double lr_min = 0.0;                // --lr-min: the floor the decay ends at
};

// Registers --lr-schedule and --lr-min on `app` (in option group `group` when not empty).
void add_lr_schedule_flags(CLI::App& app, LrScheduleFlags& flags, const std::string& group = "");
// The same, preceded by --warmup-steps bound to `warmup_steps` (the linear warm-up every
// training program's trainer takes; it stays a field of the program's own options, whose
// config.json key is "warmup_steps").
void add_warmup_and_lr_schedule_flags(CLI::App& app, std::int64_t& warmup_steps, LrScheduleFlags& flags,
                                      const std::string& group = "");

// ValueError naming the flag: --warmup-steps < 0, an unknown --lr-schedule, --lr-min outside [0, --lr], a
// --lr-min with the constant schedule (where it would do nothing), or a decaying schedule
// with no step left after --warmup-steps warm-up steps (--steps <= the warm-up).
void validate_lr_schedule_flags(const LrScheduleFlags& flags, double lr, std::int64_t warmup_steps,
                                std::int64_t steps);

// Adds "lr_schedule", "lr_min" and (decaying schedules) "lr_decay_steps" = steps to a
// config.json "train" section.
void add_lr_schedule_json(nlohmann::json& train_section, const LrScheduleFlags& flags, std::int64_t steps);

// A "train" section written before the schedule was recorded ran the constant schedule:
// fills its defaults so such a run still resumes.
void default_lr_schedule_json(nlohmann::json& train_section);

// Sets tc.lr_schedule, tc.lr_min and tc.total_steps = steps (tc.adamw.lr and
// tc.warmup_steps are the caller's).
void apply_lr_schedule(train::TrainerConfig& tc, const LrScheduleFlags& flags, std::int64_t steps);

}  // namespace ddpm::run
