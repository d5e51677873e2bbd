// models/toy/loss_log.h: the loss log of the toy kit's training loops (ddpm-toy train's
// trainer loop, models/run/toy_run.cpp, and progressive distillation's student loop,
// distill.cpp).
//
// Every log_every steps, and at the last step, the mean loss of the steps counted since the
// previous point is recorded (the points of loss.png and of the reports' log_steps /
// log_losses; NaN when every step since was skipped) and, when a sink is given, printed as one
// progress line:
//   <indent>step S/N  loss L  T s
// with L to loss_decimals decimals and T the seconds since the log was made. Each loop keeps
// its own indent and precision (ddpm-toy train: none and 4; a distillation round, printed
// under its round header: two spaces and 5), so their printed output is unchanged.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ddpm::toy {

class LossLog {
 public:
  LossLog(std::int64_t total_steps, std::int64_t log_every, std::string indent, int loss_decimals,
          std::function<void(const std::string&)> sink);

  // After 0-based step `step`: its loss joins the running mean when `counted` (a skipped
  // step's does not), and at a logging point the mean is recorded, printed and reset.
  void after_step(std::int64_t step, double loss, bool counted);

  const std::vector<std::int64_t>& steps() const { return steps_; }  // the step count of each point
  const std::vector<double>& losses() const { return losses_; }      // the mean loss of each point
  double seconds() const;  // since construction

 private:
  std::int64_t total_steps_, log_every_;
  std::string indent_;
  int loss_decimals_;
  std::function<void(const std::string&)> sink_;
  std::chrono::steady_clock::time_point t0_;
  double running_ = 0;
  std::int64_t counted_ = 0;
  std::vector<std::int64_t> steps_;
  std::vector<double> losses_;
};

}  // namespace ddpm::toy
