// models/run/finetune.cpp: ddpm-train --init-from (contract in finetune.h).
#include "models/run/finetune.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>

#include "engine/error.h"
#include "engine/io/sha256.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/run/checkpoint.h"
#include "models/run/latent_run.h"
#include "models/run/lora_run.h"
#include "models/unet/model_io.h"

namespace fs = std::filesystem;

namespace ddpm::run {

const std::vector<const char*> kInitFromRefusedFlags = {
    // Architecture.
    "--image-size", "--num-channels", "--channel-mult", "--num-res-blocks", "--attention-resolutions",
    "--num-heads", "--num-head-channels", "--norm-groups", "--learn-sigma", "--use-scale-shift-norm",
    "--resblock-updown", "--timestep-embedding",
    // Conditioning.
    "--class-cond", "--text-cond", "--context-length", "--text-width", "--text-layers", "--text-heads",
    "--transformer-depth", "--text-pooling", "--no-text-pooling",
    // Diffusion.
    "--objective", "--sigma-data", "--p-mean", "--p-std", "--diffusion-steps", "--noise-schedule", "--predict",
    "--zero-terminal-snr",
    // Model kinds a fine-tune does not take (finetune.h).
    "--autoencoder", "--super-res", "--cond-augment", "--blur-augment", "--blur-sigma"};

namespace {

bool given(const TrainOptions& o, const std::string& flag) {
  for (const std::string& f : o.init_from_flags_given)
    if (f == flag) return true;
  return false;
}

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

std::string absolute_path(const std::string& p) {
  fs::path path = fs::absolute(fs::path(p)).lexically_normal();
  if (path.filename().empty() && path.has_parent_path()) path = path.parent_path();  // "dir/" -> "dir"
  return path.string();
}

// The checkpoint folder of a run or checkpoint folder SRC; "" for the other kinds.
fs::path checkpoint_folder_of(const fs::path& src) {
  std::error_code ec;
  if (!fs::is_directory(src, ec)) return {};
  if (fs::is_regular_file(src / "config.json", ec) && fs::is_directory(src / "checkpoints", ec))
    return resolve_checkpoint(src.string(), "latest");
  if (fs::is_regular_file(src / kModelFile, ec) || fs::is_regular_file(src / kEmaFile, ec)) return src;
  return {};
}

// Sets o's model, diffusion and conditioning options to the source's, so validate_options
// checks (and config.json records) what the run will train.
void adopt_source_options(const FineTuneSource& s, TrainOptions& o) {
  const unet::UNetConfig& m = s.model;
  o.image_size = m.image_size;
  o.num_channels = m.model_channels;
  o.channel_mult = join_ints(m.channel_mult);
  o.num_res_blocks = m.num_res_blocks;
  o.attention_resolutions = join_ints(m.attention_resolutions);
  o.num_heads = m.num_heads;
  o.num_head_channels = m.num_head_channels;
  o.norm_groups = m.norm_groups;
  if (!given(o, "--dropout")) o.dropout = m.dropout;
  o.learn_sigma = m.learn_sigma;
  o.use_scale_shift_norm = m.use_scale_shift_norm;
  o.resblock_updown = m.resblock_updown;
  o.class_cond = m.num_classes > 0;
  o.text.enabled = s.text_encoder.has_value();
  if (s.text_encoder) {
    o.text.context_length = s.text_encoder->context_length;
    o.text.width = s.text_encoder->width;
    o.text.layers = s.text_encoder->layers;
    o.text.heads = s.text_encoder->heads;
    o.text.transformer_depth = m.transformer_depth;
    o.text.pooling = m.context_pooled();
  }
  const nlohmann::json d = diffusion_to_json(s.diffusion);
  o.objective = "ddpm";
  o.diffusion_steps = s.diffusion.diffusion_steps;
  o.noise_schedule = d.at("noise_schedule").get<std::string>();
  o.predict = d.at("predict").get<std::string>();
  o.zero_terminal_snr = s.diffusion.zero_terminal_snr;
}

// The architecture, settings and weights of an opened model (no record yet).
FineTuneSource source_of(const ModelSource& m) {
  FineTuneSource s;
  s.model = m.net->config();
  s.diffusion = m.diffusion;
  const nn::Module& module = m.text ? static_cast<const nn::Module&>(*m.text) : static_cast<const nn::Module&>(*m.net);
  for (const auto& [name, t] : module.named_parameters()) s.weights.emplace_back(name, t.clone());
  if (m.text) {
    s.text_encoder = m.text_encoder->config();
    s.tokenizer = *m.tokenizer;
  }
  return s;
}

// A latent source's autoencoder folder `dir` ("" for a pixel-space source): recorded with
// its factor and pixel channels, read from its config.json.
void adopt_autoencoder(const std::string& dir, FineTuneSource& s) {
  s.autoencoder = dir;
  if (dir.empty()) return;
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(fs::path(dir) / autoencoder::kAutoencoderConfig));
  const autoencoder::AutoencoderConfig c = autoencoder::autoencoder_config_from_json(j.at("model"));
  s.latent_factor = c.downsampling_factor();
  s.pixel_channels = c.in_channels;
}

}  // namespace

void note_init_from_flags(const CLI::App& app, TrainOptions& o) {
  o.init_from_flags_given.clear();
  std::vector<const char*> flags = kInitFromRefusedFlags;
  flags.push_back("--dropout");
  for (const char* flag : flags) {
    const CLI::Option* opt = app.get_option_no_throw(flag);
    if (opt != nullptr && opt->count() > 0) o.init_from_flags_given.push_back(flag);
  }
  // --text-pooling / --no-text-pooling are one CLI11 option.
  if (o.text.pooling_given) o.init_from_flags_given.push_back(o.text.pooling ? "--text-pooling" : "--no-text-pooling");
}

FineTuneSource open_finetune_source(const std::string& src, const std::string& init_weights) {
  DDPM_CHECK(init_weights.empty() || init_weights == "ema" || init_weights == "raw",
             "--init-weights must be ema or raw, got '" << init_weights << "'");
  std::error_code ec;
  DDPM_CHECK(fs::exists(src, ec), "--init-from " << src << " does not exist");
  const fs::path ckpt = checkpoint_folder_of(fs::path(src));
  bool use_ema = true;
  if (!ckpt.empty()) {
    const bool has_ema = fs::is_regular_file(ckpt / kEmaFile, ec), has_raw = fs::is_regular_file(ckpt / kModelFile, ec);
    DDPM_CHECK(init_weights != "ema" || has_ema,
               "--init-weights ema: the checkpoint " << ckpt.string() << " has no " << kEmaFile);
    DDPM_CHECK(init_weights != "raw" || has_raw,
               "--init-weights raw: the checkpoint " << ckpt.string() << " has no " << kModelFile);
    use_ema = init_weights.empty() ? has_ema : init_weights == "ema";
  } else {
    DDPM_CHECK(init_weights.empty(), "--init-weights " << init_weights << " applies to our run and checkpoint folders "
                                                       "(EMA and raw weights); --init-from " << src
                                                       << " holds one set of weights");
  }
  // The kinds a fine-tune refuses, by the run's config.json where there is one.
  const std::string config_path = model_config_path(src);
  if (!config_path.empty()) {
    const nlohmann::json cfg = nlohmann::json::parse(std::ifstream(config_path), nullptr, false);
    if (cfg.is_object()) {
      DDPM_CHECK(!cfg.contains("lora"),
                 "--init-from " << src << " is a LoRA run; fine-tune its merged model instead (ddpm-export "
                                          "--checkpoint " << src << " --out DIR writes it)");
      DDPM_CHECK(!cfg.contains("distillation"),
                 "--init-from " << src << " is a distilled student (config.json has a \"distillation\" section); the "
                                          "DDPM loss would undo its few-step distillation, so it cannot be fine-tuned");
    }
  }
  ModelSource m = open_model(src, Device::cpu(), use_ema);  // ValueError for a ControlNet run
  refuse_vdm_or_ict_model(m, src, "--init-from");  // a video model is fine-tuned on clips (finetune_unet_config)
  DDPM_CHECK(!m.diffusion.edm, "--init-from " << src << " is an EDM model (--objective edm); fine-tuning EDM models "
                                                        "is not supported yet");
  const unet::UNetConfig& mc = m.net->config();
  DDPM_CHECK(!mc.super_res(), "--init-from " << src << " is a super-resolution model (low-res size "
                                             << mc.low_res_size << "); fine-tuning those is not supported yet");
  DDPM_CHECK(!mc.guidance_embedding, "--init-from " << src << " is a guidance-distilled model; it cannot be fine-tuned");
  check_diffusion_settings(m.diffusion);

  FineTuneSource s = source_of(m);
  adopt_autoencoder(find_run_autoencoder(src), s);  // a latent SRC's (nothing for pixels)
  nlohmann::json files = nlohmann::json::array();
  std::vector<std::string> weight_files = {m.weights_path};
  if (m.kind == "diffusers pipeline folder") weight_files.push_back((fs::path(src) / "text_encoder" / "model.safetensors").string());
  for (const std::string& f : weight_files) files.push_back({{"path", absolute_path(f)}, {"sha256", sha256_file(f)}});
  s.record = {{"source", absolute_path(src)},
              {"kind", m.kind},
              {"weights", ckpt.empty() ? "raw" : (m.ema ? "ema" : "raw")},
              {"files", files}};
  return s;
}

std::optional<FineTuneSource> prepare_finetune(TrainOptions& o) {
  std::optional<nlohmann::json> saved;  // --resume: the run's own config.json
  if (!o.resume.empty() && fs::exists(fs::path(o.out) / "config.json")) {
    const nlohmann::json cfg = read_run_config(o.out);
    if (cfg.contains("init_from")) saved = cfg;
  }
  DDPM_CHECK(o.lora_rank >= 0, "--lora-rank must be >= 0 (0 = no LoRA), got " << o.lora_rank);
  DDPM_CHECK(std::isfinite(o.lora_alpha) && o.lora_alpha >= 0,
             "--lora-alpha must be positive (0 = the rank), got " << o.lora_alpha);
  DDPM_CHECK(o.lora_alpha == 0 || o.lora_rank > 0, "--lora-alpha " << o.lora_alpha << " needs --lora-rank");
  DDPM_CHECK(o.train_only.empty() || o.train_only == "temporal",
             "--train-only must be temporal (the video model's temporal blocks), got '" << o.train_only << "'");
  DDPM_CHECK(o.train_only.empty() || o.lora_rank == 0,
             "--train-only " << o.train_only << " and --lora-rank " << o.lora_rank
                             << " are two ways to choose what trains; give one");
  DDPM_CHECK(o.train_only.empty() || o.posthoc_ema.empty(),
             "--posthoc-ema does not apply with --train-only " << o.train_only
                                                              << ": the power EMAs would hold the trained blocks alone");
  if (o.init_from.empty() && !saved) {
    DDPM_CHECK(o.train_only.empty(), "--train-only " << o.train_only << " needs --init-from: it trains the temporal "
                                                                       "blocks of a video model made from a trained one");
    DDPM_CHECK(o.init_weights.empty(), "--init-weights " << o.init_weights << " needs --init-from");
    DDPM_CHECK(o.lora_rank == 0, "--lora-rank " << o.lora_rank << " needs --init-from: LoRA adapts a trained model");
    return std::nullopt;
  }
  DDPM_CHECK(o.autoencoder.empty(),
             "--autoencoder " << o.autoencoder << " does not apply with --init-from: a fine-tune of a latent model "
                                                 "diffuses in its source's latent space with the source's autoencoder "
                                                 "(copied into the run), and a pixel-space source has none");
  for (const char* flag : kInitFromRefusedFlags)
    DDPM_CHECK(!given(o, flag), flag << " does not apply with --init-from: a fine-tune takes the architecture, "
                                        "diffusion settings and conditioning of its source"
                                     << (saved ? " (recorded in " + o.out + "/config.json)" : ""));
  FineTuneSource s;
  if (saved) {
    const nlohmann::json& rec = saved->at("init_from");
    DDPM_CHECK(o.init_from.empty() || absolute_path(o.init_from) == rec.value("source", std::string()),
               "--init-from " << o.init_from << " is not the source this run was fine-tuned from ("
                              << rec.value("source", std::string()) << ", " << o.out << "/config.json)");
    // A LoRA run's frozen base is loaded on every resume: the recorded weights, digests checked.
    if (saved->contains("lora")) s = source_of(open_recorded_base(rec, Device::cpu()));
    s.model = unet::config_from_json(saved->at("model"));
    s.diffusion = diffusion_from_json(saved->at("diffusion"), s.model.learn_sigma);
    if (saved->contains("text_encoder")) s.text_encoder = text::text_encoder_config_from_json(saved->at("text_encoder"));
    s.record = rec;
    // A latent fine-tune resumes with the run's own copy of the autoencoder (train_run.h).
    if (saved->contains("autoencoder")) adopt_autoencoder((fs::path(o.out) / kRunAutoencoderFolder).string(), s);
    o.init_from = rec.value("source", o.init_from);
    o.init_weights = rec.value("weights", o.init_weights);
  } else {
    DDPM_CHECK(o.resume.empty(), "--init-from starts a new run; --resume continues a fine-tune from its own "
                                 "checkpoints, and " << o.out << " holds no fine-tune (no \"init_from\" in its "
                                                                 "config.json)");
    s = open_finetune_source(o.init_from, o.init_weights);
  }
  DDPM_CHECK(s.autoencoder.empty() || o.lora_rank == 0,
             "--lora-rank " << o.lora_rank << " does not apply to the latent diffusion model " << o.init_from
                            << " (LoRA runs of latent models are not supported); fine-tune all its weights instead");
  adopt_source_options(s, o);
  o.autoencoder = s.autoencoder;  // a latent source's: the run diffuses its latents
  return s;
}

unet::UNetConfig finetune_unet_config(const FineTuneSource& s, const TrainOptions& o, const Dataset& data) {
  unet::UNetConfig c = s.model;
  // The pixels the model's inputs come from: a latent source's autoencoder's (size x f).
  const bool latent = !s.autoencoder.empty();
  const std::int64_t size = static_cast<std::int64_t>(c.image_size) * s.latent_factor;
  const std::int64_t channels = latent ? s.pixel_channels : c.in_channels;
  DDPM_CHECK(data.height == size && data.channels == channels,
             "--data " << data.name << " has " << data.height << "x" << data.width << "x" << data.channels
                       << " images, but the --init-from model takes " << size << "x" << size << "x" << channels
                       << (latent ? " (the pixels of its autoencoder " + s.autoencoder + ")" : std::string())
                       << (data.height == 28 && size == 32 ? " (add --pad-to-32)" : ""));
  if (c.num_classes > 0)
    DDPM_CHECK(data.has_labels() && data.num_classes == c.num_classes,
               "--data " << data.name << " has " << (data.has_labels() ? std::to_string(data.num_classes) : "no")
                         << " classes, but the class-conditional --init-from model has " << c.num_classes);
  // Video: clips of F frames make a video UNet of F frames (the checks above were per frame).
  const int frames = data.frames > 1 ? static_cast<int>(data.frames) : 0;
  const std::string src = o.init_from;
  if (c.video())
    DDPM_CHECK(frames == c.num_frames,
               "--data " << data.name << " holds "
                         << (frames > 0 ? "clips of " + std::to_string(frames) + " frames" : std::string("images"))
                         << ", but the --init-from model " << src << " is a video model of " << c.num_frames
                         << " frames; a video fine-tune needs clips of the same F (--frames " << c.num_frames << ")");
  DDPM_CHECK(!o.first_frame_condition || frames > 0,
             "--first-frame-condition conditions a video model on each clip's first frame; --data "
                 << data.name << " holds images, not clips (use e.g. --data moving-toy)");
  // On --resume, s.model is the run's own (config.json), so the condition is the run's.
  if (!o.resume.empty())
    DDPM_CHECK(o.first_frame_condition || !c.first_frame_condition,
               "--resume " << o.resume << ": the fine-tune in " << o.out
                           << " is conditioned on each clip's first frame (its config.json); add "
                              "--first-frame-condition to continue it (its conv_in takes the condition)");
  DDPM_CHECK(o.first_frame_condition || !c.first_frame_condition,
             "the --init-from model " << src << " is conditioned on each clip's first frame; give "
                                             "--first-frame-condition to fine-tune it (its conv_in takes the condition)");
  DDPM_CHECK(o.lora_rank == 0 || frames == 0,
             "--lora-rank " << o.lora_rank << " does not apply to a video fine-tune (--data " << data.name
                            << " holds clips): a LoRA run is opened as its recorded base plus adapters, and the "
                               "video model's temporal blocks are not in an image base; fine-tune all weights instead");
  DDPM_CHECK(o.train_only.empty() || frames > 0,
             "--train-only " << o.train_only << " trains a video model's temporal blocks; --data " << data.name
                             << " holds images, not clips (use e.g. --data moving-toy --frames 8)");
  // Frame positions: a video SRC keeps its own (its temporal weights were trained with them);
  // an image SRC's new temporal blocks take the flag's, a relative table starting at zero.
  check_temporal_flags(o, frames > 0, data.name,
                       c.video() && o.temporal_position.empty() ? c.temporal_position : o.temporal_position);
  DDPM_CHECK(!c.video() || o.temporal_position.empty() || o.temporal_position == c.temporal_position,
             "--temporal-position " << o.temporal_position << " differs from the --init-from video model " << src
                                    << ", whose temporal attention uses " << c.temporal_position
                                    << " positions; its temporal weights were trained with them (leave the flag "
                                       "out or give --temporal-position "
                                    << c.temporal_position << ")");
  // R is a video SRC's too (its tables have 2R + 1 rows); an image SRC takes the flag's.
  DDPM_CHECK(!c.video() || o.temporal_max_distance == -1 || o.temporal_max_distance == c.relative_max_distance(),
             "--temporal-max-distance " << o.temporal_max_distance << " differs from the --init-from video model "
                                        << src << ", whose relative_bias tables have R = " << c.relative_max_distance()
                                        << " (leave the flag out or give --temporal-max-distance "
                                        << c.relative_max_distance() << ")");
  if (!c.video() && !o.temporal_position.empty()) c.temporal_position = o.temporal_position;
  if (!c.video() && o.temporal_max_distance > 0) c.temporal_max_distance = o.temporal_max_distance;
  c.num_frames = frames;
  // A source's temporal convolutions are its architecture; --temporal-conv adds fresh ones
  // (identity at the start) to a source without them.
  c.temporal_conv = frames > 0 && (s.model.temporal_conv || o.temporal_conv);
  c.first_frame_condition = o.first_frame_condition;
  c.condition_frames = o.first_frame_condition ? o.condition_frames : 0;  // a training choice (vext), not SRC's
  c.dropout = o.dropout;
  c.validate();
  return c;
}

nlohmann::json finetune_record(const FineTuneSource& s, const unet::UNetConfig& model) {
  nlohmann::json r = s.record;
  if (model.video() && !r.contains("video"))
    r["video"] = {{"num_frames", model.num_frames}, {"from_image", !s.model.video()}};
  return r;
}

NamedTensors train_only_parameters(const nn::Module& model, const unet::UNetConfig& target) {
  NamedTensors trained;
  for (auto& [name, p] : model.named_parameters()) {
    const bool temporal =
        name.find("temp_attentions.") != std::string::npos || name.find("temp_convs.") != std::string::npos;
    const bool conv_in = target.first_frame_condition && name.rfind("conv_in.", 0) == 0;
    if (temporal || conv_in) {
      trained.emplace_back(name, p);
    } else {
      Tensor frozen = p;  // a handle on the model's parameter
      frozen.set_requires_grad(false);
    }
  }
  DDPM_CHECK(!trained.empty(), "--train-only temporal: the model has no temporal blocks (not a video model)");
  return trained;
}

void load_finetune_weights(const FineTuneSource& s, const nn::Module& model) { load_finetune_weights(s, model, s.model); }

void load_finetune_weights(const FineTuneSource& s, const nn::Module& model, const unet::UNetConfig& target) {
  // The differences a video target may have from its source (finetune.h): temporal blocks new
  // to an image source, and conv_in widened by the first-frame condition's C + 1 channels.
  const bool new_temporal = target.video() && !s.model.video();
  const bool new_convs = target.temporal_conv && !s.model.temporal_conv;  // --temporal-conv on a source without
  const bool grown_conv_in = target.first_frame_condition && !s.model.first_frame_condition;
  const std::int64_t src_in = s.model.input_channels(), dst_in = target.input_channels();
  auto is_temporal = [](const std::string& name) { return name.find("temp_attentions.") != std::string::npos; };
  // conv_in.weight [O, k, k, Cin]: the source's with only its last axis (Cin) wider.
  auto grows = [&](const std::string& name, const Shape& from, const Shape& to) {
    return grown_conv_in && name == "conv_in.weight" && from.size() == 4 && to.size() == 4 && from[0] == to[0] &&
           from[1] == to[1] && from[2] == to[2] && from[3] == src_in && to[3] == dst_in;
  };
  std::map<std::string, const Tensor*> source;
  for (const auto& [name, t] : s.weights) source[name] = &t;
  std::ostringstream problems;
  int count = 0;
  const std::vector<nn::NamedTensor> params = model.named_parameters();
  for (const auto& [name, p] : params) {
    const auto it = source.find(name);
    if (it == source.end()) {
      if (new_temporal && is_temporal(name)) continue;  // keeps its fresh initialisation
      if (new_convs && name.find("temp_convs.") != std::string::npos) continue;  // fresh, the identity
      problems << "\n  missing: " << name;
      ++count;
    } else if (it->second->shape() != p.shape() && !grows(name, it->second->shape(), p.shape())) {
      problems << "\n  shape of " << name << ": " << shape_str(it->second->shape()) << " in the source vs "
               << shape_str(p.shape());
      ++count;
    }
  }
  std::map<std::string, bool> wanted;
  for (const auto& [name, p] : params) wanted[name] = true;
  for (const auto& [name, t] : s.weights)
    if (!wanted.count(name)) {
      problems << "\n  unexpected: " << name;
      ++count;
    }
  DDPM_CHECK_AS(count == 0, IoError,
                "--init-from " << s.record.value("source", std::string()) << ": " << count
                               << " parameter(s) do not match the model:" << problems.str());
  for (const auto& [name, p] : params) {
    const auto it = source.find(name);
    if (it == source.end()) continue;  // a new temporal block
    Tensor dst = p;  // a handle: copy_from writes the model's (slab's) storage
    if (it->second->shape() == p.shape()) {
      dst.copy_from(it->second->to(p.dtype()));
      continue;
    }
    // The grown conv_in: W'[o, i, j, c] = W[o, i, j, c] for c < C_src, 0 for the condition's
    // channels, so conv_in(concat(x_t, I, m)) = conv_in_src(x_t) whatever the condition.
    // Built in f64 on the host (exact for f32 and f64 weights), then cast to the model's dtype.
    const std::vector<double> w = it->second->to_double_vector();
    const std::int64_t taps = p.shape()[0] * p.shape()[1] * p.shape()[2];
    std::vector<double> grown(static_cast<std::size_t>(taps * dst_in), 0.0);
    for (std::int64_t k = 0; k < taps; ++k)
      for (std::int64_t c = 0; c < src_in; ++c) grown[k * dst_in + c] = w[k * src_in + c];
    dst.copy_from(Tensor::from_vector(grown, p.shape(), DType::f64).to(p.dtype()));
  }
}

}  // namespace ddpm::run
