// StopSignals: SIGINT / SIGTERM become a flag while it lives, the first one only (the handler
// resets itself), and the handlers that were there before come back when it goes. The whole
// stop-checkpoint-resume path of ddpm-train is tests/cli/train_signal_test.sh.
#include <gtest/gtest.h>
#include <signal.h>

#include "models/run/stop_signals.h"

namespace ddpm {
namespace {

volatile std::sig_atomic_t g_outer = 0;
extern "C" void outer_handler(int sig) { g_outer = sig; }

void (*current_handler(int sig))(int) {
  struct sigaction now {};
  sigaction(sig, nullptr, &now);
  return now.sa_handler;
}

TEST(StopSignals, ASignalBecomesAFlagAndTheOldHandlersReturn) {
  struct sigaction outer {}, saved_int {}, saved_term {};
  outer.sa_handler = outer_handler;
  sigemptyset(&outer.sa_mask);
  sigaction(SIGINT, &outer, &saved_int);
  sigaction(SIGTERM, &outer, &saved_term);
  {
    run::StopSignals stop;
    EXPECT_EQ(stop.pending(), 0);
    std::raise(SIGTERM);
    EXPECT_EQ(stop.pending(), SIGTERM);
    EXPECT_EQ(g_outer, 0) << "the outer handler must not run while StopSignals is installed";
    // SA_RESETHAND: after the first SIGTERM, a second would take the default action (exit).
    EXPECT_EQ(current_handler(SIGTERM), SIG_DFL);
    EXPECT_NE(current_handler(SIGINT), SIG_DFL);
    EXPECT_STREQ(run::signal_name(SIGTERM), "SIGTERM");
    EXPECT_STREQ(run::signal_name(SIGINT), "SIGINT");
  }
  EXPECT_EQ(current_handler(SIGINT), outer_handler);
  EXPECT_EQ(current_handler(SIGTERM), outer_handler);
  std::raise(SIGINT);
  EXPECT_EQ(g_outer, SIGINT);
  {
    run::StopSignals fresh;  // a new run starts with no stop pending
    EXPECT_EQ(fresh.pending(), 0);
  }
  sigaction(SIGINT, &saved_int, nullptr);
  sigaction(SIGTERM, &saved_term, nullptr);
}

}  // namespace
}  // namespace ddpm
