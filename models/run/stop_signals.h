// models/run/stop_signals.h: stopping a training run cleanly on Ctrl-C or a scheduler's
// SIGTERM (SLURM and Kubernetes send SIGTERM before they kill a job).
//
// While a StopSignals is alive, SIGINT and SIGTERM only set a flag: the handler does nothing
// else (a signal can arrive in the middle of a CUDA call or a file write, where nothing but
// an atomic flag is safe). The training loop polls pending() between steps, writes a
// checkpoint of the step it has finished and returns; ddpm-train then exits with 128 + the
// signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports a killed job.
// The handlers are installed with SA_RESETHAND, so a second Ctrl-C while the checkpoint is
// being written kills the process at once (the checkpoint write is atomic: the previous
// checkpoint stays intact). The destructor restores whatever handlers were there before.
#pragma once

#include <csignal>

namespace ddpm::run {

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The signal that asked to stop (SIGINT or SIGTERM), 0 while none has.
  int pending() const;
};

// "SIGINT", "SIGTERM", or "a stop signal" for any other number.
const char* signal_name(int sig);

}  // namespace ddpm::run
