// models/run/cascade_run.cpp: ddpm-sample --low-res-from (see cascade_run.h).
#include "models/run/cascade_run.h"

#include <cmath>
#include <filesystem>
#include <memory>
#include <ostream>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/autoguide_run.h"
#include "models/run/edm_options.h"
#include "models/run/latent_run.h"
#include "models/run/super_res_run.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

constexpr const char* kBaseFolder = "base";           // OUT/base: the base stage's folder
constexpr const char* kStageFolder = ".super_res_stage";  // the SR stage's folder, emptied into OUT

// "16x16 images with 3 channel(s)", the images a model makes (decoded pixels for a latent one).
struct PixelShape {
  int size = 0, channels = 0;
};
PixelShape pixel_shape(const ModelSource& m, const LatentCodec* latent) {
  const unet::UNetConfig& c = m.net->config();
  if (!latent) return {c.image_size, c.in_channels};
  return {c.image_size * latent->factor(), latent->config().in_channels};
}

}  // namespace

void add_cascade_flags(CLI::App& app, SampleOptions& o) {
  app.add_option("--low-res-from", o.low_res_from,
                 "super-resolution models: sample this base model (run, checkpoint or export) first and upsample its "
                 "samples, in one call; OUT/base/ holds the base's samples as ddpm-sample writes them");
  app.add_option("--base-sampler", o.base_sampler, "with --low-res-from: the base stage's sampler (default: --sampler)")
      ->check(CLI::IsMember(
          {"ddpm", "ddim", "heun", "euler", "dpm++2m", "euler-ancestral", "unipc", "dpm++2m-sde", "plms"}));
  app.add_option("--base-sampling-steps", o.base_sampling_steps,
                 "with --low-res-from: the base stage's --sampling-steps (default: --sampling-steps)");
  app.add_option("--base-guidance-scale", o.base_guidance_scale,
                 "with --low-res-from: the base stage's classifier-free guidance scale (default 1: none; "
                 "--guidance-scale is the super-resolution stage's)");
  app.add_option_function<std::uint64_t>(
      "--base-seed", [&o](const std::uint64_t& seed) { o.base_seed = seed; },
      "with --low-res-from: the base stage's seed (default: --seed)");
}

void check_cascade_flags(const SampleOptions& o) {
  const SampleOptions defaults;
  if (o.low_res_from.empty()) {
    const char* given = !o.base_sampler.empty()                              ? "--base-sampler"
                        : o.base_sampling_steps != defaults.base_sampling_steps ? "--base-sampling-steps"
                        : o.base_guidance_scale != defaults.base_guidance_scale ? "--base-guidance-scale"
                        : o.base_seed                                           ? "--base-seed"
                                                                                : nullptr;
    DDPM_CHECK(!given, given << " sets the base stage of a cascade; it needs --low-res-from BASE");
    return;
  }
  DDPM_CHECK(o.low_res.empty(), "--low-res " << o.low_res << " and --low-res-from " << o.low_res_from
                                             << " both give the low-res images: give the images (--low-res) or the "
                                                "base model that samples them (--low-res-from), not both");
  DDPM_CHECK(o.base_sampling_steps >= -1,
             "--base-sampling-steps must be >= 0 (0 = all of the base's steps), got " << o.base_sampling_steps);
  DDPM_CHECK(std::isfinite(o.base_guidance_scale) && o.base_guidance_scale >= 0,
             "--base-guidance-scale must be >= 0, got " << o.base_guidance_scale);
  if (!o.base_sampler.empty() && !is_karras_sampler(o.base_sampler) && o.base_sampler != "plms") {
    try {
      diffusion::parse_sampler_kind(o.base_sampler);
    } catch (const ValueError& e) {
      DDPM_THROW(ValueError, "--base-sampler " << o.base_sampler << ": " << strip_source_locations(e.what()));
    }
  }
}

SampleOptions base_stage_options(const SampleOptions& o, const ModelSource& base) {
  SampleOptions b;  // every flag not named here keeps ddpm-sample's default
  b.checkpoint = o.low_res_from;
  b.use_ema = o.use_ema;
  b.num_samples = o.num_samples;
  b.num_samples_given = o.num_samples_given;
  b.batch_size = o.batch_size;
  b.sampler = o.base_sampler.empty() ? o.sampler : o.base_sampler;
  b.sampler_defaulted = o.base_sampler.empty() && o.sampler_defaulted;
  b.sampling_steps = o.base_sampling_steps >= 0 ? o.base_sampling_steps : o.sampling_steps;
  b.guidance_scale = o.base_guidance_scale;
  b.class_label = base.net->config().num_classes > 0 ? o.class_label : -1;  // unconditional: check_cascade_fits
  b.seed = o.base_seed.value_or(o.seed);
  b.device = o.device;
  b.show_steps = o.show_steps;
  return b;
}

SampleOptions super_res_stage_options(const SampleOptions& o, const ModelSource& super_res) {
  SampleOptions s = o;
  const SampleOptions defaults;
  s.low_res_from.clear();
  s.base_sampler = defaults.base_sampler;
  s.base_sampling_steps = defaults.base_sampling_steps;
  s.base_guidance_scale = defaults.base_guidance_scale;
  s.base_seed.reset();
  s.num_samples_given = false;  // N = the base's samples, all of them
  if (super_res.net->config().num_classes == 0) s.class_label = -1;  // --class went to the base
  return s;
}

void check_cascade_fits(const SampleOptions& o, const ModelSource& super_res, const ModelSource& base,
                        const LatentCodec* base_latent) {
  const unet::UNetConfig& sr = super_res.net->config();
  const unet::UNetConfig& b = base.net->config();
  const std::string sr_name = "--checkpoint " + o.checkpoint, base_name = "--low-res-from " + o.low_res_from;
  DDPM_CHECK(sr.super_res(), "--low-res-from " << o.low_res_from << " applies to super-resolution models only, and "
                                               << sr_name << " is not one (train one with ddpm-train --super-res LOW)");
  DDPM_CHECK(!super_res.text && !base.text,
             (base.text ? base_name : sr_name)
                 << " is text-conditioned (ddpm-train --text-cond): a cascade does not pass prompts between its "
                    "stages yet; sample the text model alone with ddpm-sample --prompt");
  DDPM_CHECK(!b.super_res(), base_name << " is itself a super-resolution model (" << b.low_res_size << "x"
                                       << b.low_res_size << " -> " << b.image_size << "x" << b.image_size
                                       << ") and needs low-res images of its own: sample it with --low-res, then "
                                          "give its samples.npz to "
                                       << sr_name << " with --low-res");
  const PixelShape p = pixel_shape(base, base_latent);
  DDPM_CHECK(p.size == sr.low_res_size && p.channels == sr.in_channels,
             base_name << " makes " << p.size << "x" << p.size << " images with " << p.channels << " channel(s); "
                       << sr_name << " upsamples " << sr.low_res_size << "x" << sr.low_res_size << " images with "
                       << sr.in_channels << " channel(s)");
  DDPM_CHECK(sr.num_classes == 0 || b.num_classes == sr.num_classes,
             sr_name << " has " << sr.num_classes << " classes and takes each sample's class from its base sample; "
                     << base_name << " has " << b.num_classes
                     << " (0 = unconditional): both must be conditioned on the same classes");
  DDPM_CHECK(o.class_label < 0 || b.num_classes > 0,
             "--class " << o.class_label << " needs a class-conditional base model, and " << base_name
                        << " is unconditional");
}

SampleResult run_cascade(const SampleOptions& o, std::ostream* log) {
  check_sample_options(o);
  const ModelSource super_res = open_model(o.checkpoint, o.device, o.use_ema);
  const ModelSource base = open_model(o.low_res_from, o.device, o.use_ema);
  refuse_vdm_or_ict_model(super_res, o.checkpoint, "a cascade (--checkpoint)");
  refuse_video_model(super_res, o.checkpoint, "a cascade (--checkpoint)");
  refuse_vdm_or_ict_model(base, o.low_res_from, "a cascade (--low-res-from)");
  refuse_video_model(base, o.low_res_from, "a cascade (--low-res-from)");
  std::unique_ptr<LatentCodec> latent;  // a latent base model's autoencoder
  if (const std::string ae = find_run_autoencoder(o.low_res_from); !ae.empty())
    latent = std::make_unique<LatentCodec>(ae, o.device);
  ModelSource guide;
  if (!o.autoguide.empty()) {
    guide = open_model(o.autoguide, o.device, o.use_ema);
    refuse_vdm_or_ict_model(guide, o.autoguide, "a cascade (--autoguide)");
  }
  if (log)
    *log << "cascade: base " << o.low_res_from << " (" << base.kind << ", " << base.net->num_parameters()
         << " parameters" << (latent ? ", latent" : "") << "), super-resolution " << o.checkpoint << " ("
         << super_res.kind << ", " << super_res.net->num_parameters() << " parameters)\n";
  return run_cascade(o, super_res, base, log, latent.get(), o.autoguide.empty() ? nullptr : &guide);
}

SampleResult run_cascade(const SampleOptions& o, const ModelSource& super_res, const ModelSource& base,
                         std::ostream* log, const LatentCodec* base_latent, const ModelSource* guide) {
  check_sample_options(o);
  DDPM_CHECK(!o.low_res_from.empty(), "run_cascade needs --low-res-from BASE");
  const SampleOptions base_o = base_stage_options(o, base);
  const SampleOptions sr_o = super_res_stage_options(o, super_res);
  // Everything either stage would refuse, before the base samples anything.
  check_cascade_fits(o, super_res, base, base_latent);
  check_low_res_flags(sr_o, super_res.net->config(), o.low_res_from);
  try {
    make_sampler_config(resolve_sampler_for_model(base_o, base), base, base_latent != nullptr);
  } catch (const ValueError& e) {  // the flags it names are the base stage's (--base-*, or the shared ones)
    DDPM_THROW(ValueError, "the base stage (--low-res-from " << o.low_res_from
                                                             << "; --base-* flags, else the main ones): "
                                                             << strip_source_locations(e.what()));
  }
  make_sampler_config(resolve_sampler_for_model(sr_o, super_res), super_res);
  DDPM_CHECK(o.autoguide.empty() || guide, "run_cascade: --autoguide " << o.autoguide << " was not opened");
  if (guide) check_autoguide_fits(super_res, *guide, o.autoguide, o.low_res_noise_level);

  SampleResult result;
  std::vector<std::string> files;
  auto fill = [&](const std::string& tmp) {
    const fs::path dir(tmp);
    // 1. The base stage: a plain ddpm-sample of BASE into OUT/base.
    SampleOptions b = base_o;
    b.out = (dir / kBaseFolder).string();
    if (log) *log << "cascade: sampling the base model " << o.low_res_from << "\n";
    const SampleResult base_result = run_sample(b, base, log, base_latent);
    // 2. The SR stage: --low-res OUT/base/samples.npz, into a folder whose contents then move up.
    SampleOptions s = sr_o;
    s.low_res = (dir / kBaseFolder / "samples.npz").string();
    s.out = (dir / kStageFolder).string();
    if (log) *log << "cascade: upsampling with " << o.checkpoint << "\n";
    result = run_sample(s, super_res, log, nullptr, guide);
    for (const auto& entry : fs::directory_iterator(s.out)) fs::rename(entry.path(), dir / entry.path().filename());
    fs::remove(s.out);
    // 3. sample_info.json: the final path of the low-res images, and the base stage's record.
    const fs::path info_path = dir / "sample_info.json";
    nlohmann::json info = nlohmann::json::parse(read_file(info_path.string()));
    info["low_res"]["path"] = (fs::path(o.out) / kBaseFolder / "samples.npz").string();
    info["cascade"] = {{"base", o.low_res_from},
                       {"folder", kBaseFolder},
                       {"base_stage", nlohmann::json::parse(read_file((dir / kBaseFolder / "sample_info.json").string()))}};
    write_file_atomic(info_path.string(), info.dump(2) + "\n");
    for (const std::string& f : base_result.files) files.push_back(std::string(kBaseFolder) + "/" + f);
    files.insert(files.end(), result.files.begin(), result.files.end());
  };
  publish_directory(o.out, fill, o.overwrite ? IfExists::replace : IfExists::fail);
  result.out_dir = o.out;
  result.files = files;
  if (log) *log << "cascade: wrote " << files.size() << " files to " << o.out << " (base stage in " << o.out << "/"
                << kBaseFolder << ")\n";
  return result;
}

}  // namespace ddpm::run
