// models/run/stop_signals.cpp: see stop_signals.h.
#include "models/run/stop_signals.h"

#include <signal.h>  // sigaction (POSIX)

namespace ddpm::run {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
struct sigaction g_previous_int, g_previous_term;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

}  // namespace

StopSignals::StopSignals() {
  g_stop_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // the second signal takes the default action: terminate
  sigaction(SIGINT, &sa, &g_previous_int);
  sigaction(SIGTERM, &sa, &g_previous_term);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

int StopSignals::pending() const { return g_stop_signal; }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a stop signal";
  }
}

}  // namespace ddpm::run
