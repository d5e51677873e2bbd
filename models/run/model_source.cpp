// models/run/model_source.cpp: recognizing a model source and loading it (see the header).
#include "models/run/model_source.h"
#include "models/run/lora_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/rng.h"
#include "models/nn/module.h"
#include "models/run/ict_options.h"
#include "models/run/vdm_options.h"
#include "models/unet/model_io.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDiffusersWeights = "diffusion_pytorch_model.safetensors";
// The text encoder's folder of a pipeline export (header): our own class, named so that no
// reader takes it for transformers' CLIPTextModel.
constexpr const char* kTextEncoderClass = "DdpmTextEncoder";
constexpr const char* kTextEncoderWeights = "model.safetensors";

nlohmann::json read_json(const fs::path& path) {
  const std::string text = read_file(path.string());
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, "config " << path.string() << " is not valid JSON: " << strip_source_locations(e.what()));
  }
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}
bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// checkpoints/latest names the newest complete step folder: a folder name inside
// checkpoints/, a path relative to the run, or an absolute path.
fs::path latest_checkpoint(const fs::path& run) {
  const fs::path latest = run / "checkpoints" / "latest";
  DDPM_CHECK_AS(is_file(latest), IoError,
                "run folder " << run.string() << " has no checkpoints/latest: it holds no complete checkpoint yet");
  std::string name = read_file(latest.string());
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.front()))) name.erase(name.begin());
  DDPM_CHECK_AS(!name.empty(), IoError, "run folder " << run.string() << ": checkpoints/latest is empty");
  const fs::path named(name);
  if (named.is_absolute() && is_dir(named)) return named;
  if (!named.is_absolute())
    for (const fs::path& candidate : {run / "checkpoints" / named, run / named})
      if (is_dir(candidate)) return candidate;
  DDPM_THROW(IoError, "run folder " << run.string() << ": checkpoints/latest names '" << name
                                    << "', which is not a folder");
}

// Builds the UNet of `cfg` on `device` and loads the weights file into it.
std::unique_ptr<unet::UNet> build_and_load(const unet::UNetConfig& cfg, const fs::path& weights, Device device) {
  DDPM_CHECK_AS(is_file(weights), IoError, "weights file " << weights.string() << " does not exist");
  SafetensorsFile file = load_safetensors(weights.string());
  drop_vdm_schedule_tensors(file.tensors);  // a VDM run's learned schedule is read apart
  Generator init(0);  // the initial values are overwritten by the load
  auto net = std::make_unique<unet::UNet>(cfg, init, device);
  unet::load_state_dict(*net, file.tensors, weights.string());
  return net;
}

// A config.json of a run/checkpoint ({"model", "diffusion"}), or a bare UNet config
// (ours or diffusers'). Returns the model config and the diffusion settings.
std::pair<unet::UNetConfig, DiffusionSettings> parse_config(const fs::path& path) {
  const nlohmann::json j = read_json(path);
  DDPM_CHECK_AS(j.is_object(), IoError, "config " << path.string() << " is not a JSON object");
  // A ddpm-control run (control_run.h) holds a ControlNet, not a UNet that samples alone.
  DDPM_CHECK(!(j.contains("architecture") && j["architecture"] == "controlnet"),
             path.parent_path().string() << " is a ddpm-control run (a ControlNet, not a UNet): sample with "
                                         << "ddpm-sample --checkpoint BASE_RUN --control " << path.parent_path().string());
  try {
    if (j.contains("model")) {
      unet::UNetConfig cfg = unet::config_from_json(j.at("model"));
      DiffusionSettings d;
      d.learn_sigma = cfg.learn_sigma;
      if (j.contains("diffusion")) d = diffusion_from_json(j.at("diffusion"), cfg.learn_sigma);
      return {cfg, d};
    }
    unet::UNetConfig cfg = (j.contains("_class_name") || j.contains("block_out_channels"))
                               ? unet::config_from_diffusers(j)
                               : unet::config_from_json(j);
    DiffusionSettings d;
    d.learn_sigma = cfg.learn_sigma;
    return {cfg, d};
  } catch (const ValueError& e) {
    DDPM_THROW(ValueError, "config " << path.string() << ": " << strip_source_locations(e.what()));
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(ValueError, "config " << path.string() << ": " << strip_source_locations(e.what()));
  }
}

// Builds the UNet of `cfg` and loads `weights` into it; for a text-conditioned model
// (config.json with "text_encoder") the text encoder and the tokenizer beside config.json
// too, through the view that names both networks' parameters.
void build_and_load_model(ModelSource& src, const unet::UNetConfig& cfg, const fs::path& config,
                          const fs::path& weights, Device device) {
  const nlohmann::json j = read_json(config);
  if (!(j.is_object() && j.contains("text_encoder"))) {
    src.net = build_and_load(cfg, weights, device);
    return;
  }
  text::TextEncoderConfig ec;
  try {
    ec = text::text_encoder_config_from_json(j.at("text_encoder"));
  } catch (const Error& e) {
    DDPM_THROW(ValueError, "config " << config.string() << ": text_encoder: " << strip_source_locations(e.what()));
  }
  const fs::path tok = config.parent_path() / kRunTokenizerFile;
  DDPM_CHECK_AS(is_file(tok), IoError,
                "config " << config.string() << " is a text-conditioned model's, and its tokenizer " << tok.string()
                          << " is missing");
  DDPM_CHECK_AS(is_file(weights), IoError, "weights file " << weights.string() << " does not exist");
  src.tokenizer = std::make_unique<text::Tokenizer>(text::Tokenizer::load(tok.string()));
  Generator init(0);  // the initial values are overwritten by the load
  src.net = std::make_unique<unet::UNet>(cfg, init, device);
  src.text_encoder = std::make_unique<text::TextEncoder>(ec, init, device);
  try {
    src.text = std::make_unique<text::TextConditionedUNet>(*src.net, *src.text_encoder, *src.tokenizer);
  } catch (const ValueError& e) {
    DDPM_THROW(ValueError, "config " << config.string() << ": " << strip_source_locations(e.what()));
  }
  SafetensorsFile file = load_safetensors(weights.string());
  drop_vdm_schedule_tensors(file.tensors);
  unet::load_state_dict(*src.text, file.tensors, weights.string());
}

ModelSource open_checkpoint_folder(const fs::path& ckpt, const fs::path& config, Device device, bool use_ema,
                                   const std::string& kind) {
  ModelSource src;
  const fs::path weights = ckpt / (use_ema ? "ema.safetensors" : "model.safetensors");
  if (use_ema)
    DDPM_CHECK_AS(is_file(weights), IoError,
                  "checkpoint " << ckpt.string() << " has no ema.safetensors; pass --no-ema to use model.safetensors");
  // A LoRA run's checkpoint holds adapters only: its recorded base, merged with them (lora_run.h).
  if (const nlohmann::json j = read_json(config); j.is_object() && j.contains("lora"))
    return open_lora_checkpoint(j, weights.string(), device, kind, use_ema);
  auto [cfg, d] = parse_config(config);
  build_and_load_model(src, cfg, config, weights, device);
  if (d.vdm) d.vdm_curve = read_vdm_curve(*d.vdm, weights.string());
  src.diffusion = d;
  src.kind = kind;
  src.weights_path = weights.string();
  src.ema = use_ema;
  return src;
}

// The text encoder's config.json of a pipeline folder: {"_class_name": kTextEncoderClass,
// "_note": ..., <text_encoder_config_to_json>}. Keys starting with '_' are comments.
nlohmann::json text_encoder_folder_config(const text::TextEncoderConfig& c) {
  nlohmann::json j = text::text_encoder_config_to_json(c);
  j["_class_name"] = kTextEncoderClass;
  j["_note"] =
      "ddpm-engine's text encoder tau_theta (models/text/text_encoder.h gives the equations), NOT a transformers "
      "CLIPTextModel: its self-attention is non-causal and its MLP uses the exact (erf) GELU; the parameter names "
      "follow CLIPTextModel's (text_model.*) only for readability";
  return j;
}

text::TextEncoderConfig read_text_encoder_folder_config(const fs::path& path) {
  nlohmann::json j = read_json(path);
  DDPM_CHECK_AS(j.is_object(), IoError, "config " << path.string() << " is not a JSON object");
  const std::string cls = j.contains("_class_name") && j.at("_class_name").is_string()
                              ? j.at("_class_name").get<std::string>()
                              : std::string("(none)");
  DDPM_CHECK(cls == kTextEncoderClass,
             "config " << path.string() << ": _class_name is " << cls << ", but only ddpm-engine's own text encoder ("
                       << kTextEncoderClass << ", written by ddpm-export) can be opened, not e.g. CLIPTextModel");
  for (auto it = j.begin(); it != j.end();)
    it = (!it.key().empty() && it.key()[0] == '_') ? j.erase(it) : std::next(it);
  try {
    return text::text_encoder_config_from_json(j);
  } catch (const Error& e) {
    DDPM_THROW(ValueError, "config " << path.string() << ": " << strip_source_locations(e.what()));
  }
}

// 4. A pipeline folder (DIR/unet, DIR/scheduler; a text model adds DIR/text_encoder and
// DIR/tokenizer), as export_diffusers writes it.
ModelSource open_pipeline_folder(const fs::path& dir, const std::string& path_text, Device device) {
  const fs::path unet_dir = dir / "unet";
  DDPM_CHECK_AS(is_file(unet_dir / "config.json"), IoError,
                "pipeline folder " << path_text << " has unet/" << kDiffusersWeights << " but no unet/config.json");
  ModelSource src;
  src.net = unet::load_diffusers_folder(unet_dir.string(), device);
  const unet::UNetConfig& cfg = src.net->config();
  src.diffusion.learn_sigma = cfg.learn_sigma;
  const fs::path sched = dir / "scheduler" / "scheduler_config.json";
  if (is_file(sched)) {
    try {
      src.diffusion = diffusion_from_diffusers_scheduler(read_json(sched), cfg.learn_sigma);
    } catch (const ValueError& e) {
      DDPM_THROW(ValueError, sched.string() << ": " << strip_source_locations(e.what()));
    }
  }
  src.kind = "diffusers pipeline folder";
  src.weights_path = (unet_dir / kDiffusersWeights).string();
  const fs::path enc_dir = dir / "text_encoder";
  const bool has_encoder = is_dir(enc_dir);
  if (!cfg.cross_attention()) {
    DDPM_CHECK(!has_encoder, "pipeline folder " << path_text << " has a text_encoder/, but its UNet (unet/config.json) "
                                                << "has no cross-attention to read a text");
    return src;
  }
  // A UNet2DConditionModel samples only with the text encoder it was trained with.
  DDPM_CHECK_AS(has_encoder, IoError,
                "pipeline folder " << path_text << " holds a UNet with cross-attention (context_dim "
                                   << cfg.context_dim << ") but no text_encoder/ folder to compute its context");
  for (const fs::path& need : {enc_dir / "config.json", enc_dir / kTextEncoderWeights, dir / "tokenizer" / kRunTokenizerFile})
    DDPM_CHECK_AS(is_file(need), IoError,
                  "pipeline folder " << path_text << " is a text model's, and its " << need.string() << " is missing");
  const text::TextEncoderConfig ec = read_text_encoder_folder_config(enc_dir / "config.json");
  src.tokenizer = std::make_unique<text::Tokenizer>(text::Tokenizer::load((dir / "tokenizer" / kRunTokenizerFile).string()));
  Generator init(0);  // the initial values are overwritten by the load
  src.text_encoder = std::make_unique<text::TextEncoder>(ec, init, device);
  const std::string weights = (enc_dir / kTextEncoderWeights).string();
  unet::load_state_dict(*src.text_encoder, load_safetensors(weights).tensors, weights);
  try {
    src.text = std::make_unique<text::TextConditionedUNet>(*src.net, *src.text_encoder, *src.tokenizer);
  } catch (const ValueError& e) {
    DDPM_THROW(ValueError, "pipeline folder " << path_text << ": " << strip_source_locations(e.what()));
  }
  return src;
}

// The README.txt of a text model's pipeline folder.
std::string pipeline_readme(const ModelSource& model) {
  std::ostringstream r;
  r << "A text-conditioned diffusion model exported by ddpm-export (ddpm-engine), laid out like a diffusers\n"
       "pipeline folder:\n"
       "  unet/          diffusers UNet2DConditionModel (config.json, diffusion_pytorch_model.safetensors);\n"
       "                 UNet2DConditionModel.from_pretrained loads it. Its encoder_hidden_states are the\n"
       "                 text encoder's output [N, "
    << model.text_encoder->config().context_length << ", " << model.text_encoder->config().width
    << "].\n"
       "  scheduler/     diffusers DDPMScheduler config (the training noise schedule).\n"
       "  text_encoder/  ddpm-engine's OWN text encoder (config.json, model.safetensors): NOT a transformers\n"
       "                 CLIPTextModel. Its tensors carry CLIPTextModel's names (text_model.*), but the\n"
       "                 self-attention is non-causal (no mask) and the MLP uses the exact (erf) GELU, not\n"
       "                 quick_gelu; there is no pooled output. The equations are in\n"
       "                 models/text/text_encoder.h of ddpm-engine.\n"
       "  tokenizer/     ddpm-engine's word-level tokenizer (tokenizer.json; models/text/tokenizer.h):\n"
       "                 lowercased [a-z0-9] words, <bos> words <eos> padded with <pad> to the context length.\n"
       "There is no model_index.json: no diffusers pipeline class runs this text encoder. ddpm-sample\n"
       "--checkpoint THIS_FOLDER --prompt TEXT samples it.\n";
  return r.str();
}

}  // namespace

std::vector<double> diffusion_betas(const DiffusionSettings& d) {
  if (d.vdm) {  // the VDM grid alpha_bar_i = sigmoid(-gamma((i + 1)/N)) (vdm.h)
    DDPM_CHECK(d.vdm_curve, "a VDM model's schedule is read with its weights; open it with open_model");
    return diffusion::vdm_grid_schedule(*d.vdm_curve, d.diffusion_steps).betas;
  }
  std::vector<double> betas = diffusion::betas_for(d.noise_schedule, d.diffusion_steps);
  return d.zero_terminal_snr ? diffusion::rescale_zero_terminal_snr(betas) : betas;
}

void check_diffusion_settings(const DiffusionSettings& d) {
  DDPM_CHECK(!d.zero_terminal_snr || d.edm || d.predict != diffusion::ModelMeanType::eps,
             "the diffusion settings ask for zero terminal SNR with predict \"eps\": at alpha_bar = 0 an "
             "eps-prediction cannot give x_0; such a model must predict v (Lin et al. 2024) or x0");
}

nlohmann::json diffusion_to_json(const DiffusionSettings& d) {
  if (d.vdm) return vdm_section_json(*d.vdm);
  if (d.ict) return ict_section_json(*d.ict);
  if (d.edm)
    return {{"objective", "edm"}, {"sigma_data", d.edm->sigma_data}, {"p_mean", d.edm->p_mean},
            {"p_std", d.edm->p_std}, {"learn_sigma", false}};
  nlohmann::json j = {{"diffusion_steps", d.diffusion_steps},
                      {"noise_schedule", diffusion::noise_schedule_name(d.noise_schedule)},
                      {"predict", diffusion::model_mean_type_name(d.predict)},
                      {"learn_sigma", d.learn_sigma}};
  if (d.zero_terminal_snr) j["zero_terminal_snr"] = true;
  return j;
}

DiffusionSettings diffusion_from_json(const nlohmann::json& j, bool model_learn_sigma) {
  DDPM_CHECK(j.is_object(), "diffusion settings must be a JSON object, got " << j.dump());
  const std::string objective = j.value("objective", std::string("ddpm"));
  DDPM_CHECK(objective == "ddpm" || objective == "edm" || objective == "vdm" || objective == "ict",
             "\"objective\" must be \"ddpm\", \"edm\", \"vdm\" or \"ict\", got \"" << objective << "\"");
  if (objective == "ict") {  // ict_options.h
    DiffusionSettings d;
    DDPM_CHECK(!model_learn_sigma, "an iCT model has no learned variance, but the network has 2C output channels");
    d.ict = ict_config_from_json(j);
    return d;
  }
  if (objective == "vdm") {  // vdm_options.h
    DiffusionSettings d;
    d.vdm = vdm_config_from_json(j);
    d.diffusion_steps = d.vdm->steps > 0 ? d.vdm->steps : kVdmSamplingGrid;
    DDPM_CHECK(!model_learn_sigma && !j.value("learn_sigma", false),
               "a VDM model has no learned variance, but \"learn_sigma\" is set");
    return d;
  }
  if (objective == "edm") {
    DiffusionSettings d;
    diffusion::EdmConfig e;
    for (const char* key : {"sigma_data", "p_mean", "p_std"})
      DDPM_CHECK(j.contains(key) && j.at(key).is_number(), "EDM diffusion settings need a number \"" << key << "\"");
    e.sigma_data = j.at("sigma_data").get<double>();
    e.p_mean = j.at("p_mean").get<double>();
    e.p_std = j.at("p_std").get<double>();
    diffusion::check_edm_config(e);
    DDPM_CHECK(!model_learn_sigma && !j.value("learn_sigma", false),
               "an EDM model has no learned variance, but \"learn_sigma\" is set");
    d.edm = e;
    return d;
  }
  DDPM_CHECK(j.contains("diffusion_steps") && j.at("diffusion_steps").is_number_integer(),
             "diffusion settings need an integer \"diffusion_steps\"");
  DDPM_CHECK(j.contains("noise_schedule") && j.at("noise_schedule").is_string(),
             "diffusion settings need a string \"noise_schedule\" (\"linear\" or \"cosine\")");
  DiffusionSettings d;
  d.diffusion_steps = j.at("diffusion_steps").get<std::int64_t>();
  DDPM_CHECK(d.diffusion_steps > 0, "\"diffusion_steps\" must be positive, got " << d.diffusion_steps);
  d.noise_schedule = diffusion::parse_noise_schedule(j.at("noise_schedule").get<std::string>());
  if (j.contains("predict")) d.predict = diffusion::parse_model_mean_type(j.at("predict").get<std::string>());
  if (j.contains("zero_terminal_snr")) {
    DDPM_CHECK(j.at("zero_terminal_snr").is_boolean(),
               "\"zero_terminal_snr\" must be true or false, got " << j.at("zero_terminal_snr").dump());
    d.zero_terminal_snr = j.at("zero_terminal_snr").get<bool>();
  }
  check_diffusion_settings(d);
  d.learn_sigma = model_learn_sigma;
  if (j.contains("learn_sigma")) {
    d.learn_sigma = j.at("learn_sigma").get<bool>();
    DDPM_CHECK(d.learn_sigma == model_learn_sigma, "\"learn_sigma\" is " << d.learn_sigma << " in the diffusion settings but "
                                                                        << model_learn_sigma << " in the model config");
  }
  return d;
}

nlohmann::json diffusion_to_diffusers_scheduler(const DiffusionSettings& d) {
  const double T = static_cast<double>(d.diffusion_steps);
  nlohmann::json j = {{"_class_name", "DDPMScheduler"},
                      {"num_train_timesteps", d.diffusion_steps},
                      {"clip_sample", true},
                      {"clip_sample_range", 1.0},
                      {"variance_type", d.learn_sigma ? "learned_range" : "fixed_small"}};
  if (d.noise_schedule == diffusion::NoiseSchedule::linear) {
    j["beta_schedule"] = "linear";
    j["beta_start"] = 1e-4 * 1000.0 / T;  // linear_betas: DDPM's endpoints scaled by 1000/T
    j["beta_end"] = 0.02 * 1000.0 / T;
  } else {
    j["beta_schedule"] = "squaredcos_cap_v2";
  }
  j["prediction_type"] = d.predict == diffusion::ModelMeanType::eps  ? "epsilon"
                         : d.predict == diffusion::ModelMeanType::x0 ? "sample"
                                                                      : "v_prediction";
  if (d.zero_terminal_snr) {
    j["rescale_betas_zero_snr"] = true;  // diffusers' name for the same rescale
    // Fewer-step sampling in diffusers must start at t = T-1 (the paper's sec. 3.3); its
    // default "leading" spacing never visits it. Read by diffusers only; import ignores it.
    j["timestep_spacing"] = "trailing";
  }
  return j;
}

// A function-try-block: on a non-object or a value of another type, j.value() throws
// nlohmann's own exceptions, which escaped open_model (found by tests/fuzz/fuzz_model_config);
// they become the ValueError the header promises. The step count must be an integer, since
// converting a double such as 1e300 to an integer is undefined.
DiffusionSettings diffusion_from_diffusers_scheduler(const nlohmann::json& j, bool model_learn_sigma) try {
  DDPM_CHECK(j.is_object(), "scheduler: the config must be a JSON object, got " << j.type_name());
  DDPM_CHECK(!j.contains("num_train_timesteps") || j.at("num_train_timesteps").is_number_integer(),
             "scheduler: num_train_timesteps must be an integer, got " << j.at("num_train_timesteps").type_name());
  DiffusionSettings d;
  d.learn_sigma = model_learn_sigma;
  d.diffusion_steps = j.value("num_train_timesteps", std::int64_t{1000});
  DDPM_CHECK(d.diffusion_steps > 0, "scheduler: num_train_timesteps must be positive, got " << d.diffusion_steps);
  const std::string schedule = j.value("beta_schedule", "linear");
  if (schedule == "linear") {
    const double T = static_cast<double>(d.diffusion_steps);
    const double start = j.value("beta_start", 1e-4), end = j.value("beta_end", 0.02);
    const double want_start = 1e-4 * 1000.0 / T, want_end = 0.02 * 1000.0 / T;
    DDPM_CHECK(std::fabs(start - want_start) <= 1e-9 * want_start && std::fabs(end - want_end) <= 1e-9 * want_end,
               "scheduler: linear betas from " << start << " to " << end << " are not supported (with "
                                               << d.diffusion_steps << " steps we build " << want_start << " to "
                                               << want_end << ")");
    d.noise_schedule = diffusion::NoiseSchedule::linear;
  } else if (schedule == "squaredcos_cap_v2") {
    d.noise_schedule = diffusion::NoiseSchedule::cosine;
  } else {
    DDPM_THROW(ValueError, "scheduler: beta_schedule \"" << schedule
                                                         << "\" is not supported (\"linear\" or \"squaredcos_cap_v2\")");
  }
  const std::string prediction = j.value("prediction_type", "epsilon");
  if (prediction == "epsilon")
    d.predict = diffusion::ModelMeanType::eps;
  else if (prediction == "sample")
    d.predict = diffusion::ModelMeanType::x0;
  else if (prediction == "v_prediction")
    d.predict = diffusion::ModelMeanType::v;
  else
    DDPM_THROW(ValueError, "scheduler: prediction_type \"" << prediction << "\" is not supported");
  if (j.contains("rescale_betas_zero_snr")) {
    DDPM_CHECK(j.at("rescale_betas_zero_snr").is_boolean(),
               "scheduler: rescale_betas_zero_snr must be true or false, got " << j.at("rescale_betas_zero_snr").dump());
    d.zero_terminal_snr = j.at("rescale_betas_zero_snr").get<bool>();
  }
  check_diffusion_settings(d);
  return d;
} catch (const nlohmann::json::exception& e) {
  DDPM_THROW(ValueError, "scheduler: a value has the wrong type: " << e.what());
}

void freeze_weights(const ModelSource& model) {
  for (auto& [name, value] : model.net->named_parameters()) value.set_requires_grad(false);
  if (model.text_encoder)
    for (auto& [name, value] : model.text_encoder->named_parameters()) value.set_requires_grad(false);
}

std::string model_config_path(const std::string& checkpoint) {
  fs::path p = fs::path(checkpoint).lexically_normal();
  if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();  // "dir/" -> "dir"
  std::error_code ec;
  fs::path dir = p.parent_path();
  if (fs::is_directory(p, ec)) dir = fs::is_regular_file(p / "config.json", ec) ? p : p.parent_path().parent_path();
  const fs::path cfg = dir / "config.json";
  return fs::is_regular_file(cfg, ec) ? cfg.string() : "";
}

ModelSource open_model(const std::string& path_text, Device device, bool use_ema) {
  fs::path path = fs::path(path_text).lexically_normal();
  if (path.filename().empty() && path.has_parent_path()) path = path.parent_path();  // "dir/" -> "dir"
  std::error_code ec;
  DDPM_CHECK_AS(fs::exists(path, ec), IoError, "checkpoint " << path_text << " does not exist");

  if (is_dir(path)) {
    // 1. A run folder.
    if (is_file(path / "config.json") && is_dir(path / "checkpoints")) {
      const fs::path ckpt = latest_checkpoint(path);
      return open_checkpoint_folder(ckpt, path / "config.json", device, use_ema, "run folder");
    }
    // 2. A checkpoint folder.
    if (is_file(path / "model.safetensors") || is_file(path / "ema.safetensors")) {
      fs::path config = path / "config.json";
      if (!is_file(config)) config = path.parent_path().parent_path() / "config.json";
      DDPM_CHECK_AS(is_file(config), IoError,
                    "checkpoint folder " << path_text << " has no config.json, neither inside it nor in its run folder");
      return open_checkpoint_folder(path, config, device, use_ema, "checkpoint folder");
    }
    // 3. A diffusers UNet2DModel folder; the unet/ of a text model's pipeline folder opens
    // the pipeline (its UNet alone could not sample without the text encoder's context).
    if (is_file(path / kDiffusersWeights) && path.filename() == "unet" && is_dir(path.parent_path() / "text_encoder"))
      return open_pipeline_folder(path.parent_path(), path.parent_path().string(), device);
    if (is_file(path / kDiffusersWeights)) {
      DDPM_CHECK_AS(is_file(path / "config.json"), IoError,
                    "diffusers folder " << path_text << " has " << kDiffusersWeights << " but no config.json");
      ModelSource src;
      src.net = unet::load_diffusers_folder(path.string(), device);
      src.diffusion.learn_sigma = src.net->config().learn_sigma;
      for (const fs::path& sched :
           {path / "scheduler_config.json", path.parent_path() / "scheduler" / "scheduler_config.json"}) {
        if (is_file(sched)) {
          try {
            src.diffusion = diffusion_from_diffusers_scheduler(read_json(sched), src.net->config().learn_sigma);
          } catch (const ValueError& e) {
            DDPM_THROW(ValueError, sched.string() << ": " << strip_source_locations(e.what()));
          }
          break;
        }
      }
      src.kind = "diffusers folder";
      src.weights_path = (path / kDiffusersWeights).string();
      return src;
    }
    // 4. A pipeline folder.
    if (is_file(path / "unet" / kDiffusersWeights)) return open_pipeline_folder(path, path_text, device);
    DDPM_THROW(IoError, "checkpoint " << path_text
                                      << " is a folder but not a run (config.json + checkpoints/), a checkpoint "
                                         "(model.safetensors / ema.safetensors), a diffusers model (config.json + "
                                      << kDiffusersWeights << ") or a pipeline folder (unet/" << kDiffusersWeights
                                      << ")");
  }

  // 5. A model file with config.json beside it.
  DDPM_CHECK_AS(path.extension() == ".safetensors", IoError,
                "checkpoint " << path_text << " is a file but not a .safetensors model file");
  const fs::path config = path.parent_path() / "config.json";
  DDPM_CHECK_AS(is_file(config), IoError, "model file " << path_text << " needs a config.json beside it");
  ModelSource src;
  auto [cfg, d] = parse_config(config);
  build_and_load_model(src, cfg, config, path, device);
  if (d.vdm) d.vdm_curve = read_vdm_curve(*d.vdm, path.string());
  src.diffusion = d;
  src.kind = "model file";
  src.weights_path = path.string();
  src.ema = path.filename() == "ema.safetensors";
  return src;
}

void refuse_vdm_or_ict_model(const ModelSource& model, const std::string& path, const std::string& what) {
  DDPM_CHECK(!model.diffusion.vdm,
             what << " does not apply to " << path
                  << ": it was trained with the VDM objective (a continuous-time schedule gamma(t), "
                     "models/diffusion/vdm.h), whose network takes the time of its own schedule; sample it with "
                     "ddpm-sample and score it with ddpm-eval bpd");
  DDPM_CHECK(!model.diffusion.ict,
             what << " does not apply to " << path
                  << ": it was trained with --objective ict (improved consistency training, models/diffusion/"
                     "consistency_training.h); its network is F inside a consistency function f(x, sigma), not a "
                     "denoiser of a diffusion process. Sample it with ddpm-sample --sampler consistency");
}

void refuse_video_model(const ModelSource& model, const std::string& path, const std::string& what) {
  const int frames = model.net ? model.net->config().num_frames : 0;
  DDPM_CHECK(frames == 0, what << " does not apply to " << path << ": it is a video model (clips of " << frames
                               << " frames, models/run/video_run.h); sample it with ddpm-sample");
}

void export_diffusers(const ModelSource& model, const std::string& dir, bool overwrite) {
  DDPM_CHECK(!dir.empty(), "export: the output folder is empty");
  refuse_video_model(model, "this model", "export to a diffusers folder");
  DDPM_CHECK(!model.diffusion.vdm,
             "export: this model was trained with the VDM objective (a continuous-time schedule gamma(t), "
             "models/diffusion/vdm.h); a DDPMScheduler config cannot express it. Sample it with ddpm-sample");
  DDPM_CHECK(!model.diffusion.ict,
             "export: this model was trained with --objective ict (a consistency function f(x, sigma) = c_skip x + "
             "c_out F(c_in x; ln(sigma)/4), models/diffusion/consistency_training.h); a diffusers UNet2DModel with a "
             "DDPMScheduler cannot express that, and would be used as an eps-model. Sample it with ddpm-sample "
             "--sampler consistency instead");
  DDPM_CHECK(!model.diffusion.edm,
             "export: this model was trained with the EDM objective (preconditioned D(x; sigma) = c_skip x + c_out "
             "F(c_in x; ln(sigma)/4), sigma_data "
                 << model.diffusion.edm->sigma_data
                 << "); a diffusers UNet2DModel with a DDPMScheduler cannot express that, and would be used as an "
                    "eps-model. Sample it with ddpm-sample --sampler heun instead");
  std::error_code ec;
  const fs::path out(dir);
  DDPM_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), "export: " << dir << " exists and is not a folder");
  if (fs::is_directory(out, ec)) {
    DDPM_CHECK(overwrite || fs::is_empty(out, ec), "export: " << dir << " exists and is not empty; pass --overwrite to replace it");
  }
  const nlohmann::json scheduler = diffusion_to_diffusers_scheduler(model.diffusion);
  const auto tensors = unet::export_state_dict(*model.net);  // the UNet alone: no text_model.*
  if (model.text) {
    // Everything is converted before the folder is created, so a refusal leaves nothing.
    const nlohmann::json config = unet::config_to_diffusers_conditional(model.net->config());
    const nlohmann::json encoder_config = text_encoder_folder_config(model.text_encoder->config());
    const auto encoder_tensors = unet::export_state_dict(*model.text_encoder);  // text_model.*
    const std::string readme = pipeline_readme(model);
    publish_directory(
        dir,
        [&](const std::string& tmp) {
          for (const char* sub : {"unet", "scheduler", "text_encoder", "tokenizer"}) fs::create_directories(tmp + "/" + sub);
          write_file_atomic(tmp + "/unet/config.json", config.dump(2) + "\n");
          save_safetensors(tmp + "/unet/" + kDiffusersWeights, tensors, {{"format", "pt"}});
          write_file_atomic(tmp + "/scheduler/scheduler_config.json", scheduler.dump(2) + "\n");
          write_file_atomic(tmp + "/text_encoder/config.json", encoder_config.dump(2) + "\n");
          save_safetensors(tmp + "/text_encoder/" + kTextEncoderWeights, encoder_tensors, {{"format", "pt"}});
          model.tokenizer->save(tmp + "/tokenizer/" + kRunTokenizerFile);
          write_file_atomic(tmp + "/README.txt", readme);
        },
        fs::exists(out, ec) ? IfExists::replace : IfExists::fail);
    return;
  }
  const nlohmann::json config = unet::config_to_diffusers(model.net->config());
  publish_directory(
      dir,
      [&](const std::string& tmp) {
        write_file_atomic(tmp + "/config.json", config.dump(2) + "\n");
        save_safetensors(tmp + "/" + kDiffusersWeights, tensors, {{"format", "pt"}});
        write_file_atomic(tmp + "/scheduler_config.json", scheduler.dump(2) + "\n");
      },
      fs::exists(out, ec) ? IfExists::replace : IfExists::fail);
}

namespace {

// The probe's fixed input (header): x from Philox `seed`, t spread over [0, T), labels i % K.
struct ProbeInput {
  Tensor x;
  std::vector<double> t;
  std::vector<std::int64_t> labels;
  std::vector<double> label_values;
};

ProbeInput probe_input(const unet::UNet& net, std::int64_t diffusion_steps, std::uint64_t seed) {
  const unet::UNetConfig& cfg = net.config();
  const std::int64_t N = kProbeBatch;
  Generator gen(seed);
  ProbeInput p;
  p.x = randn({N, cfg.image_size, cfg.image_size, cfg.input_channels()}, gen, net.device());  // with a super-res model's condition channels
  for (std::int64_t i = 0; i < N; ++i) {
    p.t.push_back(static_cast<double>((diffusion_steps - 1) * i / (N - 1)));
    if (cfg.num_classes > 0) {
      p.labels.push_back(i % cfg.num_classes);
      p.label_values.push_back(static_cast<double>(p.labels.back()));
    }
  }
  return p;
}

std::vector<std::pair<std::string, Tensor>> probe_tensors(const ProbeInput& p, const Tensor& out) {
  const std::int64_t N = kProbeBatch;
  std::vector<std::pair<std::string, Tensor>> tensors{{"x", p.x.cpu()}, {"t", Tensor::from_vector(p.t, {N})}, {"out", out.cpu()}};
  if (!p.labels.empty()) tensors.emplace_back("labels", Tensor::from_vector(p.label_values, {N}));
  return tensors;
}

}  // namespace

void write_probe(const unet::UNet& net, std::int64_t diffusion_steps, const std::string& path, std::uint64_t seed) {
  const ProbeInput p = probe_input(net, diffusion_steps, seed);
  const Tensor out = net.forward(p.x, p.t, p.labels, nn::Context{});
  save_safetensors(path, probe_tensors(p, out));
}

std::vector<std::string> probe_prompts(const text::Tokenizer& tokenizer) {
  const std::vector<std::string>& vocab = tokenizer.vocabulary();
  const std::int64_t words = static_cast<std::int64_t>(vocab.size()) - text::kNumSpecialTokens;
  std::vector<std::string> prompts;
  for (std::int64_t i = 0; i < kProbeBatch; ++i) {
    std::string prompt;  // prompt 0 stays "", the unconditional caption
    const std::int64_t count = words > 0 ? std::min<std::int64_t>(i, tokenizer.context_length() - 2) : 0;
    for (std::int64_t k = 0; k < count; ++k)
      prompt += (k > 0 ? " " : "") + vocab[static_cast<std::size_t>(text::kNumSpecialTokens + (i + k) % words)];
    prompts.push_back(prompt);
  }
  return prompts;
}

void write_probe(const text::TextConditionedUNet& model, std::int64_t diffusion_steps, const std::string& path,
                 std::uint64_t seed) {
  const std::int64_t N = kProbeBatch, L = model.tokenizer().context_length();
  const ProbeInput p = probe_input(model.unet(), diffusion_steps, seed);
  const std::vector<std::string> prompts = probe_prompts(model.tokenizer());
  const std::vector<std::int64_t> ids = model.tokenizer().encode_batch(prompts);  // [N, L]
  const Tensor context = model.encoder().forward(ids, N, nn::Context{});        // [N, L, width]
  const Tensor out = model.unet().forward(p.x, p.t, p.labels, context, nn::Context{});
  std::vector<std::pair<std::string, Tensor>> tensors = probe_tensors(p, out);
  tensors.emplace_back("input_ids", Tensor::from_vector(std::vector<double>(ids.begin(), ids.end()), {N, L}));
  tensors.emplace_back("encoder_hidden_states", context.cpu());
  save_safetensors(path, tensors, {{"prompts", nlohmann::json(prompts).dump()}});
}

void write_probe(const ModelSource& model, const std::string& path, std::uint64_t seed) {
  if (model.text)
    write_probe(*model.text, model.diffusion.diffusion_steps, path, seed);
  else
    write_probe(*model.net, model.diffusion.diffusion_steps, path, seed);
}

}  // namespace ddpm::run
