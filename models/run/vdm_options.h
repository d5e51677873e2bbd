// models/run/vdm_options.h: the vdm objective of ddpm-train (Kingma et al. 2021, models/
// diffusion/vdm.h), kept beside edm_options rather than inside train_run.
//
// ddpm-train --objective vdm:
//   --vdm-schedule fixed|learned  gamma(t) = -log SNR(t): linear, or the monotone network with
//                                 the same fixed endpoints (its weights train with the UNet
//                                 on the variance-minimising gradient; they live in the slab,
//                                 so checkpoints and --resume carry them, under "vdm_gamma.")
//   --gamma-min, --gamma-max      gamma(0) and gamma(1) (-13.3 and 5, the authors' defaults)
//   --vdm-steps T                 0: the continuous-time loss L_inf; T > 0: the discrete L_T
//   --vdm-learn-endpoints         with --vdm-schedule learned: gamma_0 and gamma_1 become two
//                                 parameters ("vdm_gamma.gamma_0", "vdm_gamma.gamma_1"),
//                                 initialised at --gamma-min / --gamma-max and trained on the
//                                 plain bound (vdm.h); --gamma-min / --gamma-max stay the
//                                 network's fixed time normalisation (refused with
//                                 --weight-decay, which would pull them towards 0)
//   --vdm-fourier-features N_MIN,N_MAX
//                                 the UNet appends sin and cos of 2 pi 2^n z_t, n = N_MIN..N_MAX,
//                                 to its input (the authors' code: 6,7; models/unet/
//                                 fourier_features.h; config.json "model" "fourier_features").
//                                 VDM only: the apps that rebuild or copy a UNet's input layer
//                                 themselves (ControlNet, fine-tuning, distillation, export)
//                                 refuse vdm runs, so no other run may carry the features.
//   The loss is the VLB in bits/dim (prior + diffusion + reconstruction), so the training
//   metrics read as bits/dim. The DDPM-only flags (--diffusion-steps, --noise-schedule,
//   --predict, --loss, --learn-sigma, --schedule-sampler) and the EDM flags are refused with
//   --objective vdm when given explicitly, as are the VDM flags with another objective, the
//   DDPM training recipes, --zero-terminal-snr, --autoencoder and --super-res (the decoder
//   term is the likelihood of 8-bit pixels of the image itself). The sample grids use the
//   ancestral sampler on --sample-steps grid points (vdm.h's grid bridge).
//   config.json "diffusion" records {"objective": "vdm", "vdm_schedule", "gamma_min",
//   "gamma_max", "vdm_steps", "vdm_features", "predict": "eps", "learn_sigma": false}, plus
//   "vdm_learn_endpoints": true when set (a config without it has fixed endpoints).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "models/diffusion/vdm.h"
#include "models/nn/module.h"
#include "models/run/train_run.h"

namespace ddpm::run {

// The VDM flags, for note_objective_flags (edm_options.h).
const std::vector<const char*>& vdm_flag_names();
void add_vdm_flags(CLI::App& app, TrainOptions& o);

bool is_vdm(const TrainOptions& o);  // o.objective == "vdm"
diffusion::VdmConfig vdm_config(const TrainOptions& o);
// --vdm-fourier-features as {n_min, n_max}, empty when not given (ValueError naming the flag
// for a malformed or out-of-range value).
std::vector<int> vdm_fourier_range(const TrainOptions& o);

// ValueError naming the flag (see above). Call after validate_objective_options.
void validate_vdm_options(const TrainOptions& o);

// config.json's "diffusion" section of a vdm run, and the VdmConfig read back from one
// (nullopt for another objective; ValueError naming the key when it is inconsistent).
nlohmann::json vdm_diffusion_section(const TrainOptions& o);
nlohmann::json vdm_section_json(const diffusion::VdmConfig& c);
// The VdmConfig of a "diffusion" section with "objective": "vdm" (ValueError naming the key
// when it is missing or inconsistent).
diffusion::VdmConfig vdm_config_from_json(const nlohmann::json& diffusion);

// --- opening a vdm run (model_source.h) ------------------------------------------------------

// The sampling grid N of a continuous-time VDM model (the authors' code samples such a model
// with T = 1000 steps); --sampling-steps respaces it.
inline constexpr std::int64_t kVdmSamplingGrid = 1000;
// Removes the learned schedule's "vdm_gamma." tensors from a weights file's list (they are
// not the UNet's).
void drop_vdm_schedule_tensors(std::vector<std::pair<std::string, Tensor>>& tensors);
// The schedule of a VDM model: linear for a fixed one; a learned one from the "vdm_gamma."
// tensors of the weights file, its endpoints too when learned (IoError naming the file and
// the missing tensor).
std::shared_ptr<const diffusion::GammaCurve> read_vdm_curve(const diffusion::VdmConfig& c,
                                                            const std::string& weights_path);

// The network and its schedule side by side: the network's parameters keep their names, the
// schedule's get "vdm_gamma." (none for the fixed schedule), so a fixed-schedule checkpoint
// is a plain UNet checkpoint.
class VdmModel : public nn::Module {
 public:
  VdmModel(nn::Module& net, diffusion::VdmSchedule& schedule) {
    register_module("", &net);
    register_module("vdm_gamma", &schedule);
  }
};

}  // namespace ddpm::run
