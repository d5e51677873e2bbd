// apps/ddpm_export.cpp: ddpm-export, a run or checkpoint as a diffusers UNet2DModel folder.
// The folder (config.json, diffusion_pytorch_model.safetensors, scheduler_config.json)
// loads with diffusers' UNet2DModel.from_pretrained and back into ddpm-sample; see
// models/run/model_source.h export_diffusers.
//
//   ddpm-export --checkpoint runs/cifar --out exported/
//
// A text-conditioned run (ddpm-train --text-cond) becomes a pipeline-shaped folder instead:
// unet/ (UNet2DConditionModel), scheduler/, text_encoder/ (our own encoder, not CLIP's) and
// tokenizer/; ddpm-sample --checkpoint exported/ --prompt TEXT opens it. Its --probe also
// holds the encoder_hidden_states the UNet was fed (scripts/check_export.py passes them on).
//
// With --posthoc-ema SIGMA_REL it instead reconstructs the EMA of that relative width from
// the run's post-hoc EMA snapshots (ddpm-train --posthoc-ema; models/run/posthoc_export.h) and
// writes a checkpoint-shaped folder (config.json + ema.safetensors) that ddpm-sample and
// ddpm-eval open like a checkpoint:
//   ddpm-export --checkpoint runs/cifar --posthoc-ema 0.08 [--posthoc-step N] --out ema_0.08/
// A ddpm-control run trained with --posthoc-ema exports the same way: the folder holds the
// control run's config.json and the ControlNet's reconstructed weights, and opens wherever
// the control run does (ddpm-sample --control, ddpm-control eval --control; control_run.h).
#include <cstdio>
#include <iostream>

#include "apps/common/cli.h"
#include "engine/error.h"
#include "models/run/control_run.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/run/posthoc_export.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  CLI::App app(
      "Export a trained UNet (EMA weights by default) as a diffusers UNet2DModel folder: config.json, "
      "diffusion_pytorch_model.safetensors and a DDPMScheduler scheduler_config.json. A text-conditioned model "
      "becomes a pipeline folder: unet/ (UNet2DConditionModel), scheduler/, text_encoder/ and tokenizer/.",
      "ddpm-export");
  cli::CommonFlags common;
  std::string checkpoint, out;
  std::string probe;
  bool use_ema = true, overwrite = false;
  double posthoc_sigma_rel = 0.0;
  std::int64_t posthoc_step = 0;
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
  CLI::Option* posthoc_opt =
      app.add_option("--posthoc-ema", posthoc_sigma_rel,
                     "reconstruct the EMA of this relative width (e.g. 0.08) from the run's post-hoc EMA snapshots "
                     "and write config.json + ema.safetensors (a checkpoint folder) instead of a diffusers folder");
  CLI::Option* posthoc_step_opt =
      app.add_option("--posthoc-step", posthoc_step, "with --posthoc-ema: the training step (default: the last snapshot)");
  cli::add_common_flags(app, common);
  return cli::run(app, argc, argv, [&] {
    (void)cli::resolve_device(common);  // validates --device; the export itself runs on the CPU
    DDPM_CHECK(posthoc_step_opt->count() == 0 || posthoc_opt->count() > 0, "--posthoc-step needs --posthoc-ema");
    if (posthoc_opt->count() > 0) {
      DDPM_CHECK(use_ema, "--no-ema does not apply with --posthoc-ema (the reconstruction is an EMA)");
      DDPM_CHECK(posthoc_step_opt->count() == 0 || posthoc_step >= 1,
                 "--posthoc-step must be a training step >= 1, got " << posthoc_step);
      // A control run's snapshots hold the ControlNet alone; its export is a ControlNet folder.
      const bool control = run::is_control_run_folder(run::posthoc_run_folder(checkpoint));
      DDPM_CHECK(!control || probe.empty(),
                 "--probe does not apply to the ddpm-control run " << checkpoint
                                                                   << ": a ControlNet is no model that runs alone");
      const run::PosthocResult r = run::reconstruct_posthoc_ema(checkpoint, posthoc_sigma_rel, posthoc_step);
      run::write_posthoc_model(r, out, overwrite);
      std::int64_t parameters = 0;
      if (control) {
        parameters = run::open_control_run(out, Device::cpu()).net->num_parameters();  // the round trip itself
      } else {
        const run::ModelSource model = run::open_model(out, Device::cpu());  // the round trip itself
        parameters = model.net->num_parameters();
        if (!probe.empty()) {
          run::write_probe(model, probe, common.seed);
          std::cout << "probe written to " << probe << "\n";
        }
      }
      std::printf("post-hoc EMA sigma_rel %.6g (gamma %.6g) at step %lld from %zu snapshots: %zu coefficients (%d "
                  "kept), relative residual %.3g\n",
                  r.sigma_rel, r.gamma, static_cast<long long>(r.step), r.snapshot_steps.size(),
                  r.solution.coefficients.size(), r.solution.rank, r.solution.relative_residual);
      const std::string gap = run::posthoc_gap_note(r);
      if (!gap.empty())  // the export stands; the user learns which step would be exact
        std::cout << "warning: " << gap << "\n";
      else if (r.solution.relative_residual > 0.05)
        std::printf("warning: the snapshots fit this EMA profile poorly (residual above 5%%); snapshot more often "
                    "(--posthoc-snapshot-every)\n");
      std::cout << "exported " << parameters << (control ? " ControlNet" : "") << " parameters to " << out << std::endl;
      return 0;
    }
    // A latent run's UNet maps autoencoder latents; as a lone UNet2DModel it would pass for a
    // pixel model, and our autoencoder does not load into diffusers' AutoencoderKL exactly.
    run::refuse_latent_model(checkpoint, "ddpm-export (a diffusers UNet2DModel of pixels)");
    run::ModelSource model = run::open_model(checkpoint, Device::cpu(), use_ema);
    run::export_diffusers(model, out, overwrite);
    if (!probe.empty()) {
      const run::ModelSource exported = run::open_model(out, Device::cpu());  // the round trip itself
      run::write_probe(exported, probe, common.seed);  // with the text encoder's context for a text model
      std::cout << "probe written to " << probe << "\n";
    }
    if (model.text)
      std::cout << "exported " << model.kind << " " << checkpoint << " (" << (model.ema ? "EMA" : "raw")
                << " weights, " << model.net->num_parameters() << " UNet and " << model.text_encoder->num_parameters()
                << " text encoder parameters) as a pipeline folder to " << out << "\n";
    else
      std::cout << "exported " << model.kind << " " << checkpoint << " (" << (model.ema ? "EMA" : "raw")
                << " weights, " << model.net->num_parameters() << " parameters) to " << out << "\n";
    return 0;
  });
}
