// apps/ddpm_train.cpp: ddpm-train, training a diffusion model into a run folder.
//
//   ddpm-train --data fashion-mnist --preset auto --out runs/fm
//   ddpm-train --out runs/fm --resume latest --steps 4000
//
// A thin shell: flags (models/run/train_flags.h), presets (models/run/presets.h) and the run
// itself (models/run/train_run.h) live in the library.
#include <cstdio>

#include "apps/common/cli.h"
#include "models/run/train_flags.h"
#include "models/run/train_run.h"

int main(int argc, char** argv) {
  CLI::App app{"Train a DDPM on an image dataset; writes a run folder with checkpoints, samples and metrics.",
               "ddpm-train"};
  ddpm::cli::CommonFlags common;
  common.conv_algo = "heuristic";  // the same cuDNN algorithms in every process: resume stays bit-identical
  ddpm::cli::add_common_flags(app, common);
  ddpm::run::TrainOptions options;
  ddpm::run::add_train_flags(app, options);
  return ddpm::cli::run(app, argc, argv, [&]() {
    options.device = ddpm::cli::resolve_device(common);
    options.seed = common.seed;
    ddpm::run::apply_preset_under_flags(app, argc, argv, options, options.device);
    options.device = ddpm::cli::resolve_device(common);
    options.seed = common.seed;
    const ddpm::run::TrainResult r = ddpm::run::train_run(options);
    std::printf("run folder: %s\nlast checkpoint: %s\nsamples: %s/samples\nmetrics: %s/metrics.csv, loss curve %s/loss.png\n",
                r.run_dir.c_str(), r.last_checkpoint.c_str(), r.run_dir.c_str(), r.run_dir.c_str(), r.run_dir.c_str());
    return 0;
  });
}
