// apps/ddpm_classifier.cpp: ddpm-classifier, the noisy classifier of classifier guidance
// (Dhariwal & Nichol 2021). A thin shell: the subcommands, their flags and the work are
// models/run/classifier_run.h; the common flags apps/common/cli.h.
//
//   ddpm-classifier train --data fashion-mnist --pad-to-32 --diffusion-steps 1000 --out cls/
//   ddpm-classifier eval --classifier cls/ --data fashion-mnist --split test
//   ddpm-sample --checkpoint runs/fmnist --classifier cls/ --classifier-scale 2 --class 3 --out guided/
#include <iostream>

#include "apps/common/cli.h"
#include "models/run/classifier_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app{"ddpm-classifier: train and evaluate a noisy, timestep-conditioned classifier p(y | x_t, t) for "
               "classifier guidance (ddpm-sample --classifier)",
               "ddpm-classifier"};
  cli::CommonFlags common;
  cli::add_common_flags(app, common);
  run::ClassifierCommand command;
  run::add_classifier_subcommands(app, command);
  return cli::run(app, argc, argv, [&] {
    const Device device = cli::resolve_device(common);
    run::run_classifier_command(command, device, common.seed, std::cout);
    return 0;
  });
}
