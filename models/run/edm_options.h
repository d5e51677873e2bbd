// models/run/edm_options.h: the training objective in ddpm-train and ddpm-sample (DDPM or
// EDM, models/diffusion/edm.h), kept beside train_run / sample_run rather than inside them.
//
// ddpm-train --objective ddpm|edm:
//   ddpm  the discrete process of --diffusion-steps, --noise-schedule, --predict, --loss,
//         --learn-sigma, --schedule-sampler (unchanged).
//   edm   the preconditioned denoiser with --sigma-data (0.5), --p-mean (-1.2), --p-std (1.2).
//         The six DDPM-only flags above, given explicitly (command line or --config; CLI11
//         count(), so even at their defaults), are a ValueError naming the flag (exit 2), as are
//         the three EDM flags with --objective ddpm. A preset never sets them. The sample grids
//         use Heun with --sample-steps levels over [0.002, 80] (no divisibility by T).
//   config.json "diffusion" records {"objective": "ddpm", <the DDPM keys>} or
//   {"objective": "edm", "sigma_data", "p_mean", "p_std", "learn_sigma": false}
//   (model_source.h reads both). A run written before "objective" existed reads as ddpm, also
//   when resuming it.
//   --objective ict (models/run/ict_options.h) shares --sigma-data, --p-mean and --p-std (at
//   iCT's defaults when not given) and the DDPM-only refusals above; validate_objective_options
//   and diffusion_section dispatch to it.
//
// ddpm-sample on an EDM run: --sampler heun (the default for such runs: the sampler is then
// chosen when the model is open) or euler (the first-order solver of the same loop, EDM
// algorithm 1 without the correction: N evaluations instead of 2N - 1) or dpm++2m
// (DPM-Solver++(2M), dpm_solver.h: second order at N evaluations) or euler-ancestral
// (karras.h: DDPM's posterior step on the levels) or unipc (unipc.h: UniPC, order 2 with the
// free corrector, N evaluations) or dpm++2m-sde (dpm_solver.h: the stochastic 2M); ddpm and ddim are a
// ValueError (exit 2). --sampling-steps sets the levels (default 18), --sigma-min /
// --sigma-max default to 0.002 / 80 and may be any positive values (sigma is continuous),
// --rho and the churn flags apply (each needs an explicit --sampler heun or euler, as for any
// model: they are checked before the model is open), --guidance-scale guides D (edm.h);
// classifier guidance is refused for heun and euler. On a DDPM model --sampler euler runs karras.h's Euler solver.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/sampler.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "models/run/train_run.h"

namespace ddpm::run {

// --- ddpm-train ------------------------------------------------------------------------------

bool is_edm(const TrainOptions& o);  // o.objective == "edm" (after validate_objective_options)
diffusion::EdmConfig edm_config(const TrainOptions& o);

// Records in o.objective_flags_given which objective-specific flags `app` saw. Call after the
// final parse (after apply_preset_under_flags).
void note_objective_flags(const CLI::App& app, TrainOptions& o);

// ValueError naming the flag: an unknown --objective, a DDPM-only flag given with edm (or an
// EDM flag with ddpm), --learn-sigma / --schedule-sampler other than uniform with edm, and
// EDM parameters out of range.
void validate_objective_options(const TrainOptions& o);

// EDM on autoencoder latents (--autoencoder): the latent scale factor makes them unit-
// variance, so sigma_data (EDM's 0.5 is the std of [-1, 1] images) becomes 1 unless
// --sigma-data was given (or a library caller set another value). True when it changed.
bool default_sigma_data_for_latents(TrainOptions& o);

// config.json's "diffusion" section for either objective (see above).
nlohmann::json diffusion_section(const TrainOptions& o);

// --- ddpm-sample -----------------------------------------------------------------------------

// heun, euler, dpm++2m, euler-ancestral, unipc, dpm++2m-sde (karras.h KarrasSolver)
bool is_karras_sampler(const std::string& sampler);

// The options with the sampler decided for this model: an EDM model gets heun when --sampler
// was not given (o.sampler_defaulted), and refuses ddpm / ddim (ValueError naming the flag); a
// consistency model (ddpm-distill --method consistency) gets consistency when --sampler was
// not given, and so does an ict run, which refuses every other sampler. Other models keep theirs. The result has sampler_defaulted cleared.
SampleOptions resolve_sampler_for_model(const SampleOptions& o, const ModelSource& model);

// One batch by any Karras-level solver (o.sampler) on this model: edm_sample for an EDM model,
// karras_sample on the VP adapter otherwise.
Tensor sample_karras(const ModelSource& model, const diffusion::DiffusionSchedule& base,
                     const diffusion::DenoiseFn& net, const Shape& shape, const std::vector<std::int64_t>& labels,
                     const diffusion::SamplerConfig& sc, const std::string& sampler, Generator& gen, Device device,
                     const diffusion::StepCallback& callback);

// sample_info.json's "heun" record: the levels used, where they came from, rho, the
// training sigma range (null for EDM: continuous), the solver and its network evaluations,
// and the churn settings with the number of churned levels.
nlohmann::json karras_sample_info(const SampleOptions& o, const ModelSource& model,
                                  const diffusion::DiffusionSchedule& base, const diffusion::SamplerConfig& sc);

}  // namespace ddpm::run
