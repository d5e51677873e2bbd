// apps/ddpm_sample.cpp: ddpm-sample, drawing images from a trained model.
// A thin shell: the flags are models/run/sample_run.h add_sample_flags plus the common
// ones (apps/common/cli.h); the work is run_sample. Output folder layout: sample_run.h.
//
//   ddpm-sample --checkpoint runs/cifar --num-samples 64 --sampler ddim --sampling-steps 50 --out samples/
//   ddpm-sample --checkpoint runs/cifar --sampler heun --sampling-steps 18 --sigma-max 80 --out heun/
//   ddpm-sample --checkpoint runs/cifar --sampler heun --sampling-steps 40 --s-churn 80 --s-tmin 0.05
//               --s-tmax 50 --s-noise 1.003 --out churn/
//   ddpm-sample --checkpoint runs/latent --sampler ddim --sampling-steps 50 --out latent/   (decoded to pixels)
//   ddpm-sample --checkpoint runs/fm-edm --sampling-steps 18 --out edm/    (an --objective edm run: heun)
//   ddpm-sample --checkpoint runs/fm-edm --sampler euler --sampling-steps 36 --out edm-euler/
//   ddpm-sample --checkpoint runs/fm --classifier noisy-cls/ --classifier-scale 2 --class 3 --out guided/
//   ddpm-sample --checkpoint runs/fm-cond --class 3 --guidance-scale 3 --guidance-interval 0.3,5 --out banded/
//   ddpm-sample --checkpoint runs/fm --autoguide runs/fm/checkpoints/step_2000 --guidance-scale 2 --out autoguided/
//   ddpm-sample --checkpoint runs/sr --low-res-from runs/base --base-sampling-steps 50 --out cascade/  (base in cascade/base/)
#include <iostream>

#include "apps/common/cli.h"
#include "models/run/sample_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app(
      "Draw samples from a trained diffusion model (DDPM ancestral, DDIM, or Heun, Euler, DPM-Solver++(2M) or Euler ancestral on Karras noise levels, optional "
      "classifier-free guidance (limited to a noise interval with --guidance-interval) or autoguidance by a weaker model (--autoguide), classifier guidance with --classifier, RePaint inpainting with --inpaint/--mask). Writes OUT/grid.png, OUT/images/NNNNNN.png, OUT/samples.npz (arr_0 uint8 [N,H,W,C], arr_1 "
      "labels for class-conditional models), OUT/sample_info.json and, with --show-steps, OUT/steps.png. A video model writes "
      "OUT/grid.gif, OUT/filmstrip.png, OUT/videos/NNNNNN.gif and samples.npz [N,F,H,W,C] (--first-frame, --first-frame-from, --segments).",
      "ddpm-sample");
  cli::CommonFlags common;
  run::SampleOptions options;
  run::add_sample_flags(app, options);
  cli::add_common_flags(app, common);
  return cli::run(app, argc, argv, [&] {
    run::note_given_flags(app, options);  // the Heun-only flags given (CLI11 count()), even at defaults
    run::check_sample_options(options);
    options.device = cli::resolve_device(common);
    options.seed = common.seed;
    run::SampleResult result = run::run_sample(options, &std::cout);
    const bool video = result.shape.size() == 5;  // clips [N, F, H, W, C]
    std::cout << "samples: " << result.out_dir << (video ? "/grid.gif, " : "/grid.png, ") << result.out_dir
              << "/samples.npz\n";
    return 0;
  });
}
