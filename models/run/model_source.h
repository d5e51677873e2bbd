// models/run/model_source.h: opening a trained UNet, with its diffusion settings, from
// whatever the user points at.
//
// Accepted sources (checked in this order):
//   1. a run folder (models/run/checkpoint.h): RUN/config.json and RUN/checkpoints/latest;
//      the checkpoint named by `latest` is loaded.
//   2. a checkpoint folder (RUN/checkpoints/step_N/): model.safetensors and/or
//      ema.safetensors; its config is config.json in the folder itself or, as in a run,
//      two levels up (RUN/config.json).
//   3. a diffusers UNet2DModel folder: config.json + diffusion_pytorch_model.safetensors
//      (models/unet/model_io.h load_diffusers_folder). Its diffusion settings come from a
//      DDPMScheduler config when one is found (scheduler_config.json beside it, or
//      ../scheduler/scheduler_config.json as in a saved DDPMPipeline), else the defaults
//      below (1000 linear steps, eps). The unet/ folder of a pipeline folder with a
//      text_encoder/ beside it (4) opens that pipeline folder.
//   4. a diffusers pipeline folder, as export_diffusers writes one for a text model:
//      unet/ (config.json + diffusion_pytorch_model.safetensors, a UNet2DConditionModel or
//      UNet2DModel), scheduler/scheduler_config.json (optional, as in 3), and for a UNet with
//      cross-attention text_encoder/ (our DdpmTextEncoder: config.json + model.safetensors)
//      and tokenizer/tokenizer.json, all required then. A text_encoder of another class (e.g.
//      transformers' CLIPTextModel) is a ValueError naming its _class_name; a cross-attention
//      UNet without text_encoder/ is an IoError (its context cannot be computed).
//   5. a model file X.safetensors with a config.json beside it.
// For 1 and 2 the EMA weights (ema.safetensors) are used by default; use_ema = false
// takes the raw weights (model.safetensors).
// A LoRA run or checkpoint (config.json has "lora", models/run/lora_run.h) opens as its
// recorded base with the checkpoint's adapters merged into it.
//
// config.json of a run or checkpoint is
//   {"model": <models/unet/model_io.h config_to_json>, "diffusion": {...}, "train": {...}}
// and "diffusion" holds (the keys shared with ddpm-train):
//   "diffusion_steps"  integer T                          (required)
//   "noise_schedule"   "linear" | "cosine"                (required)
//   "predict"          "eps" | "x0" | "v"                 (optional, default "eps")
//   "learn_sigma"      bool                               (optional, default: the model's)
//   "objective"        "ddpm" | "edm" | "vdm" | "ict"     (optional, default "ddpm")
//   "zero_terminal_snr" bool                              (optional, default false; written
//                      only when true, so older runs and their configs stay unchanged)
// An "edm" run (models/diffusion/edm.h) has no discrete process: its section holds
// "sigma_data", "p_mean", "p_std" (required) instead of the keys above, which then keep
// their defaults and are not used; DiffusionSettings::edm is set. An "ict" run (improved
// consistency training, models/run/ict_options.h) likewise holds its own keys and sets
// DiffusionSettings::ict.
// Other keys of "diffusion" (training-only choices such as the loss) are ignored here.
// Beside a model file, config.json may also be just the UNet config (our format, or
// diffusers' UNet2DModel config, recognized by "_class_name" or "block_out_channels"); the
// diffusion settings then take the defaults.
//
// Errors: IoError for a missing or damaged file (naming it); ValueError for a config
// that is inconsistent (naming the key) or of a ddpm-control run (control_run.h: not a UNet); model_io's load_state_dict lists every missing,
// unexpected and mismatched tensor name.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "models/diffusion/consistency_training.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/schedule.h"
#include "models/diffusion/vdm.h"
#include "models/text/text_conditioned.h"
#include "models/unet/unet.h"

namespace ddpm::run {

struct DiffusionSettings {
  std::int64_t diffusion_steps = 1000;
  diffusion::NoiseSchedule noise_schedule = diffusion::NoiseSchedule::linear;
  diffusion::ModelMeanType predict = diffusion::ModelMeanType::eps;
  bool learn_sigma = false;
  // The schedule rescaled to alpha_bar_{T-1} = 0 (schedule.h rescale_zero_terminal_snr; Lin
  // et al. 2024). Needs predict v or x0 (ValueError for eps wherever the settings are read).
  bool zero_terminal_snr = false;
  // Set for a network trained with the EDM objective (edm.h): it is a preconditioned F and
  // is sampled with edm_sample; the DDPM fields above are then defaults, not used.
  std::optional<diffusion::EdmConfig> edm;
  // Set for a network trained with the VDM objective (vdm.h, "objective": "vdm"): it is an
  // eps-network of continuous t; diffusion_steps is then its sampling grid N (T of a
  // discrete-time run, else 1000) and diffusion_betas the grid schedule of vdm_curve, which
  // open_model reads from the weights file ("vdm_gamma." tensors of a learned schedule).
  std::optional<diffusion::VdmConfig> vdm;
  std::shared_ptr<const diffusion::GammaCurve> vdm_curve;
  // Set for a network trained with the ict objective (consistency_training.h, "objective":
  // "ict"): F inside the consistency function f(x, sigma), sampled only by ict_sample; the
  // DDPM fields above are then defaults, not used, and edm is not set.
  std::optional<diffusion::IctConfig> ict;
};

// The model's beta schedule: betas_for(noise_schedule, diffusion_steps), rescaled to zero
// terminal SNR when zero_terminal_snr. Every consumer of a DDPM run builds its schedule here.
std::vector<double> diffusion_betas(const DiffusionSettings& d);
// ValueError for zero_terminal_snr with predict eps (gaussian_diffusion.h
// check_mean_type_for_schedule says why).
void check_diffusion_settings(const DiffusionSettings& d);

nlohmann::json diffusion_to_json(const DiffusionSettings& d);
// Reads the keys above; `model_learn_sigma` is the default for "learn_sigma", and a value
// that disagrees with it is a ValueError.
DiffusionSettings diffusion_from_json(const nlohmann::json& j, bool model_learn_sigma);

// diffusers' DDPMScheduler config <-> ours. Import refuses (ValueError naming the key)
// what we cannot reproduce: beta schedules other than "linear" (with DDPM's endpoints
// 1e-4 * 1000/T, 0.02 * 1000/T) and "squaredcos_cap_v2", prediction types other than
// "epsilon", "sample" and "v_prediction". rescale_betas_zero_snr maps to zero_terminal_snr
// (written only when true; diffusers' default false is assumed when absent).
nlohmann::json diffusion_to_diffusers_scheduler(const DiffusionSettings& d);
DiffusionSettings diffusion_from_diffusers_scheduler(const nlohmann::json& j, bool model_learn_sigma);

// A text-conditioned run (ddpm-train --text-cond) keeps its tokenizer beside config.json.
inline constexpr const char* kRunTokenizerFile = "tokenizer.json";

struct ModelSource {
  std::unique_ptr<unet::UNet> net;
  // A text-conditioned model (config.json has "text_encoder"; sources 1, 2 and 5; or a
  // pipeline folder with text_encoder/, source 4): its text encoder, the tokenizer read from
  // tokenizer.json beside config.json (tokenizer/ in a pipeline folder), and the view that
  // runs them with net (text_conditioned.h). All null for other models. The weights file
  // holds both networks' parameters (the UNet's names and text_model.*), except in a
  // pipeline folder, where weights_path is the UNet's file and the encoder's is
  // text_encoder/model.safetensors.
  std::unique_ptr<text::TextEncoder> text_encoder;
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::unique_ptr<text::TextConditionedUNet> text;
  DiffusionSettings diffusion;
  std::string kind;  // "run folder", "checkpoint folder", "diffusers folder", "diffusers pipeline folder", "model file"
  std::string weights_path;  // the .safetensors file the weights came from
  bool ema = false;          // the EMA weights were loaded
};

// Opens `path` as one of the sources above on `device`. IoError when it is none of them
// (the message says what was looked for).
ModelSource open_model(const std::string& path, Device device, bool use_ema = true);

// ValueError "<what> does not apply to <path>: it was trained with the VDM objective ..." for
// the apps that build a model's discrete schedule and time input themselves (editing,
// distillation, ControlNet, cascades, fine-tuning): a VDM network takes the continuous time of
// its gamma(t) (vdm.h vdm_grid_denoiser), which only ddpm-sample and ddpm-eval bpd map today.
// It refuses an ict model (DiffusionSettings::ict) for the same apps the same way: its network
// is F inside a consistency function, which only ddpm-sample's consistency sampler reads.
void refuse_vdm_or_ict_model(const ModelSource& model, const std::string& path, const std::string& what);
// ValueError "<what> does not apply to <path>: it is a video model ..." for the apps that work
// on images only (editing, distillation, ControlNet, cascades, evaluation, export): a video
// UNet (unet.h num_frames) takes clips [N, F, H, W, C], which only ddpm-sample and ddpm-train
// (fine-tuning included, finetune.h) handle today.
void refuse_video_model(const ModelSource& model, const std::string& path, const std::string& what);

// Turns off requires_grad on every weight of `model` (its UNet and text encoder), for the
// callers that run backward to the INPUT only (ddpm-eval nll, reconstruction guidance):
// frozen weights skip their gradients in every VJP.
void freeze_weights(const ModelSource& model);

// The config.json that open_model reads for `checkpoint` ("dir/" read as "dir"): a folder's
// own, else (a checkpoint folder RUN/checkpoints/step_N) its run's two levels up; the one
// beside a model file. "" when that file does not exist. For the readers of the run's other
// sections (the autoencoder of a latent run, a distilled student's record).
std::string model_config_path(const std::string& checkpoint);

// Writes `model` as a diffusers UNet2DModel folder (what ddpm-export does): config.json
// (model_io config_to_diffusers), diffusion_pytorch_model.safetensors (export_state_dict:
// diffusers names, OIHW convolutions) and scheduler_config.json (a DDPMScheduler config
// with our diffusion settings, so re-opening the folder restores them). The folder is
// published atomically; an existing non-empty `dir` is a ValueError unless overwrite.
// UNet2DModel.from_pretrained(dir) loads it (it ignores scheduler_config.json).
// A text-conditioned model (model.text) is written as a pipeline-shaped folder instead
// (source 4 above), also published atomically:
//   dir/unet/config.json                       UNet2DConditionModel (config_to_diffusers_conditional)
//   dir/unet/diffusion_pytorch_model.safetensors  the UNet's tensors alone (no text_model.*)
//   dir/scheduler/scheduler_config.json        the DDPMScheduler config above
//   dir/text_encoder/config.json               {"_class_name": "DdpmTextEncoder", "_note": ...,
//                                              text_encoder_config_to_json's keys}
//   dir/text_encoder/model.safetensors         the text encoder's tensors (all text_model.*)
//   dir/tokenizer/tokenizer.json               the word-level tokenizer (tokenizer.h)
//   dir/README.txt                             what the folder is; that the text encoder is NOT
//                                              transformers' CLIPTextModel (non-causal, exact GELU)
// No model_index.json: no diffusers pipeline class can run our text encoder.
// An EDM-trained model is refused (ValueError): no DDPMScheduler config can express its
// preconditioning, and the bare UNet2DModel would silently be used as an eps-model.
void export_diffusers(const ModelSource& model, const std::string& dir, bool overwrite = false);

// For checking an export against another implementation (scripts/check_export.py): runs
// `net` on a fixed input and saves "x" [N, H, W, C] (C = input_channels(), so a super-resolution
// net's x includes its condition channels, as UNet2DModel's in_channels does; N = 4, randn from Philox `seed`),
// "t" [N] f64 (original timesteps spread over [0, diffusion_steps)), "labels" [N] f64
// (class i % num_classes; absent for an unconditional net) and "out" [N, H, W, C_out].
void write_probe(const unet::UNet& net, std::int64_t diffusion_steps, const std::string& path, std::uint64_t seed = 0);
inline constexpr std::int64_t kProbeBatch = 4;  // N above
// A text model's probe: the same x, t and out, plus the context the UNet was fed:
// "input_ids" [N, L] f64 (the tokenizer's ids of probe_prompts) and "encoder_hidden_states"
// [N, L, width] (the text encoder's output, UNet2DConditionModel's argument of that name);
// the file's metadata "prompts" holds the prompts as a JSON list.
void write_probe(const text::TextConditionedUNet& model, std::int64_t diffusion_steps, const std::string& path,
                 std::uint64_t seed = 0);
// The text model's probe when model.text is set, else the UNet's (what ddpm-export --probe runs).
void write_probe(const ModelSource& model, const std::string& path, std::uint64_t seed = 0);
// kProbeBatch fixed prompts from the tokenizer's vocabulary: prompt 0 is "" (the
// unconditional caption), prompt i > 0 has min(i, context_length - 2) words, the vocabulary
// words from the (i)th on, wrapping around (all "" for a vocabulary of specials only).
std::vector<std::string> probe_prompts(const text::Tokenizer& tokenizer);

}  // namespace ddpm::run
