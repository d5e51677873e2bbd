// apps/ddpm_control.cpp: ddpm-control, ControlNet training on a frozen ddpm-train run (Zhang,
// Rao, Agrawala 2023) and its evaluation. A thin shell: the subcommands, their flags and the
// work are models/run/control_run.h and control_eval.h; the common flags apps/common/cli.h. Sampling is ddpm-sample's
// (--control), since a ControlNet only changes the denoiser every sampler calls.
//
//   ddpm-train --data fashion-mnist --pad-to-32 --out runs/fmnist
//   ddpm-control train --base runs/fmnist --hint edges --data fashion-mnist --pad-to-32 --out ctrl/
//   ddpm-sample --checkpoint runs/fmnist --control ctrl/ --control-image edges_of_this.png --out s/
//   ddpm-control eval --control ctrl/ --split test --limit 64 --out eval/
//   ddpm-control train ... --posthoc-ema 0.05,0.10 --out ctrl/ && ddpm-export --checkpoint ctrl/ --posthoc-ema 0.08 --out ctrl08/
// Ctrl-C or SIGTERM stops training after a checkpoint; the exit status is then 128 + the signal.
#include <iostream>

#include "apps/common/cli.h"
#include "models/run/control_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app{"ddpm-control: train a ControlNet (a trainable copy of a frozen UNet's encoder joined by zero "
               "convolutions) that steers a ddpm-train run with a spatial hint, and measure how well samples follow it; "
               "sample with ddpm-sample --control",
               "ddpm-control"};
  cli::CommonFlags common;
  cli::add_common_flags(app, common);
  run::ControlCommand command;
  run::add_control_subcommands(app, command);
  return cli::run(app, argc, argv, [&] {
    const Device device = cli::resolve_device(common);
    // Training stopped by Ctrl-C or SIGTERM after a checkpoint: the shell's status for that signal.
    return run::run_control_command(command, device, common.seed, std::cout);
  });
}
