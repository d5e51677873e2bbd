// models/train/lr_schedule.h: the learning rate of every training step, a pure function of
// the step index (so a resumed run, which restores the step, gets the same rates).
//
// The convention is diffusers' get_scheduler (optimization.py: get_constant_schedule_with_
// warmup, get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup): a linear
// warm-up over the first W steps, then a decay from the base rate over the remaining
// S - W steps of the run's S total steps. With step k (0-based), base rate b and floor m:
//
//   warm-up (k < W):   lr = b * min(1, (k + 1) / W)      (the DDPM paper's warm-up; it
//                      reaches b on step W - 1, so no step runs at lr 0)
//   afterwards:        p  = clamp((k - W) / (S - W), 0, 1), the decay's progress
//     constant         lr = b
//     linear           lr = m + (b - m) (1 - p)
//     cosine           lr = m + (b - m) * 0.5 * (1 + cos(pi p))
//                      (Loshchilov & Hutter 2017, SGDR, eq. 5, one cycle without restarts:
//                      eta_t = eta_min + (eta_max - eta_min)(1 + cos(pi T_cur / T_i)) / 2)
//
// p = 0 on step W, so the decay starts at b; p would reach 1 on step S, one past the last
// step a run of S steps takes, so the rate approaches m without spending a step at it
// (diffusers' lambda is 0 at step S too). Steps past S (a trainer driven further) stay at
// m. The floor m (lr_min) is SGDR's eta_min; 0 decays to zero as diffusers does.
#pragma once

#include <cstdint>
#include <string>

namespace ddpm::train {

enum class LrSchedule { constant, linear, cosine };

// "constant", "linear" or "cosine"; ValueError listing the choices otherwise.
LrSchedule parse_lr_schedule(const std::string& name);
const char* lr_schedule_name(LrSchedule s);

// The learning rate of step `step` (0-based) as above: base rate `base`, floor `lr_min`,
// `warmup_steps` W (0: none) and `total_steps` S (the decay's horizon; unused by constant).
// ValueError for a negative step or W, lr_min outside [0, base], or a decaying schedule
// whose S leaves no step after the warm-up (S <= W).
double scheduled_lr(LrSchedule schedule, double base, double lr_min, std::int64_t warmup_steps,
                    std::int64_t total_steps, std::int64_t step);

// The checks of scheduled_lr without a step: `who` names the caller in the message.
void check_lr_schedule(LrSchedule schedule, double base, double lr_min, std::int64_t warmup_steps,
                       std::int64_t total_steps, const char* who);

}  // namespace ddpm::train
