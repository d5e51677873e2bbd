// models/run/lr_schedule_flags.cpp: see lr_schedule_flags.h.
#include "models/run/lr_schedule_flags.h"

#include <cmath>

#include <CLI/CLI.hpp>

#include "engine/error.h"
#include "models/train/lr_schedule.h"

namespace ddpm::run {

void add_lr_schedule_flags(CLI::App& app, LrScheduleFlags& flags, const std::string& group) {
  CLI::Option* s = app.add_option("--lr-schedule", flags.schedule,
                                  "constant | linear | cosine: after the warm-up, decay the learning rate to "
                                  "--lr-min by --steps (cosine: SGDR's half cosine); linear and cosine make --steps part "
                                  "of the schedule, which a resumed run must repeat")
                       ->capture_default_str();
  CLI::Option* m = app.add_option("--lr-min", flags.lr_min,
                                  "the learning rate a linear or cosine schedule decays to, in [0, --lr]")
                       ->capture_default_str();
  if (!group.empty()) {
    s->group(group);
    m->group(group);
  }
}

void add_warmup_and_lr_schedule_flags(CLI::App& app, std::int64_t& warmup_steps, LrScheduleFlags& flags,
                                      const std::string& group) {
  CLI::Option* w =
      app.add_option("--warmup-steps", warmup_steps, "linear learning-rate warm-up steps")->capture_default_str();
  if (!group.empty()) w->group(group);
  add_lr_schedule_flags(app, flags, group);
}

void validate_lr_schedule_flags(const LrScheduleFlags& f, double lr, std::int64_t warmup_steps, std::int64_t steps) {
  DDPM_CHECK(warmup_steps >= 0, "--warmup-steps must be >= 0, got " << warmup_steps);
  DDPM_CHECK(f.schedule == "constant" || f.schedule == "linear" || f.schedule == "cosine",
             "--lr-schedule '" << f.schedule << "' is unknown; choose constant, linear or cosine (the rate after "
                                                "the warm-up: kept, or decayed to --lr-min by --steps)");
  const train::LrSchedule s = train::parse_lr_schedule(f.schedule);
  DDPM_CHECK(std::isfinite(f.lr_min) && f.lr_min >= 0 && f.lr_min <= lr,
             "--lr-min " << f.lr_min << " must lie in [0, --lr " << lr << "]: it is the floor the rate decays to");
  DDPM_CHECK(f.lr_min == 0 || s != train::LrSchedule::constant,
             "--lr-min " << f.lr_min << " has no effect with --lr-schedule constant; choose linear or cosine to "
                                        "decay towards it");
  DDPM_CHECK(s == train::LrSchedule::constant || steps > warmup_steps,
             "--lr-schedule " << f.schedule << " decays the rate over the steps after the warm-up, but --steps "
                              << steps << " leaves none after " << warmup_steps << " warm-up steps");
}

void add_lr_schedule_json(nlohmann::json& train_section, const LrScheduleFlags& f, std::int64_t steps) {
  train_section["lr_schedule"] = f.schedule;
  train_section["lr_min"] = f.lr_min;
  if (train::parse_lr_schedule(f.schedule) != train::LrSchedule::constant) train_section["lr_decay_steps"] = steps;
}

void default_lr_schedule_json(nlohmann::json& train_section) {
  if (!train_section.is_object()) return;
  if (!train_section.contains("lr_schedule")) train_section["lr_schedule"] = "constant";
  if (!train_section.contains("lr_min")) train_section["lr_min"] = 0.0;
}

void apply_lr_schedule(train::TrainerConfig& tc, const LrScheduleFlags& f, std::int64_t steps) {
  tc.lr_schedule = train::parse_lr_schedule(f.schedule);
  tc.lr_min = f.lr_min;
  tc.total_steps = steps;
}

}  // namespace ddpm::run
