// tests/support/stop_at_log.h: a log callback that stops a run the way a user's Ctrl-C or a
// scheduler's SIGTERM would, at a chosen log line, for the resume tests of ddpm-distill
// (progressive and consistency): the run's stop-signal handler (models/run/stop_signals.h)
// sees the signal after the step that logged the line, saves its state and returns.
#pragma once

#include <csignal>
#include <functional>
#include <memory>
#include <string>

namespace ddpm::testing {

// Raises SIGTERM once, at the first log line starting with `line` after one starting with
// `after` ("" = from the first line on); sets *raised then.
inline std::function<void(const std::string&)> sigterm_at(const std::string& after, const std::string& line,
                                                           bool* raised) {
  auto armed = std::make_shared<bool>(after.empty());
  return [=](const std::string& l) {
    if (!*armed && l.rfind(after, 0) == 0) *armed = true;
    if (*armed && !*raised && l.rfind(line, 0) == 0) {
      *raised = true;
      std::raise(SIGTERM);
    }
  };
}

}  // namespace ddpm::testing
