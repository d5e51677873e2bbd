// apps/ddpm_eval.cpp: ddpm-eval, evaluation of diffusion models. A thin shell: the
// subcommands and their flags are models/eval/eval_flags.h, the common flags
// apps/common/cli.h, the work models/eval/eval_run.h.
//
//   ddpm-eval train-classifier --data fashion-mnist --out classifier/
//   ddpm-eval fid --classifier classifier/ --samples samples.npz --data fashion-mnist --split test
//   ddpm-eval bpd --checkpoint RUN --data cifar10:DIR --split test --limit 100
//   ddpm-eval bpd --checkpoint RUN --data fashion-mnist --limit 64 --rate-distortion rd/ --rd-stride 10
//   ddpm-eval nll --checkpoint RUN --data cifar10:DIR --split test --limit 100 --ode-steps 32
//   ddpm-eval class-accuracy --classifier classifier/ --samples samples.npz
//   ddpm-eval video --samples clips/samples.npz --data moving-toy --frames 8 --json video.json
//   ddpm-eval train-video-classifier --data moving-fashion-mnist --out vclf/
//   ddpm-eval fvd --classifier vclf/ --samples clips/samples.npz
#include <iostream>

#include "apps/common/cli.h"
#include "models/eval/eval_flags.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app{"ddpm-eval: bits/dim (variational bound with DDPM's rate-distortion curve, or exact through the ODE), and FID / KID / "
               "precision-recall / class accuracy on the features of a classifier the engine trains itself (no "
               "Inception weights offline), and the temporal consistency and FVD of video samples",
               "ddpm-eval"};
  cli::CommonFlags common;
  cli::add_common_flags(app, common);
  eval::EvalCommand command;
  eval::add_eval_subcommands(app, command);
  return cli::run(app, argc, argv, [&] {
    const Device device = cli::resolve_device(common);
    eval::run_eval_command(command, device, common.seed, std::cout);
    return 0;
  });
}
