// apps/ddpm_export.cpp: ddpm-export, a run or checkpoint as a diffusers UNet2DModel folder.
// The folder (config.json, diffusion_pytorch_model.safetensors, scheduler_config.json)
// loads with diffusers' UNet2DModel.from_pretrained and back into ddpm-sample; see
// models/run/model_source.h export_diffusers.
//
//   ddpm-export --checkpoint runs/cifar --out exported/
#include <iostream>

#include "apps/common/cli.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app(
      "Export a trained UNet (EMA weights by default) as a diffusers UNet2DModel folder: config.json, "
      "diffusion_pytorch_model.safetensors and a DDPMScheduler scheduler_config.json.",
      "ddpm-export");
  cli::CommonFlags common;
  std::string checkpoint, out;
  std::string probe;
  bool use_ema = true, overwrite = false;
  app.add_option("--checkpoint", checkpoint,
                 "run folder (latest checkpoint), checkpoint folder, model .safetensors with config.json beside "
                 "it, or a diffusers folder")
      ->required();
  app.add_option("--out", out, "the folder to write")->required();
  app.add_flag_callback("--no-ema", [&use_ema] { use_ema = false; }, "export the raw weights instead of the EMA weights");
  app.add_flag("--overwrite", overwrite, "replace an existing non-empty --out folder");
  app.add_option("--probe", probe,
                 "also run the exported folder (re-loaded) on a fixed input seeded by --seed and save x, t, labels "
                 "and the output to this .safetensors file (for scripts/check_export.py)");
  cli::add_common_flags(app, common);
  return cli::run(app, argc, argv, [&] {
    (void)cli::resolve_device(common);  // validates --device; the export itself runs on the CPU
    // A latent run's UNet maps autoencoder latents; as a lone UNet2DModel it would pass for a
    // pixel model, and our autoencoder does not load into diffusers' AutoencoderKL exactly.
    run::refuse_latent_model(checkpoint, "ddpm-export (a diffusers UNet2DModel of pixels)");
    run::ModelSource model = run::open_model(checkpoint, Device::cpu(), use_ema);
    run::export_diffusers(model, out, overwrite);
    if (!probe.empty()) {
      const run::ModelSource exported = run::open_model(out, Device::cpu());  // the round trip itself
      run::write_probe(*exported.net, exported.diffusion.diffusion_steps, probe, common.seed);
      std::cout << "probe written to " << probe << "\n";
    }
    std::cout << "exported " << model.kind << " " << checkpoint << " (" << (model.ema ? "EMA" : "raw")
              << " weights, " << model.net->num_parameters() << " parameters) to " << out << "\n";
    return 0;
  });
}
