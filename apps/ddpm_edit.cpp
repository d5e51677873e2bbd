// apps/ddpm_edit.cpp: ddpm-edit, image editing with a trained model: DDIM inversion, SDEdit
// (img2img), DDIM latent interpolation and Prompt-to-Prompt (prompt2prompt). A thin shell: the
// subcommands, their flags and the work are models/run/edit_run.h; the common flags
// apps/common/cli.h.
//
//   ddpm-edit invert --checkpoint runs/cifar --images photos/ --sampling-steps 100 --out inv/
//   ddpm-edit img2img --checkpoint runs/cifar --images sketch.png --strength 0.5 --sampler ddim
//             --sampling-steps 50 --num-samples 4 --out edits/
//   ddpm-edit interpolate --checkpoint runs/cifar --seeds 1,2 --frames 8 --sampling-steps 50 --out lerp/
//   ddpm-edit img2img --checkpoint runs/fm-text --images shoe.png --prompt "a dark sneaker" --guidance-scale 3
//             --out text_edit/          (a text-conditioned run: --prompt is required)
//   ddpm-edit prompt2prompt --checkpoint runs/fm-text --prompt "a dark sneaker" --edit-prompt "a dark sandal"
//             --num-samples 4 --sampling-steps 50 --out p2p/   (Prompt-to-Prompt: prompt_to_prompt_run.h)
#include <iostream>

#include "apps/common/cli.h"
#include "models/run/edit_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app{"ddpm-edit: edit images with a trained diffusion model (invert: DDIM inversion and reconstruction; "
               "img2img: SDEdit; interpolate: slerp between DDIM latents; prompt2prompt: Prompt-to-Prompt for text runs)",
               "ddpm-edit"};
  cli::CommonFlags common;
  cli::add_common_flags(app, common);
  run::EditCommand command;
  run::add_edit_subcommands(app, command);
  return cli::run(app, argc, argv, [&] {
    run::edit_command_parsed(command);
    run::EditOptions& o = command.options;
    o.seed = common.seed;
    run::check_edit_options(o);
    o.device = cli::resolve_device(common);
    const run::EditResult r = run::run_edit(o, &std::cout);
    std::cout << o.command << ": " << r.out_dir << "/edit_info.json\n";
    return 0;
  });
}
