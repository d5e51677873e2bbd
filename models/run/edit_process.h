// models/run/edit_process.h: the diffusion process ddpm-edit's three commands run on, one
// interface over the two kinds of trained model (edit_run.h owns the inputs and outputs):
//
//   DDPM run (discrete process)   invert / decode: DDIM inversion and decoding on the "ddimK"
//                                 respacing (ddim_inversion.h); img2img: SDEdit with the ddpm or
//                                 ddim sampler (sdedit.h); the seed prior x_T ~ N(0, I).
//   EDM run (continuous sigma)    invert / decode: the probability-flow ODE up and down N
//                                 Karras levels on [sigma_min, sigma_max] = [0.002, 80] by
//                                 Heun (sigma_edit.h); img2img: SDEdit in sigma with heun or
//                                 euler; the seed prior x(sigma_max) = sigma_max z.
//
// Either works on the network's own tensors [n, h, w, c] (image_size, in_channels): pixels for
// a pixel-space run, scaled autoencoder latents for a latent run (edit_run.h encodes and
// decodes around it; `latent` only turns off the x_0 clip as ddpm-sample does, latents not
// being confined to [-1, 1]). --sampler auto is ddim for a DDPM run and heun for an EDM run;
// a sampler of the other kind is a ValueError naming the run. --sampling-steps is K (DDPM: 0
// = all T) or N levels (EDM: 0 = ddpm-sample's default, 18).
//
// Labels: invert, decode and the EDM denoisers give every image --class (class-conditional
// model) or prompt 0 (text-conditioned model: ModelSource::text's denoiser over --prompt, its
// label P the negative prompt); img2img takes each result's label from the caller.
// prompt2prompt (DDPM runs only) uses --sampler like img2img and the denoiser over the two
// prompts {--prompt, --edit-prompt}.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/io/npz.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/sampler.h"
#include "models/diffusion/schedule.h"
#include "models/run/edit_run.h"
#include "models/run/model_source.h"

namespace ddpm::run {

class EditProcess {
 public:
  // Checks the sampler and steps against the model (ValueError). `o` and `model` must outlive this.
  EditProcess(const EditOptions& o, const ModelSource& model, bool latent);

  bool sigma_space() const { return model_.diffusion.edm.has_value(); }
  std::int64_t steps() const;           // K kept timesteps or N levels
  const std::string& sampler() const { return sampler_; }  // the resolved --sampler
  Shape shape(std::int64_t n) const;    // [n, h, w, c] of the network's tensors

  // The pieces prompt2prompt samples with (prompt_to_prompt_run.h): the DDPM run's training
  // schedule, the sampler config, and the network (for prompt2prompt the text denoiser over
  // {--prompt, --edit-prompt}: label 0 the source, 1 the edit, 2 the negative prompt).
  const diffusion::DiffusionSchedule& schedule() const { return *base_; }
  const diffusion::SamplerConfig& config() const { return sc_; }
  const diffusion::DenoiseFn& network() const { return net_fn_; }

  // x [n, h, w, c] in the network's space -> the latent at the top of the process, and back.
  Tensor invert(const Tensor& x) const;
  Tensor decode(const Tensor& x_top) const;
  // SDEdit of guides [n, h, w, c] with --strength and --sampler (one draw z, then the steps'),
  // result i conditioned on labels[i] (empty for an unconditional model).
  Tensor img2img(const Tensor& guide, const std::vector<std::int64_t>& labels, Generator& gen) const;
  // The top latent of a seed: x_T ~ N(0, I) (DDPM) or sigma_max z (EDM), shape [1, h, w, c].
  Tensor prior(Generator& gen) const;

  // edit_info.json's fields about the process (sampler, steps, timesteps or sigmas), img2img's
  // (start step, network calls, clipping, variance), and a log line for img2img's start.
  nlohmann::json info() const;
  nlohmann::json img2img_info() const;
  std::string img2img_start() const;
  std::int64_t invert_calls() const;  // network calls of one inversion (decoding costs the same)
  // latents.npz's second array: "timesteps" int64 [K] (DDPM) or "sigmas" f64 [N + 1] (EDM).
  NpyView schedule_array() const;

 private:
  std::vector<std::int64_t> labels(std::int64_t n) const;
  diffusion::SigmaDenoiser edm_denoiser(const std::vector<std::int64_t>& labels,
                                        const diffusion::SamplerConfig& config) const;
  diffusion::SamplerConfig ode_config() const;

  const EditOptions& o_;
  const ModelSource& model_;
  std::string sampler_;
  diffusion::SamplerConfig sc_;
  diffusion::DenoiseFn net_fn_;                       // the network, or the text model's denoiser
  std::optional<diffusion::DiffusionSchedule> base_;  // DDPM: the training schedule
  std::vector<std::int64_t> kept_;                    // DDPM: the kept original timesteps
  std::vector<double> levels_;                        // EDM: N + 1 Karras levels ending in 0
};

}  // namespace ddpm::run
