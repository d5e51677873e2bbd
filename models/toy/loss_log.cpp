// models/toy/loss_log.cpp: see loss_log.h.
#include "models/toy/loss_log.h"

#include <cmath>
#include <cstdio>
#include <utility>

namespace ddpm::toy {

LossLog::LossLog(std::int64_t total_steps, std::int64_t log_every, std::string indent, int loss_decimals,
                 std::function<void(const std::string&)> sink)
    : total_steps_(total_steps),
      log_every_(log_every),
      indent_(std::move(indent)),
      loss_decimals_(loss_decimals),
      sink_(std::move(sink)),
      t0_(std::chrono::steady_clock::now()) {}

double LossLog::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void LossLog::after_step(std::int64_t step, double loss, bool counted) {
  if (counted) running_ += loss, ++counted_;
  if ((step + 1) % log_every_ != 0 && step + 1 != total_steps_) return;
  steps_.push_back(step + 1);
  losses_.push_back(counted_ > 0 ? running_ / static_cast<double>(counted_) : NAN);
  if (sink_) {
    char line[160];
    std::snprintf(line, sizeof line, "%sstep %lld/%lld  loss %.*f  %.1f s", indent_.c_str(),
                  static_cast<long long>(step + 1), static_cast<long long>(total_steps_), loss_decimals_,
                  losses_.back(), seconds());
    sink_(line);
  }
  running_ = 0, counted_ = 0;
}

}  // namespace ddpm::toy
