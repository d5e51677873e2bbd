// models/train/lr_schedule.cpp: see lr_schedule.h for the formulas and their sources.
#include "models/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace ddpm::train {

LrSchedule parse_lr_schedule(const std::string& name) {
  if (name == "constant") return LrSchedule::constant;
  if (name == "linear") return LrSchedule::linear;
  if (name == "cosine") return LrSchedule::cosine;
  DDPM_THROW(ValueError, "learning-rate schedule '" << name
                                                    << "' is unknown; choose constant, linear (decay to the floor "
                                                       "in a straight line) or cosine (SGDR's half cosine)");
}

const char* lr_schedule_name(LrSchedule s) {
  switch (s) {
    case LrSchedule::linear: return "linear";
    case LrSchedule::cosine: return "cosine";
    case LrSchedule::constant: break;
  }
  return "constant";
}

void check_lr_schedule(LrSchedule schedule, double base, double lr_min, std::int64_t warmup_steps,
                       std::int64_t total_steps, const char* who) {
  DDPM_CHECK(std::isfinite(base) && base >= 0.0, who << ": the base learning rate must be finite and >= 0, got " << base);
  DDPM_CHECK(warmup_steps >= 0, who << ": warmup_steps must be >= 0, got " << warmup_steps);
  DDPM_CHECK(std::isfinite(lr_min) && lr_min >= 0.0 && lr_min <= base,
             who << ": the learning-rate floor lr_min " << lr_min << " must lie in [0, " << base
                 << "] (0 up to the base learning rate)");
  if (schedule == LrSchedule::constant) return;
  DDPM_CHECK(total_steps > warmup_steps,
             who << ": the " << lr_schedule_name(schedule) << " learning-rate schedule decays over the steps after the "
                 << warmup_steps << " warm-up steps, but the run has " << total_steps
                 << " steps in all; it needs more steps than warm-up steps");
}

double scheduled_lr(LrSchedule schedule, double base, double lr_min, std::int64_t warmup_steps,
                    std::int64_t total_steps, std::int64_t step) {
  check_lr_schedule(schedule, base, lr_min, warmup_steps, total_steps, "scheduled_lr");
  DDPM_CHECK(step >= 0, "scheduled_lr: the step index must be >= 0, got " << step);
  // Warm-up: b min(1, (k + 1) / W), written exactly as the trainer always has, so a constant
  // schedule reproduces earlier runs bit for bit.
  if (warmup_steps > 0 && step < warmup_steps)
    return base * std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(warmup_steps));
  if (schedule == LrSchedule::constant) return base;
  // The decay's progress p in [0, 1]: 0 on step W, 1 on step S (one past the last step).
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) /
                                         static_cast<double>(total_steps - warmup_steps),
                                     0.0, 1.0);
  const double factor = schedule == LrSchedule::linear ? 1.0 - progress                           // straight line
                                                       : 0.5 * (1.0 + std::cos(M_PI * progress));  // SGDR eq. 5
  return lr_min + (base - lr_min) * factor;
}

}  // namespace ddpm::train
