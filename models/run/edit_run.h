// models/run/edit_run.h: the library behind ddpm-edit, image editing with a trained model.
// The math is in models/diffusion/ (ddim_inversion.h, sdedit.h, interpolation.h for DDPM
// runs; sigma_edit.h for EDM runs), chosen per model by edit_process.h; this file owns the
// options, their validation, the autoencoder of a latent run, and the output folder
// (published atomically, engine/io/atomic_file.h publish_directory). Inputs (--images):
// edit_inputs.h.
//
// The commands below are described for a pixel-space DDPM run. The other kinds:
//   EDM run      the same commands in sigma (sigma_edit.h): invert = the probability-flow ODE
//                up N Karras levels by Heun (--sampling-steps N, 0 = 18), latents.npz holds
//                x(sigma_max) and "sigmas" f64 [N + 1] instead of "timesteps"; img2img runs
//                the last ceil(s N) levels from guide + sigma z with --sampler heun | euler;
//                interpolate slerps x(sigma_max) (seeds: sigma_max z).
//   latent run   (latent_run.h) the images are encoded to s * the posterior MEAN (a
//                deterministic edit; LatentCodec::encode_mean), the commands run on the
//                latents [N, H/f, W/f, z] unclipped, and every written image is decoded to
//                pixels; latents.npz holds the diffusion latents (shape "latent_shape"), the
//                invert error is in pixels with "latent_reconstruction" (latent space) and
//                "autoencoder_reconstruction" (D(E(x)) alone) beside it; edit_info.json
//                names the "autoencoder".
//
// Subcommands and what they write into --out:
//   invert       DDIM inversion (DDIM sec. 4.3 / 5.4) of every image with --sampling-steps K
//                (respacing "ddimK": K must divide T; 0 or T = all steps), then DDIM decoding
//                back down with the same K (eta 0, unclipped):
//                  latents.npz      "latents" float32 [N, H, W, C] (x at t_{K-1} = T - 1) and
//                                   "timesteps" int64 [K] (the kept original timesteps)
//                  grid.png, images/, samples.npz   the reconstructions (edit_inputs.h)
//                  comparison.png   inputs (top row) over reconstructions (bottom), first 8
//                The reconstruction error (MSE on the [-1, 1] scale, PSNR = 10 log10(4 / MSE)
//                dB) is printed and recorded.
//   img2img      SDEdit (sdedit.h) with --strength s in (0, 1] and --sampler ddpm | ddim (auto: ddim) on
//                K respaced steps ("K" for ddpm, "ddimK" for ddim): --num-samples M results
//                per image, each with its own noise; grid.png (one row per image: its M
//                results), images/, samples.npz (image-major: image i's results at rows
//                i M .. i M + M - 1), comparison.png (each of the first 8 guides followed by
//                its results). --guidance-scale (classifier-free) for class-conditional and
//                text-conditioned models.
//   interpolate  DDIM latent interpolation (DDIM sec. 5.3): the end latents are the DDIM
//                inversions of two images (--images A.png,B.png) or two seeds' noise
//                (--seeds S1,S2: x_T ~ N(0, I) from the Philox generator seeded with S), then
//                F = --frames slerps (interpolation.h), each decoded with DDIM (eta 0):
//                strip.png (the F frames in one row), images/, samples.npz.
//   prompt2prompt  Prompt-to-Prompt (Hertz et al. 2022) for text-conditioned DDPM runs:
//                source and edited prompt sampled together from one x_T, the edit borrowing the
//                source's attention maps (prompt_to_prompt_run.h: flags, outputs, refusals).
// Each also writes edit_info.json: command, checkpoint, EMA, sampler, steps, kept timesteps,
// class, prompts, seed and the command's own numbers (errors, strength and its start step, fractions).
//
// Labels: a class-conditional model needs --class C (the class of the edited images: editing
// has no balanced default, the label describes the input); every image then uses C.
// Prompts: a text-conditioned model (ddpm-train --text-cond; text_conditioned.h) needs
// --prompt TEXT and is run through ModelSource::text's denoiser as ddpm-sample runs it (label
// k = prompt k, label P = --negative-prompt, "" = the empty caption of classifier-free
// guidance). invert and interpolate take exactly one prompt, the caption of the images, used
// on the way up and down (DDIM inversion is only a round trip under one condition). img2img
// (text-guided SDEdit) takes one or more: result j of every image gets prompt j mod P, so
// --num-samples must be at least P; --negative-prompt needs --guidance-scale != 1.
// edit_info.json records "prompts" and "negative_prompt" (null for other models), and
// img2img's samples.npz labels are the prompt indices.
// Random numbers: img2img's Philox generator (--seed) runs through the batches in order;
// invert and interpolate from images are deterministic.
//
// Refusals (ValueError, i.e. exit 2 in the app): a sampler of the other kind of run (ddpm,
// ddim for EDM runs; heun, euler for DDPM runs); a super-resolution run; a
// strength outside (0, 1] or below the first kept step (sdedit.h); fewer than 2 frames;
// --images and --seeds together or neither; images of another size or channel count than
// the model's (naming both); a class-conditional model without --class, --class or
// --guidance-scale on an unconditional one; --prompt or --negative-prompt on a model without
// text, a text model without --prompt or with --class, several prompts to invert or
// interpolate, more prompts than --num-samples; an existing non-empty --out without --overwrite.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "models/run/model_source.h"

namespace ddpm::run {

struct EditOptions {
  std::string command;           // "invert" | "img2img" | "interpolate" | "prompt2prompt"
  std::string checkpoint;        // what ddpm-sample accepts (model_source.h)
  bool use_ema = true;
  std::string images;            // invert, img2img: a PNG, a folder or an npz; interpolate: "A.png,B.png"
  std::string seeds;             // interpolate: "S1,S2"
  int sampling_steps = 50;       // K; 0 = all T
  int batch_size = 16;           // images per network batch
  double strength = 0.5;         // img2img: t0 = s T
  std::string sampler = "auto";  // img2img: auto | ddpm | ddim (DDPM runs) | heun | euler (EDM runs)
  int num_samples = 1;           // img2img: results per image
  double guidance_scale = 1.0;   // img2img: classifier-free guidance s
  int class_label = -1;          // required for class-conditional models
  std::vector<std::string> prompts;  // required for text-conditioned models (header comment)
  std::string negative_prompt;       // img2img with guidance: label P's text ("" = empty caption)
  int frames = 8;                // interpolate
  // prompt2prompt (prompt_to_prompt_run.h); defaults: google/prompt-to-prompt's word-swap example.
  std::string edit_prompt;
  double cross_replace = 0.8;    // c: fraction of the steps with the source's cross-attention maps
  double self_replace = 0.4;     // s: fraction of the steps with the source's self-attention maps
  std::int64_t self_replace_max_tokens = 64;  // self maps injected only where Sq <= this (0 = all)
  std::string reweight;          // "WORD=SCALE" or "" (none)
  std::string out;
  bool overwrite = false;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};

// Checks what can be checked without the model (ValueError naming the flag).
void check_edit_options(const EditOptions& o);
// The prompts against the model: required by a text model, refused by any other (ValueError
// naming the checkpoint).
void check_edit_prompts(const EditOptions& o, const ModelSource& model);

struct EditResult {
  std::string out_dir;
  std::vector<std::string> files;  // every file written, relative to out_dir
  nlohmann::json info;             // what edit_info.json holds
};

// The whole program: check options and --out, open the model, edit, publish OUT.
EditResult run_edit(const EditOptions& o, std::ostream* log = nullptr);
// Same with an already opened model (o.checkpoint is only recorded and checked for a latent run).
EditResult run_edit(const EditOptions& o, const ModelSource& model, std::ostream* log = nullptr);

// The four subcommands and their flags, bound to `o` (o.command is set from the parsed
// subcommand by edit_command_parsed).
struct EditCommand {
  EditOptions options;
  std::vector<CLI::App*> subcommands;
};
void add_edit_subcommands(CLI::App& app, EditCommand& c);
// Sets c.options.command to the subcommand `app` parsed.
void edit_command_parsed(EditCommand& c);

}  // namespace ddpm::run
