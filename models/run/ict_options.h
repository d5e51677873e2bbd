// models/run/ict_options.h: the ict objective of ddpm-train and the sampling of such a run in
// ddpm-sample (improved consistency training, Song & Dhariwal 2023; models/diffusion/
// consistency_training.h), kept beside edm_options rather than inside train_run / sample_run.
//
// ddpm-train --objective ict:
//   --sigma-data        the data's std in f's coefficients (0.5; 1 with --autoencoder unless given)
//   --p-mean, --p-std   the log-normal of the level distribution: iCT's -1.1 and 2.0 when not
//                       given (EDM's defaults -1.2 / 1.2 do NOT apply to ict)
//   --ict-discretization S0,S1
//                       the curriculum's initial and final number of discretisation steps
//                       (iCT: 10,1280); N(k) = min(S0 2^floor(k/K'), S1) + 1 over K = --steps
//   --consistency-loss pseudo-huber|l2
//                       the distance d (ddpm-distill's flag of the same name and meaning)
//   sigma_min = 0.002, sigma_max = 80 and rho = 7 are fixed (CM / iCT). The DDPM-only flags
//   (--diffusion-steps, --noise-schedule, --predict, --loss, --learn-sigma, --schedule-sampler)
//   are refused when given, as for edm, and so are the training recipes, --zero-terminal-snr,
//   super-resolution, video data, joint images, text conditioning, --init-from and LoRA.
//   The sample grids use CM's multistep sampler with --sample-steps levels (default levels of
//   consistency_training.h). config.json "diffusion" records {"objective": "ict", sigma_min,
//   sigma_max, rho, sigma_data, p_mean, p_std, s0, s1, "consistency_loss", "learn_sigma": false}.
//
// ddpm-sample on an ict run: --sampler consistency (the default for it; every other sampler
// is a ValueError), --sampling-steps K (0 or 1: one step) or --consistency-sigmas S1,S2,...
// (strictly descending levels in (0.002, 80]); --guidance-scale other than 1 is refused (no
// guided consistency function is trained). sample_info.json adds "consistency": {"sigmas",
// "sigmas_from", "network_calls"}.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "models/diffusion/consistency_training.h"
#include "models/run/train_run.h"

namespace ddpm::run {

struct SampleOptions;

// --- ddpm-train ------------------------------------------------------------------------------

// The ict-only flags (--ict-discretization, --consistency-loss), for note_objective_flags.
const std::vector<const char*>& ict_flag_names();
void add_ict_flags(CLI::App& app, TrainOptions& o, const char* group);

bool is_ict(const TrainOptions& o);  // o.objective == "ict"
// The run's IctConfig: --p-mean / --p-std at iCT's defaults unless given (or set by a library
// caller), --ict-discretization parsed, --consistency-loss parsed.
diffusion::IctConfig ict_config(const TrainOptions& o);
// ValueError naming the flag (see above); for another objective, the ict flags are refused.
void validate_ict_options(const TrainOptions& o);
nlohmann::json ict_diffusion_section(const TrainOptions& o);

// --- reading a run back (model_source.h) -----------------------------------------------------

nlohmann::json ict_section_json(const diffusion::IctConfig& c);
// The IctConfig of a "diffusion" section with "objective": "ict" (ValueError naming the key).
diffusion::IctConfig ict_config_from_json(const nlohmann::json& diffusion);

// --- ddpm-sample -----------------------------------------------------------------------------

// The levels of CM's multistep sampler: --consistency-sigmas when given, else the default K =
// max(1, --sampling-steps) levels (consistency_training.h). ValueError naming the flag.
std::vector<double> ict_sample_sigmas(const SampleOptions& o, const diffusion::IctConfig& c);

}  // namespace ddpm::run
