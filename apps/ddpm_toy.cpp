// apps/ddpm_toy.cpp: ddpm-toy, diffusion on 2-D point clouds for learning how it works
// (docs/LEARN.md). A thin shell: the subcommands, their flags and the work are
// models/run/toy_run.h; the common flags apps/common/cli.h.
//
//   ddpm-toy forward --data moons --out fwd/
//   ddpm-toy train --data moons --out runs/moons          (about 20 s on one CPU core)
//   ddpm-toy sample --checkpoint runs/moons --sampler ddim --sampling-steps 50 --out moons-ddim/
//   ddpm-toy train --data moons --class-cond --out runs/moons-cond  (classifier-free guidance)
//   ddpm-toy guidance --checkpoint runs/moons-cond --class 0 --scales 0,1,2,4,8 --out moons-guide/
//   ddpm-toy classifier --checkpoint runs/moons --out runs/moons-cls (classifier guidance: sample and
//     guidance take --classifier runs/moons-cls)
//   ddpm-toy distill --teacher runs/moons-v --rounds 6 --out moons-distill  (progressive distillation:
//     65 -> 2 DDIM steps; a v-model from train --predict v distils best)
//   ddpm-toy train --data moons --steps 500 --out runs/moons-500   (a weaker guide for autoguidance:)
//   ddpm-toy sample --checkpoint runs/moons --autoguide runs/moons-500 --guidance-scale 2 --out moons-auto/
//   ddpm-toy guidance --checkpoint runs/moons-cond --class 0 --guidance-interval 0.3,5 --out moons-banded/
//   ddpm-toy train --data moons --posthoc-ema 0.05,0.10 --out runs/moons-ph   (post-hoc EMA, EDM2:)
//   ddpm-toy posthoc --checkpoint runs/moons-ph --sigma-rels 0.02,0.05,0.08,0.12,0.2 --out moons-ph/
#include <iostream>

#include "apps/common/cli.h"
#include "engine/error.h"
#include "models/run/toy_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app{"ddpm-toy: train a small diffusion model on 2-D points in seconds, sample it with any of the "
               "library's samplers, draw the forward and reverse processes, watch classifier-free guidance (also in a "
               "limited noise interval), autoguidance and classifier guidance at work, distil the model down to two "
               "steps, and choose its EMA length after training (post-hoc EMA)",
               "ddpm-toy"};
  cli::CommonFlags common;
  cli::add_common_flags(app, common);
  run::ToyCommand command;
  run::add_toy_subcommands(app, command);
  return cli::run(app, argc, argv, [&] {
    // Always the CPU: the MLP is too small to gain from a GPU. --device auto means the CPU here;
    // an explicit CUDA device is refused rather than silently ignored.
    if (common.device != "auto")
      DDPM_CHECK(cli::resolve_device(common).is_cpu(),
                 "ddpm-toy runs on the CPU only (its MLP is too small to gain from a GPU); drop --device "
                     << common.device);
    run::run_toy_command(command, common.seed, std::cout);
    return 0;
  });
}
