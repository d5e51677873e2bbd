// apps/ddpm_autoencoder.cpp: ddpm-autoencoder, the KL autoencoder of latent diffusion
// (Rombach et al. 2022). A thin shell: the subcommands, their flags and the work are
// models/run/autoencoder_run.h; the common flags apps/common/cli.h.
//
//   ddpm-autoencoder train --data fashion-mnist --pad-to-32 --steps 4000 --out ae/
//   ddpm-autoencoder eval --autoencoder ae/ --data fashion-mnist --split test --limit 1000
//   ddpm-autoencoder finetune-temporal --from ae/ --data moving-fashion-mnist --frames 8 --out ae_t/
//   ddpm-train --autoencoder ae/ --data fashion-mnist --pad-to-32 --out runs/latent
#include <iostream>

#include "apps/common/cli.h"
#include "models/run/autoencoder_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app{"ddpm-autoencoder: train and evaluate a KL-regularised autoencoder whose latent space ddpm-train "
               "--autoencoder diffuses in",
               "ddpm-autoencoder"};
  cli::CommonFlags common;
  cli::add_common_flags(app, common);
  run::AutoencoderCommand command;
  run::add_autoencoder_subcommands(app, command);
  return cli::run(app, argc, argv, [&] {
    const Device device = cli::resolve_device(common);
    run::run_autoencoder_command(command, device, common.seed, std::cout);
    return 0;
  });
}
