// models/run/profile_run.cpp: ddpm-profile's warm-up, profiled steps, tables and JSON
// (see profile_run.h).
#include "models/run/profile_run.h"

#include "models/run/int_list.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <ostream>
#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/math_mode.h"
#include "engine/ops/concat.h"
#include "engine/parameters.h"
#include "engine/rng.h"
#include "models/diffusion/schedule.h"
#include "models/run/model_source.h"
#include "models/text/text_encoder.h"
#include "models/train/trainer.h"

namespace ddpm::run {

namespace {

// Profiles fn() as one region on `device`.
StepProfile profile_region(const char* name, std::int64_t batch, Device device, const std::function<void()>& fn) {
  StepProfile step;
  step.name = name;
  step.batch = batch;
  Profiler::start(device);
  try {
    fn();
  } catch (...) {
    Profiler::stop();
    throw;
  }
  step.result = Profiler::stop();
  step.ops = step.result.summarize();
  return step;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// A rate (estimate / time) or "-" when there is no estimate or no measurable time.
std::string rate(double amount, double ms, double unit) {
  if (amount <= 0.0 || ms <= 0.0) return "-";
  return fmt("%.3f", amount / (ms * 1e-3) / unit);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string join(const std::vector<int>& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out;
}

std::string step_json(const StepProfile& s) {
  std::ostringstream o;
  const double total = s.result.total_ms;
  o << "{\"batch\": " << s.batch << ", \"total_ms\": " << total << ", \"op_ms\": " << s.result.op_ms()
    << ", \"outside_ms\": " << s.outside_ms();
  if (s.result.counts_launches)
    o << ", \"engine_kernels\": " << s.result.engine_kernels << ", \"library_calls\": " << s.result.library_calls;
  o << ", \"ops\": [";
  for (std::size_t i = 0; i < s.ops.size(); ++i) {
    const OpSummary& op = s.ops[i];
    o << (i ? ", " : "") << "{\"op\": " << json_string(op.name) << ", \"calls\": " << op.calls
      << ", \"ms\": " << op.ms << ", \"share\": " << (total > 0 ? 100.0 * op.ms / total : 0.0)
      << ", \"flops\": " << op.flops << ", \"bytes\": " << op.bytes << "}";
  }
  o << "]}";
  return o.str();
}

}  // namespace

double StepProfile::outside_ms() const { return std::max(0.0, result.total_ms - result.op_ms()); }

ProfileReport profile_model(const ProfileOptions& options) {
  ProfileOptions opt = options;
  std::unique_ptr<unet::UNet> net;
  std::unique_ptr<text::TextEncoder> encoder;
  if (!opt.checkpoint.empty()) {  // SRC's networks with their weights; the report shows their configs
    ModelSource src = open_model(opt.checkpoint, opt.device);
    net = std::move(src.net);
    encoder = std::move(src.text_encoder);
    opt.model = net->config();
    opt.text_cond = encoder != nullptr;
    if (encoder) opt.text = encoder->config();
    opt.diffusion_steps = src.diffusion.diffusion_steps;
  }
  opt.model.validate();
  DDPM_CHECK(opt.batch_size >= 1, "ddpm-profile: the batch size must be positive, got " << opt.batch_size);
  DDPM_CHECK(opt.sample_batch_size >= 0, "ddpm-profile: the sampling batch size must be >= 0, got "
                                             << opt.sample_batch_size);
  DDPM_CHECK(opt.diffusion_steps >= 1, "ddpm-profile: diffusion steps must be positive, got " << opt.diffusion_steps);
  DDPM_CHECK(opt.warmup_steps >= 0, "ddpm-profile: warm-up steps must be >= 0, got " << opt.warmup_steps);
  const unet::UNetConfig& mc = opt.model;
  const std::int64_t sample_batch = opt.sample_batch_size > 0 ? opt.sample_batch_size : opt.batch_size;

  DDPM_CHECK(!opt.text_cond || (mc.cross_attention() && opt.text.width == mc.context_dim),
             "ddpm-profile: a text-conditioned model needs the UNet's context_dim ("
                 << mc.context_dim << ") equal to the text encoder's width (" << opt.text.width << ")");
  if (opt.text_cond) opt.text.validate();
  DDPM_CHECK(!(opt.text_cond && mc.guidance_embedding),
             "ddpm-profile: " << opt.checkpoint << " is text-conditioned and guidance-embedded; profiling that "
                                                   "combination is not implemented");

  if (!net) {
    Generator init(opt.seed);
    net = std::make_unique<unet::UNet>(mc, init, opt.device);
    // The text encoder is drawn after the UNet, as ddpm-train draws them, and shares its slab.
    if (opt.text_cond) encoder = std::make_unique<text::TextEncoder>(opt.text, init, opt.device);
  }
  ProfileReport report;
  report.options = opt;
  NamedTensors params = net->named_parameters();
  if (encoder) {
    const NamedTensors more = encoder->named_parameters();
    params.insert(params.end(), more.begin(), more.end());
  }
  for (const auto& [name, t] : params) report.num_parameters += t.numel();
  ParameterSlab slab(params);

  // Synthetic captions: row i holds context_length pseudo-random ids (a multiplicative hash,
  // so rows differ); the encoder's cost depends only on the shape.
  auto token_ids = [&](std::int64_t n) {
    std::vector<std::int64_t> ids(static_cast<std::size_t>(n * opt.text.context_length));
    const auto V = static_cast<std::size_t>(opt.text.vocab_size);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int64_t>((i * 2654435761u) % V);
    return ids;
  };
  // One network call: the UNet, or tau_theta then the UNet reading its context (the order
  // of text_conditioned.h's denoiser).
  // A guidance-embedded network (a guided-distillation student) is called with w = 0.
  auto network = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y,
                     const nn::Context& ctx) {
    if (mc.guidance_embedding) return net->forward(x, t, y, std::vector<double>(t.size(), 0.0), ctx);
    if (!encoder) return net->forward(x, t, y, ctx);
    const Tensor context = encoder->forward(token_ids(x.dim(0)), x.dim(0), ctx);  // [N, L, width]
    return net->forward(x, t, y, context, ctx);
  };

  diffusion::DiffusionSchedule schedule(diffusion::linear_betas(opt.diffusion_steps));
  Generator dropout_gen(opt.seed + 1);
  diffusion::DenoiseFn model = [&](const Tensor& x, const std::vector<double>& t,
                                   const std::vector<std::int64_t>& y) {
    nn::Context ctx;
    ctx.training = true;
    ctx.gen = &dropout_gen;
    return network(x, t, y, ctx);
  };
  // One item: an image [H, W, C], or for a video model a clip [F, H, W, C].
  Shape item{mc.image_size, mc.image_size, mc.in_channels};
  if (mc.video()) item.insert(item.begin(), mc.num_frames);
  auto batch_of = [&item](std::int64_t n) {
    Shape s{n};
    s.insert(s.end(), item.begin(), item.end());
    return s;
  };
  auto labels_for = [&](std::int64_t n) {
    std::vector<std::int64_t> labels;
    for (std::int64_t i = 0; i < n && mc.num_classes > 0; ++i) labels.push_back(i % mc.num_classes);
    return labels;
  };
  // What the network takes beside x_t (forward_channels() - in_channels channels: a low-res
  // image, a first-frame condition, a level plane), synthetic like the data; the level plane
  // of a conditioning-augmented model is 0 (no augmentation). Undefined when there is none.
  auto condition_for = [&](std::int64_t n, Generator& gen) {
    const int extra = mc.forward_channels() - mc.in_channels, plane = mc.cond_augmented() ? 1 : 0;
    if (extra == 0) return Tensor();
    Shape s = batch_of(n);
    s.back() = extra - plane;
    Tensor c = randn(s, gen, opt.device);
    if (plane == 0) return c;
    s.back() = 1;
    return concat({c, Tensor::zeros(s, c.dtype(), opt.device)}, -1);
  };
  // Synthetic data: the step's cost does not depend on the values.
  train::BatchProvider batches = [&](std::int64_t, Generator& gen) {
    train::Batch b;
    b.x0 = randn(batch_of(opt.batch_size), gen, opt.device);
    b.labels = labels_for(opt.batch_size);
    b.cond = condition_for(opt.batch_size, gen);
    return b;
  };
  train::TrainerConfig tc;
  tc.loss.learned_sigma = mc.learn_sigma;
  tc.loss.loss = mc.learn_sigma ? diffusion::LossType::hybrid : diffusion::LossType::simple;
  tc.adamw.lr = 1e-4;
  tc.num_classes = mc.num_classes;
  tc.seed = opt.seed;
  train::Trainer trainer(slab, model, schedule, batches, tc);

  Generator sample_gen(opt.seed + 2);
  Tensor x_t = randn(batch_of(sample_batch), sample_gen, opt.device);
  if (const Tensor c = condition_for(sample_batch, sample_gen); c.defined()) x_t = concat({x_t, c}, -1);
  const std::vector<double> t_sample(static_cast<std::size_t>(sample_batch),
                                     static_cast<double>(opt.diffusion_steps - 1));
  const std::vector<std::int64_t> y_sample = labels_for(sample_batch);
  auto sampling_forward = [&] {
    NoGradGuard no_grad;
    nn::Context ctx;  // eval: no dropout
    Tensor out = network(x_t, t_sample, y_sample, ctx);
    (void)out;
  };

  for (int i = 0; i < opt.warmup_steps; ++i) {
    trainer.step();
    sampling_forward();
  }
  report.train = profile_region("train", opt.batch_size, opt.device, [&] { trainer.step(); });
  report.sample = profile_region("sample", sample_batch, opt.device, sampling_forward);
  return report;
}

std::string format_step(const StepProfile& s) {
  std::ostringstream o;
  const double total = s.result.total_ms;
  o << (s.name == "train" ? "training step" : "sampling step (one no-grad forward)") << ", batch " << s.batch
    << ": " << fmt("%.3f", total) << " ms\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-30s %6s %10s %8s %10s %9s %9s %9s\n", "op", "calls", "time ms", "share %",
                "GFLOP", "GB", "TFLOP/s", "GB/s");
  o << line;
  for (const OpSummary& op : s.ops) {
    std::snprintf(line, sizeof line, "%-30s %6lld %10.3f %8.2f %10.3f %9.4f %9s %9s\n", op.name.c_str(),
                  static_cast<long long>(op.calls), op.ms, total > 0 ? 100.0 * op.ms / total : 0.0, op.flops * 1e-9,
                  op.bytes * 1e-9, rate(op.flops, op.ms, 1e12).c_str(), rate(op.bytes, op.ms, 1e9).c_str());
    o << line;
  }
  std::snprintf(line, sizeof line, "%-30s %6s %10.3f %8.2f\n", "(outside ops)", "", s.outside_ms(),
                total > 0 ? 100.0 * s.outside_ms() / total : 0.0);
  o << line;
  if (s.result.counts_launches) {
    o << "launches: " << s.result.engine_kernels << " engine kernels + " << s.result.library_calls
      << " library calls (cuBLAS/cuDNN, each one or more kernels)\n";
  } else {
    o << "launches: not counted (CPU device)\n";
  }
  return o.str();
}

std::string format_report(const ProfileReport& r) {
  std::ostringstream o;
  const unet::UNetConfig& m = r.options.model;
  o << "ddpm-profile on " << r.options.device.str() << ": UNet " << m.image_size << "x" << m.image_size << "x"
    << m.in_channels << ", channels " << m.model_channels << ", mult " << join(m.channel_mult) << ", res blocks "
    << m.num_res_blocks << ", attention at " << join(m.attention_resolutions) << ", "
    << fmt("%.2f", static_cast<double>(r.num_parameters) * 1e-6) << "M parameters";
  if (r.options.text_cond) {
    const text::TextEncoderConfig& e = r.options.text;
    o << ", cross-attention (transformer depth " << m.transformer_depth << ") to a text encoder of width "
      << e.width << ", " << e.layers << " layers, " << e.heads << " heads, " << e.context_length << " tokens";
    if (m.context_pooled()) o << ", pooled into the timestep embedding (" << m.context_pool_heads << " heads)";
  }
  o << "\n";
  if (!r.options.checkpoint.empty()) o << "model: " << r.options.checkpoint << " (its weights; synthetic data)\n";
  if (m.video())
    o << "video: " << m.num_frames << " frames per clip (batches [B, F, H, W, C], temporal attention over F"
      << (m.temporal_conv ? ", kernel-3 temporal convolutions after every resnet" : "")
      << (m.temporal_position == "relative"
              ? ", relative positions up to distance " + std::to_string(m.relative_max_distance())
              : std::string())
      << ")\n";
  if (m.fourier())
    o << "input: x_t and VDM's Fourier features, n = " << m.fourier_features[0] << ".." << m.fourier_features[1]
      << " (sin and cos, computed on the host), so conv_in takes " << m.conv_in_channels() << " channels\n";
  if (r.options.device.is_cuda())
    o << "math: TF32 " << (allow_tf32() ? "on" : "off") << ", cuDNN algorithms by "
      << conv_algo_search_name(conv_algo_search()) << "\n";
  o << "times: the outermost op's (an op's backward includes the ops it calls); FLOP and byte counts are\n"
    << "estimates (ideal DRAM traffic: inputs read once, outputs written once)\n\n"
    << format_step(r.train) << "\n"
    << format_step(r.sample);
  return o.str();
}

std::string report_json(const ProfileReport& r) {
  std::ostringstream o;
  const unet::UNetConfig& m = r.options.model;
  o << "{\"device\": " << json_string(r.options.device.str());
  if (!r.options.checkpoint.empty()) o << ", \"checkpoint\": " << json_string(r.options.checkpoint);
  o << ", \"model\": {\"image_size\": " << m.image_size
    << ", \"num_channels\": " << m.model_channels << ", \"channel_mult\": [" << join(m.channel_mult)
    << "], \"num_res_blocks\": " << m.num_res_blocks << ", \"attention_resolutions\": ["
    << join(m.attention_resolutions) << "], \"num_heads\": " << m.num_heads
    << ", \"learn_sigma\": " << (m.learn_sigma ? "true" : "false")
    << ", \"use_scale_shift_norm\": " << (m.use_scale_shift_norm ? "true" : "false")
    << ", \"num_classes\": " << m.num_classes << ", \"context_dim\": " << m.context_dim
    << ", \"transformer_depth\": " << m.transformer_depth << ", \"context_pool_heads\": " << m.context_pool_heads
    << ", \"norm_groups\": " << m.norm_groups << ", \"num_frames\": " << m.num_frames << "}";
  if (r.options.text_cond) {
    const text::TextEncoderConfig& e = r.options.text;
    o << ", \"text_encoder\": {\"vocab_size\": " << e.vocab_size << ", \"context_length\": " << e.context_length
      << ", \"width\": " << e.width << ", \"layers\": " << e.layers << ", \"heads\": " << e.heads << "}";
  }
  o << ", \"parameters\": " << r.num_parameters
    << ", \"train\": " << step_json(r.train) << ", \"sample\": " << step_json(r.sample) << "}\n";
  return o.str();
}

// --- command line --------------------------------------------------------------------------

void add_profile_flags(CLI::App& app, ProfileFlags& f) {
  app.add_option("--image-size", f.image_size, "image height = width in pixels")->capture_default_str();
  app.add_option("--num-channels", f.num_channels, "channels of the first level (default: 128 on CUDA, 32 on the CPU)");
  app.add_option("--channel-mult", f.channel_mult,
                 "channel multiplier per level, comma-separated (default: 1,2,2,2 on CUDA, 1,2 on the CPU)");
  app.add_option("--num-res-blocks", f.num_res_blocks, "residual blocks per level (default: 2 on CUDA, 1 on the CPU)");
  app.add_option("--attention-resolutions", f.attention_resolutions,
                 "feature-map sizes with self-attention, comma-separated")
      ->capture_default_str();
  app.add_option("--num-heads", f.num_heads, "attention heads")->capture_default_str();
  app.add_option("--num-head-channels", f.num_head_channels, "channels per head (overrides --num-heads when > 0)")
      ->capture_default_str();
  app.add_option("--dropout", f.dropout, "dropout probability in the residual blocks")->capture_default_str();
  app.add_flag("--learn-sigma", f.learn_sigma, "learned variance (2C outputs, hybrid loss)");
  app.add_flag("--use-scale-shift-norm", f.use_scale_shift_norm, "AdaGN conditioning in the residual blocks");
  app.add_flag("--resblock-updown", f.resblock_updown, "BigGAN-style residual up/down-sampling");
  app.add_flag("--class-cond", f.class_cond, "class-conditional model (labels i mod --num-classes)");
  app.add_option("--num-classes", f.num_classes, "classes of a class-conditional model")->capture_default_str();
  app.add_option("--frames", f.frames,
                 "F >= 2: a video UNet (temporal attention after every resnet) on clips [B, F, H, W, C]; "
                 "0 = an image model")
      ->capture_default_str();
  add_text_cond_flags(app, f.text,
                      "text-conditional model as ddpm-train --text-cond: spatial transformers cross-attending to a "
                      "text encoder's output, on synthetic token ids",
                      "");
  app.add_option("--batch-size", f.batch_size, "training batch size (default: 128 on CUDA, 4 on the CPU)");
  app.add_option("--sample-batch-size", f.sample_batch_size, "sampling batch size (0: the training batch size)")
      ->capture_default_str();
  app.add_option("--diffusion-steps", f.diffusion_steps, "T of the linear noise schedule")->capture_default_str();
  app.add_option("--warmup", f.warmup, "untimed steps before the profiled ones")->capture_default_str();
  app.add_option("--norm-groups", f.norm_groups, "GroupNorm groups (must divide every level's channels)")
      ->capture_default_str();
  app.add_option("--checkpoint", f.checkpoint,
                 "profile a trained model as it is: a run or checkpoint folder, a model file with config.json, or a "
                 "diffusers folder (its network, weights, batch size and T; the model flags are then refused)");
  app.add_flag("--json", f.json, "print one JSON object instead of the tables");
}

namespace {
// The flags that shape the profiled network, refused with --checkpoint (SRC's network is profiled).
const std::vector<const char*> kProfileModelFlags = {
    "--image-size",    "--num-channels",    "--channel-mult",   "--num-res-blocks", "--attention-resolutions",
    "--num-heads",     "--num-head-channels", "--dropout",      "--learn-sigma",    "--use-scale-shift-norm",
    "--resblock-updown", "--class-cond",    "--num-classes",    "--frames",         "--norm-groups",
    "--text-cond",     "--context-length",  "--text-width",     "--text-layers",    "--text-heads",
    "--transformer-depth", "--diffusion-steps"};

// The run's training batch size from the config.json beside `checkpoint` (model_config_path),
// 0 when there is none (a diffusers folder, a model file without a "train" section).
std::int64_t run_batch_size(const std::string& checkpoint) {
  const std::string path = model_config_path(checkpoint);
  if (path.empty()) return 0;
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("train") || !j.at("train").is_object()) return 0;
  const nlohmann::json& b = j.at("train").value("batch_size", nlohmann::json());
  return b.is_number_integer() && b.get<std::int64_t>() > 0 ? b.get<std::int64_t>() : 0;
}
}  // namespace

void note_profile_flags(const CLI::App& app, ProfileFlags& f) {
  f.model_flags_given.clear();
  for (const char* flag : kProfileModelFlags) {
    const CLI::Option* opt = app.get_option_no_throw(flag);
    if (opt != nullptr && opt->count() > 0) f.model_flags_given.push_back(flag);
  }
  if (f.text.pooling_given) f.model_flags_given.push_back(f.text.pooling ? "--text-pooling" : "--no-text-pooling");
}

ProfileOptions resolve_profile_options(const ProfileFlags& f, Device device, std::uint64_t seed) {
  const bool cuda = device.is_cuda();
  ProfileOptions o;
  o.device = device;
  o.seed = seed;
  DDPM_CHECK(f.batch_size == -1 || f.batch_size > 0, "--batch-size must be positive, got " << f.batch_size);
  DDPM_CHECK(f.sample_batch_size >= 0, "--sample-batch-size must be >= 0, got " << f.sample_batch_size);
  DDPM_CHECK(f.warmup >= 0, "--warmup must be >= 0, got " << f.warmup);
  o.sample_batch_size = f.sample_batch_size;
  o.warmup_steps = f.warmup;
  if (!f.checkpoint.empty()) {  // the network, its T and the run's batch size come from SRC (profile_model)
    DDPM_CHECK(f.model_flags_given.empty(), f.model_flags_given.front()
                                                << " shapes the profiled network, but --checkpoint " << f.checkpoint
                                                << " supplies it; drop " << f.model_flags_given.front());
    o.checkpoint = f.checkpoint;
    const std::int64_t run_batch = run_batch_size(f.checkpoint);
    o.batch_size = f.batch_size > 0 ? f.batch_size : run_batch > 0 ? run_batch : (cuda ? 128 : 4);
    return o;
  }
  unet::UNetConfig& m = o.model;
  m = unet::UNetConfig::ddpm_cifar10();
  m.image_size = f.image_size;
  m.model_channels = f.num_channels > 0 ? f.num_channels : (cuda ? 128 : 32);
  DDPM_CHECK(f.num_channels == -1 || f.num_channels > 0, "--num-channels must be positive, got " << f.num_channels);
  m.channel_mult = f.channel_mult.empty() ? (cuda ? std::vector<int>{1, 2, 2, 2} : std::vector<int>{1, 2})
                                          : parse_int_list("--channel-mult", f.channel_mult);
  DDPM_CHECK(f.num_res_blocks == -1 || f.num_res_blocks > 0,
             "--num-res-blocks must be positive, got " << f.num_res_blocks);
  m.num_res_blocks = f.num_res_blocks > 0 ? f.num_res_blocks : (cuda ? 2 : 1);
  m.attention_resolutions = f.attention_resolutions.empty()
                                ? std::vector<int>{}
                                : parse_int_list("--attention-resolutions", f.attention_resolutions);
  DDPM_CHECK(f.num_heads >= 1, "--num-heads must be positive, got " << f.num_heads);
  m.num_heads = f.num_heads;
  m.num_head_channels = f.num_head_channels;
  DDPM_CHECK(f.dropout >= 0 && f.dropout < 1, "--dropout must be in [0, 1), got " << f.dropout);
  m.dropout = f.dropout;
  m.learn_sigma = f.learn_sigma;
  m.use_scale_shift_norm = f.use_scale_shift_norm;
  m.resblock_updown = f.resblock_updown;
  DDPM_CHECK(!f.class_cond || f.num_classes >= 1, "--num-classes must be positive, got " << f.num_classes);
  m.num_classes = f.class_cond ? f.num_classes : 0;
  DDPM_CHECK(f.frames == 0 || f.frames >= 2, "--frames must be 0 (an image model) or at least 2 (frames per clip), got "
                                                  << f.frames);
  m.num_frames = f.frames;
  DDPM_CHECK(f.norm_groups >= 1, "--norm-groups must be positive, got " << f.norm_groups);
  m.norm_groups = f.norm_groups;
  check_text_cond_flags(f.text, f.class_cond, m.attention_resolutions.empty());  // as ddpm-train checks them
  if (f.text.enabled) {
    o.text_cond = true;
    o.text.vocab_size = kProfileVocabSize;
    o.text.context_length = f.text.context_length;
    o.text.width = f.text.width;
    o.text.layers = f.text.layers;
    o.text.heads = f.text.heads;
    m.context_dim = f.text.width;
    m.transformer_depth = f.text.transformer_depth;
    m.context_pool_heads = f.text.context_pool_heads();
  }
  m.validate();
  o.batch_size = f.batch_size > 0 ? f.batch_size : (cuda ? 128 : 4);
  DDPM_CHECK(f.diffusion_steps >= 1, "--diffusion-steps must be positive, got " << f.diffusion_steps);
  o.diffusion_steps = f.diffusion_steps;
  return o;
}

void profile_main(const ProfileFlags& flags, Device device, std::uint64_t seed, std::ostream& out) {
  ProfileOptions options = resolve_profile_options(flags, device, seed);
  ProfileReport report = profile_model(options);
  out << (flags.json ? report_json(report) : format_report(report));
}

}  // namespace ddpm::run
