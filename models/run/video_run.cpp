// models/run/video_run.cpp: see video_run.h.
#include "models/run/video_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <ostream>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/io/atomic_file.h"
#include "engine/rng.h"
#include "models/diffusion/guidance.h"
#include "models/diffusion/super_res.h"
#include "models/run/latent_run.h"
#include "models/unet/unet.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFirstFramesFolder = "first_frames";  // OUT/first_frames: the image stage
constexpr const char* kVideoStageFolder = ".video_stage";   // the video stage, emptied into OUT

}  // namespace

void add_video_flags(CLI::App& app, SampleOptions& o) {
  app.add_option("--frames", o.frames,
                 "a video model: sample clips of F >= 2 frames, e.g. longer than the model was trained on (length "
                 "extrapolation; quality beyond the trained length is not guaranteed); default: its num_frames");
  app.add_option("--first-frame", o.first_frame,
                 "a first-frame-conditioned video model: the frame each clip starts from, one PNG (every clip) or "
                 "an .npz with arr_0 uint8 [M, H, W, C] (clip i from image i; N defaults to M; labels from arr_1)");
  app.add_option("--segments", o.segments,
                 "a first-frame-conditioned video model (or any video model with --reconstruction-guidance): "
                 "continue each clip S-1 times, each segment starting from the last --overlap frames so far "
                 "(F + (S-1)(F-K') frames)")
      ->capture_default_str();
  app.add_option("--reconstruction-guidance", o.reconstruction_guidance,
                 "with --segments on a video model WITHOUT first-frame conditioning: guide each new segment to "
                 "continue the last --overlap frames with weight W (Ho et al. 2022 eq. 7; 2 is theirs; 0 = their "
                 "replacement method alone; ddpm or ddim sampler; a network backward per step)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--overlap", o.overlap,
                 "with --segments: the known frames K' each segment is conditioned on, at most the model's "
                 "condition_frames (ddpm-train --condition-frames); default: that value");
  app.add_option("--frame-guidance-scale", o.frame_guidance_scale,
                 "a first-frame-conditioned video model trained with --frame-condition-dropout: classifier-free "
                 "guidance on the known frames, e(null) + S (e(c) - e(null)); with --guidance-scale on a class/text "
                 "model the two-scale form of InstructPix2Pix (1 = none)")
      ->capture_default_str();
  app.add_option("--first-frame-from", o.first_frame_from,
                 "a first-frame-conditioned video model: sample this image model first (same flags) into "
                 "OUT/first_frames, then animate its samples (Emu Video's factorised generation)");
}

void check_video_flags(const SampleOptions& o) {
  DDPM_CHECK(o.frames == -1 || o.frames >= 2,
             "--frames must be at least 2 (frames per sampled clip), got " << o.frames);
  DDPM_CHECK(o.segments >= 1, "--segments must be at least 1, got " << o.segments);
  DDPM_CHECK(o.overlap >= 0, "--overlap must be at least 1 (a known frame per segment), got " << o.overlap);
  DDPM_CHECK(o.overlap == 0 || o.segments > 1,
             "--overlap " << o.overlap << " sets how segments join and needs --segments 2 or more");
  DDPM_CHECK(std::isfinite(o.reconstruction_guidance) && (o.reconstruction_guidance >= 0 || o.reconstruction_guidance == -1),
             "--reconstruction-guidance must be >= 0, got " << o.reconstruction_guidance);
  DDPM_CHECK(!reconstruction_guided(o) || o.segments > 1,
             "--reconstruction-guidance " << o.reconstruction_guidance
                                          << " guides the segments after the first and needs --segments 2 or more");
  const double s_i = o.frame_guidance_scale;
  DDPM_CHECK(std::isfinite(s_i) && s_i >= 0, "--frame-guidance-scale must be a finite number >= 0 (1 = none), got " << s_i);
  if (s_i != 1) {
    DDPM_CHECK(!reconstruction_guided(o),
               "--frame-guidance-scale " << s_i << " guides a first-frame-conditioned model through its condition; "
                                            "--reconstruction-guidance guides an unconditional one: choose one");
    DDPM_CHECK(o.guidance_interval.empty(),
               "--guidance-interval " << o.guidance_interval << " is not supported with --frame-guidance-scale "
                                      << s_i << " (the frame guidance is formed without the step's noise level)");
    DDPM_CHECK(o.sampler != "consistency",
               "--frame-guidance-scale " << s_i << " does not apply with --sampler consistency: a consistency "
                                            "function is not a denoiser that guidance could shift");
  }
  DDPM_CHECK(o.first_frame.empty() || o.first_frame_from.empty(),
             "--first-frame " << o.first_frame << " and --first-frame-from " << o.first_frame_from
                              << " both give the first frames; choose one");
}

void check_video_sample(const SampleOptions& o, const unet::UNetConfig& model, bool /*latent: sampled like a pixel video model*/) {
  if (model.num_frames == 0) {
    DDPM_CHECK(o.frames == -1, "--frames " << o.frames << " sets the clip length of a video model; " << o.checkpoint
                                           << " is an image model");
    DDPM_CHECK(o.segments == 1, "--segments applies to a first-frame-conditioned video model; " << o.checkpoint
                                                                                               << " is an image model");
    DDPM_CHECK(o.first_frame.empty() && o.first_frame_from.empty(),
               (o.first_frame.empty() ? "--first-frame-from" : "--first-frame")
                   << " applies to a first-frame-conditioned video model; " << o.checkpoint << " is an image model");
    DDPM_CHECK(o.frame_guidance_scale == 1, "--frame-guidance-scale " << o.frame_guidance_scale
                                                                      << " applies to a first-frame-conditioned video "
                                                                         "model; "
                                                                      << o.checkpoint << " is an image model");
    return;
  }
  if (o.frame_guidance_scale != 1) {
    const double s_i = o.frame_guidance_scale;
    DDPM_CHECK(model.first_frame_condition,
               "--frame-guidance-scale " << s_i << " guides a first-frame-conditioned video model (ddpm-train "
                                            "--first-frame-condition); "
                                         << o.checkpoint << " is not conditioned on frames");
    DDPM_CHECK(!model.guidance_embedding,
               "--frame-guidance-scale " << s_i << " does not apply to " << o.checkpoint
                                         << ": it is guidance-distilled (one prediction per step)");
    const double p = recorded_frame_condition_dropout(o.checkpoint);
    DDPM_CHECK(p > 0, "--frame-guidance-scale " << s_i << " needs the null condition, and "
                                                << o.checkpoint
                                                << " was trained without it (its config.json records "
                                                   "frame_condition_dropout 0): train with ddpm-train "
                                                   "--frame-condition-dropout P (e.g. 0.1)");
  }
  const std::pair<bool, const char*> refused[] = {
      {!o.inpaint_image.empty(), "--inpaint (RePaint's mask is one image)"},
      {!o.low_res.empty() || !o.low_res_from.empty(), "--low-res / --low-res-from (super-resolution)"},
      {!o.control.empty(), "--control (a ControlNet of an image model)"},
      {!o.classifier.empty(), "--classifier (a noisy image classifier)"},
      {o.show_steps, "--show-steps"},
      {!o.autoguide.empty(), "--autoguide"}};
  for (const auto& [given, flag] : refused)
    DDPM_CHECK(!given, flag << " does not apply to " << o.checkpoint << ": it is a video model (" << model.num_frames
                            << " frames per clip)");
  DDPM_CHECK(o.segments == 1 || model.first_frame_condition || reconstruction_guided(o),
             "--segments " << o.segments << " continues clips from their last frames, which needs a "
                                            "first-frame-conditioned video model (ddpm-train --first-frame-condition) "
                                            "or --reconstruction-guidance W; "
                           << o.checkpoint << " is not conditioned");
  DDPM_CHECK(!reconstruction_guided(o) || !model.first_frame_condition,
             "--reconstruction-guidance guides an unconditional video model; " << o.checkpoint
                 << " is conditioned on its first frames: --segments continues its clips through that condition");
  if (reconstruction_guided(o)) {
    DDPM_CHECK(o.sampler == "ddpm" || o.sampler == "ddim",
               "--reconstruction-guidance steps with the guided x_0 estimate of the ddpm and ddim samplers; got "
               "--sampler "
                   << o.sampler);
  }
  if (model.first_frame_condition) {
    // Both bounds name the model's value: K' <= condition_frames <= F - 1 (unet.h).
    DDPM_CHECK(o.overlap <= model.condition_frames && o.overlap < model.num_frames,
               "--overlap " << o.overlap << " exceeds the known frames " << o.checkpoint
                            << " was trained to take: its condition_frames is " << model.condition_frames << " (of "
                            << model.num_frames << " frames per clip; ddpm-train --condition-frames)");
    DDPM_CHECK(!o.first_frame.empty() || !o.first_frame_from.empty(),
               o.checkpoint << " is a first-frame-conditioned video model: give the frames its clips start from with "
                               "--first-frame IMAGE.png|SAMPLES.npz, or an image model to make them with "
                               "--first-frame-from IMAGE_MODEL");
  } else {
    DDPM_CHECK(o.first_frame.empty() && o.first_frame_from.empty(),
               (o.first_frame.empty() ? "--first-frame-from" : "--first-frame")
                   << " applies to a first-frame-conditioned video model (ddpm-train --first-frame-condition); "
                   << o.checkpoint << " generates whole clips");
  }
  // A segment of F frames continues from K' known ones, so at least one must be new.
  const std::int64_t F = video_clip_frames(o, model);
  DDPM_CHECK(o.segments == 1 || video_overlap(o, model) < F,
             "--overlap " << video_overlap(o, model) << (o.overlap > 0 ? "" : " (the default)")
                          << " leaves no new frame in a segment of " << F << " frames ("
                          << (o.frames == -1 ? "the trained num_frames of " + o.checkpoint
                                             : "--frames " + std::to_string(o.frames))
                          << "); give more --frames or a smaller --overlap");
}

bool load_first_frames_for(const SampleOptions& o, const unet::UNetConfig& model, FirstFrames& frames,
                           std::ostream* log, const LatentCodec* latent) {
  frames = FirstFrames{};
  if (!model.first_frame_condition || o.first_frame.empty()) return false;
  // The frames are pixels of the written size: the autoencoder's for a latent model.
  const int H = latent ? model.image_size * latent->factor() : model.image_size;
  const int C = latent ? latent->config().in_channels : model.in_channels;
  frames.images = read_image_stack(o.first_frame, "--first-frame", H, C, "animates");
  Tensor x = pixels_to_unit(frames.images.pixels, frames.images.count, H, C);  // [M, H, W, C]
  if (latent && o.first_frame_latents.defined()) {
    const Tensor& z = o.first_frame_latents;  // the image stage's latents [M, h, w, z], as sampled
    DDPM_CHECK(z.ndim() == 4 && z.dim(0) == frames.images.count && z.dim(1) == model.image_size &&
                   z.dim(3) == model.in_channels,
               "the image stage's latents " << shape_str(z.shape()) << " are not " << frames.images.count
                                            << " latent frames of " << model.image_size << "x" << model.image_size
                                            << "x" << model.in_channels);
    x = z;
  } else if (latent) {
    x = latent->encode_mean(x);  // [M, h, w, z]: the posterior means, no draw
  }
  const int F = static_cast<int>(video_clip_frames(o, model));  // the condition spans the sampled clip
  frames.cond = unet::first_frame_condition(x.to(Device::cpu()), F);
  if (log)
    *log << "video: " << frames.images.count << " first frame(s) " << H << "x" << H << " from " << o.first_frame
         << (latent ? (o.first_frame_latents.defined() ? " (the image stage's latents)" : " (encoded)") : "") << ", "
         << F << " frames per clip\n";
  return true;
}

std::int64_t first_frame_num_samples(const SampleOptions& o, const FirstFrames& frames) {
  const std::int64_t m = frames.images.count;
  if (m == 1) return o.num_samples;  // one PNG: every clip starts from it
  if (!o.num_samples_given) return m;
  DDPM_CHECK(o.num_samples <= m, "--num-samples " << o.num_samples << " exceeds the " << m
                                                  << " first frame(s) of --first-frame " << frames.images.path);
  return o.num_samples;
}

bool take_first_frame_labels(const SampleOptions& o, const unet::UNetConfig& model, const FirstFrames& frames,
                             std::int64_t n, std::vector<std::int64_t>& labels) {
  const std::vector<std::int64_t>& from = frames.images.labels;
  if (model.num_classes == 0 || o.class_label >= 0 || from.empty()) return false;
  labels.assign(from.begin(), from.begin() + n);
  for (std::int64_t y : labels)
    DDPM_CHECK(y >= 0 && y < model.num_classes, "--first-frame " << frames.images.path << ": label " << y
                                                                  << " (arr_1) is outside [0, " << model.num_classes
                                                                  << ") of the model's classes");
  return true;
}

nlohmann::json video_info(const SampleOptions& o, const unet::UNetConfig& model, const FirstFrames& frames,
                          std::int64_t n) {
  nlohmann::json j{{"frames", video_clip_frames(o, model)},  // per segment: --frames, or the trained length
                   {"trained_frames", model.num_frames},
                   {"first_frame_condition", model.first_frame_condition},
                   {"segments", o.segments},
                   {"overlap", o.segments > 1 ? nlohmann::json(video_overlap(o, model)) : nlohmann::json(nullptr)},
                   {"frames_per_clip", video_output_frames(o, model)},
                   {"reconstruction_guidance",
                    reconstruction_guided(o) ? nlohmann::json(o.reconstruction_guidance) : nlohmann::json(nullptr)},
                   {"frame_guidance_scale", o.frame_guidance_scale}};
  j["first_frame"] = frames.cond.defined()
                         ? nlohmann::json{{"path", o.first_frame}, {"images", frames.images.count}, {"clips", n}}
                         : nlohmann::json(nullptr);
  return j;
}

Tensor first_frame_condition_of(const Tensor& x0, int num_frames) {
  DDPM_CHECK(x0.defined() && x0.ndim() == 5 && x0.dim(1) == num_frames,
             "first_frame_condition_of: x_0 must be clips [N, " << num_frames << ", H, W, C], got "
                                                                << (x0.defined() ? shape_str(x0.shape()) : "none"));
  const Tensor frame0 = slice(x0, 1, 0, 1).reshape({x0.dim(0), x0.dim(2), x0.dim(3), x0.dim(4)});
  return unet::first_frame_condition(frame0, num_frames);
}

Tensor known_frames_condition(const Tensor& x0, const std::vector<int>& known) {
  DDPM_CHECK(x0.defined() && x0.ndim() == 5 && static_cast<std::int64_t>(known.size()) == x0.dim(0),
             "known_frames_condition: x_0 must be clips [N, F, H, W, C] with one known-frame count per clip, got "
                 << (x0.defined() ? shape_str(x0.shape()) : "none") << " and " << known.size() << " counts");
  const int F = static_cast<int>(x0.dim(1));
  std::vector<Tensor> clips;
  clips.reserve(known.size());
  for (std::size_t i = 0; i < known.size(); ++i) {
    const Tensor clip = slice(x0, 0, static_cast<std::int64_t>(i), 1);     // [1, F, H, W, C]
    clips.push_back(unet::frames_condition(slice(clip, 1, 0, known[i]), F));  // [1, F, H, W, C + 1]
  }
  return concat(clips, 0);  // [N, F, H, W, C + 1]
}

std::vector<int> draw_known_frames(std::int64_t n, int max_known, Generator& gen) {
  DDPM_CHECK(n >= 1 && max_known >= 1,
             "draw_known_frames: need at least one clip and one known frame, got " << n << " and " << max_known);
  if (max_known == 1) return std::vector<int>(static_cast<std::size_t>(n), 1);
  const std::vector<float> u = ddpm::rand({n}, gen).to_vector();  // u ~ U[0, 1)
  std::vector<int> k(u.size());
  for (std::size_t i = 0; i < u.size(); ++i)  // k = 1 + floor(u K), in 1..K (min guards u rounding up to 1)
    k[i] = 1 + std::min(max_known - 1, static_cast<int>(static_cast<double>(u[i]) * max_known));
  return k;
}

std::vector<bool> draw_condition_dropout(std::int64_t n, double p, Generator& gen) {
  DDPM_CHECK(std::isfinite(p) && p >= 0 && p < 1,
             "--frame-condition-dropout must be a probability in [0, 1), got " << p);
  std::vector<bool> dropped(static_cast<std::size_t>(n), false);
  if (p == 0) return dropped;  // no draw: a run without dropout keeps its stream
  const std::vector<double> u = ddpm::rand({n}, gen, Device::cpu(), DType::f64).to_double_vector();  // U[0, 1)
  for (std::size_t i = 0; i < u.size(); ++i) dropped[i] = u[i] < p;
  return dropped;
}

Tensor drop_conditions(const Tensor& cond, const std::vector<bool>& dropped) {
  DDPM_CHECK(cond.defined() && cond.ndim() >= 1 && static_cast<std::int64_t>(dropped.size()) == cond.dim(0),
             "drop_conditions: one decision per condition row, got " << dropped.size() << " for "
                                                                     << (cond.defined() ? shape_str(cond.shape()) : "none"));
  if (std::find(dropped.begin(), dropped.end(), true) == dropped.end()) return cond;
  std::vector<Tensor> rows;
  rows.reserve(dropped.size());
  for (std::size_t i = 0; i < dropped.size(); ++i) {
    Tensor row = slice(cond, 0, static_cast<std::int64_t>(i), 1);
    rows.push_back(dropped[i] ? Tensor::zeros(row.shape(), row.dtype(), row.device()) : row);  // the null condition
  }
  return concat(rows, 0);
}

Tensor training_frames_condition(const Tensor& x0, const unet::UNetConfig& model, Generator& gen, double dropout) {
  const Tensor cond = model.condition_frames <= 1
                          ? first_frame_condition_of(x0, model.num_frames)
                          : known_frames_condition(x0, draw_known_frames(x0.dim(0), model.condition_frames, gen));
  return drop_conditions(cond, draw_condition_dropout(x0.dim(0), dropout, gen));  // after k: the documented order
}

FrameGuidance take_frame_guidance(const SampleOptions& o, diffusion::SamplerConfig& sc) {
  FrameGuidance g;
  if (o.frame_guidance_scale == 1) return g;
  g.scale = o.frame_guidance_scale;
  g.label_scale = sc.guidance_scale;  // S_T: formed here, in the same batched call
  g.rescale = sc.guidance_rescale;
  g.null_label = sc.num_classes;
  g.learned_sigma = sc.learned_sigma;
  sc.guidance_scale = 1.0;  // the sampler calls the denoiser once per step, on n rows
  sc.guidance_rescale = 0.0;
  return g;
}

diffusion::DenoiseFn frame_guided_denoiser(const diffusion::DenoiseFn& net, const Tensor& cond,
                                           const FrameGuidance& g) {
  if (!g.active()) return diffusion::concat_condition(net, cond);  // one call of n rows, as before
  DDPM_CHECK(cond.defined() && cond.ndim() == 5 && cond.dim(0) >= 1,
             "frame guidance: the condition must be [M, F, H, W, C + 1], got "
                 << (cond.defined() ? shape_str(cond.shape()) : std::string("none")));
  return [net, cond, g](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    const std::int64_t n = x.dim(0), m = cond.dim(0);
    DDPM_CHECK(n % m == 0, "frame guidance: a batch of " << n << " clips does not fit " << m << " condition(s)");
    const Tensor c = m == n ? cond : concat(std::vector<Tensor>(static_cast<std::size_t>(n / m), cond), 0);
    const Tensor null = Tensor::zeros(c.shape(), c.dtype(), c.device());  // no known frame, mask 0
    const bool two_scale = g.label_scale != 1.0;  // the labels are guided too (InstructPix2Pix eq. 3)
    const std::size_t copies = two_scale ? 3 : 2;
    // Rows: [x; x] with conditions [c; null] and labels [y; y], or [x; x; x] with conditions
    // [c; c; null] and labels [y; null; null].
    std::vector<Tensor> conds{c, null};
    if (two_scale) conds.insert(conds.begin(), c);
    std::vector<std::int64_t> labels;
    std::vector<double> ts;
    for (std::size_t k = 0; k < copies; ++k) {
      ts.insert(ts.end(), t.begin(), t.end());
      if (y.empty()) continue;  // a model without labels
      if (k == 0 || !two_scale)
        labels.insert(labels.end(), y.begin(), y.end());
      else
        labels.insert(labels.end(), static_cast<std::size_t>(n), static_cast<std::int64_t>(g.null_label));
    }
    const Tensor out = diffusion::concat_condition(net, concat(conds, 0))(
        concat(std::vector<Tensor>(copies, x), 0), ts, labels);
    DDPM_CHECK(out.defined() && out.dim(0) == static_cast<std::int64_t>(copies) * n,
               "frame guidance: the network returned " << (out.defined() ? shape_str(out.shape()) : "nothing")
                                                       << " for " << copies * n << " rows");
    // The branches; a learned variance is the fully conditioned rows' (label guidance keeps
    // the conditional branch's, guidance.cpp network_output).
    Tensor var;
    auto branch = [&](std::size_t k) {
      const Tensor rows = diffusion::batch_rows(out, static_cast<std::int64_t>(k) * n, n);
      if (!g.learned_sigma) return rows;
      auto [pred, v] = diffusion::split_learned_variance(rows);
      if (k == 0) var = v;
      return pred;
    };
    Tensor pred;
    if (!two_scale) {
      const Tensor e_c = branch(0), e_null = branch(1);
      pred = diffusion::guided_combination(e_c, e_null, g.scale, g.rescale);  // e(null) + S_I (e(c) - e(null))
    } else {
      const Tensor e_cy = branch(0), e_cn = branch(1), e_nn = branch(2);
      const Tensor u = diffusion::guided_combination(e_cn, e_nn, g.scale, 0.0);  // e(0,0) + S_I (e(c,0) - e(0,0))
      pred = diffusion::guided_combination(e_cy, e_cn, g.label_scale, g.rescale, u);  // + S_T (e(c,y) - e(c,0))
    }
    return g.learned_sigma ? concat({pred, var}, -1) : pred;
  };
}

double recorded_frame_condition_dropout(const std::string& checkpoint) {
  const std::string path = model_config_path(checkpoint);
  if (path.empty()) return 0.0;
  const nlohmann::json j = nlohmann::json::parse(read_file(path), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("train") || !j.at("train").is_object()) return 0.0;  // open_model judges damage
  const nlohmann::json& p = j.at("train").value("frame_condition_dropout", nlohmann::json(0.0));
  return p.is_number() ? p.get<double>() : 0.0;
}

Tensor dataset_first_frames(const Dataset& data, int n) {
  DDPM_CHECK(data.n >= 1 && data.frames >= 1 && n >= 1,
             "dataset_first_frames: " << data.describe() << " has no clips to take " << n << " first frames from");
  const std::size_t frame = data.frame_bytes();
  std::vector<std::uint8_t> px;
  px.reserve(static_cast<std::size_t>(n) * frame);
  for (int i = 0; i < n; ++i) {
    const std::uint8_t* p = data.image(i % data.n);  // its frame 0 comes first
    px.insert(px.end(), p, p + frame);
  }
  return pixels_to_unit(px, n, data.height, data.channels);
}

bool reconstruction_guided(const SampleOptions& o) { return o.reconstruction_guidance >= 0; }

int video_overlap(const SampleOptions& o, const unet::UNetConfig& model) {
  return o.overlap > 0 ? o.overlap : std::max(1, model.condition_frames);  // 1: a first-frame model's
}

std::int64_t video_clip_frames(const SampleOptions& o, const unet::UNetConfig& model) {
  if (!model.video()) return 0;
  return o.frames > 0 ? o.frames : model.num_frames;
}

std::int64_t video_output_frames(const SampleOptions& o, const unet::UNetConfig& model) {
  const std::int64_t F = video_clip_frames(o, model);
  if (F == 0) return 0;
  const std::int64_t S = std::max(1, o.segments);
  return S == 1 ? F : F + (S - 1) * (F - video_overlap(o, model));
}

Tensor extend_clips(const Tensor& x, int segments, int overlap, const diffusion::DenoiseFn& net,
                    const std::function<Tensor(const diffusion::DenoiseFn&)>& draw) {
  const int F = static_cast<int>(x.dim(1));
  return extend_clips(
      x, segments, overlap,
      [&](const Tensor& known) { return diffusion::concat_condition(net, unet::frames_condition(known, F)); }, draw);
}

Tensor extend_clips(const Tensor& x, int segments, int overlap, const SegmentDenoiser& continue_from,
                    const std::function<Tensor(const diffusion::DenoiseFn&)>& draw) {
  DDPM_CHECK(x.ndim() == 5 && x.dim(1) >= 2 && segments >= 1,
             "extend_clips: x must be clips [n, F, H, W, C] with F >= 2, got " << shape_str(x.shape()));
  const std::int64_t F = x.dim(1);
  DDPM_CHECK(overlap >= 1 && overlap < F,
             "extend_clips: --overlap must be in [1, " << F - 1 << "] for clips of " << F << " frames, got " << overlap);
  std::vector<Tensor> parts{x};
  Tensor last = x;
  for (int s = 1; s < segments; ++s) {
    // The last K' frames [n, K', H, W, C], as sampled (not rounded to bytes) between segments.
    const Tensor known = slice(last, 1, F - overlap, overlap);
    last = draw(continue_from(known));
    parts.push_back(slice(last, 1, overlap, F - overlap));  // its frames 0..K'-1 re-draw the known ones
  }
  return parts.size() == 1 ? x : concat(parts, 1);
}

SampleResult run_first_frame_pipeline(const SampleOptions& o, std::ostream* log) {
  check_sample_options(o);
  DDPM_CHECK(!o.first_frame_from.empty(), "run_first_frame_pipeline needs --first-frame-from IMAGE_MODEL");
  // Both models are opened and checked before the image stage samples anything.
  ModelSource video = open_model(o.checkpoint, o.device, o.use_ema);
  ModelSource image = open_model(o.first_frame_from, o.device, o.use_ema);
  const unet::UNetConfig& vc = video.net->config();
  const unet::UNetConfig& ic = image.net->config();
  const std::string video_ae = find_run_autoencoder(o.checkpoint), image_ae = find_run_autoencoder(o.first_frame_from);
  check_video_sample(o, vc, !video_ae.empty());
  DDPM_CHECK(ic.num_frames == 0, "--first-frame-from " << o.first_frame_from
                                                       << " is a video model; the first frames come from an image model");
  DDPM_CHECK(!ic.super_res(), "--first-frame-from " << o.first_frame_from
                                                    << ": super-resolution image models are not supported as the first stage");
  // Latent video (see above): the image stage's latents are frame 0, so both must be latent
  // runs of one autoencoder.
  DDPM_CHECK(video_ae.empty() == image_ae.empty(),
             "--first-frame-from " << o.first_frame_from << " is a "
                                   << (image_ae.empty() ? "pixel-space" : "latent diffusion") << " image model and "
                                   << o.checkpoint << " a " << (video_ae.empty() ? "pixel-space" : "latent")
                                   << " video model; the first frames must come from a model of the same space");
  DDPM_CHECK(video_ae.empty() || same_autoencoder(video_ae, image_ae),
             "--first-frame-from " << o.first_frame_from << " diffuses the latents of the autoencoder " << image_ae
                                   << ", and " << o.checkpoint << " those of another (" << video_ae
                                   << ": its config or weights differ); the image stage's latents would not be "
                                      "the video model's");
  DDPM_CHECK(ic.image_size == vc.image_size && ic.in_channels == vc.in_channels,
             "--first-frame-from " << o.first_frame_from << " makes " << ic.image_size << "x" << ic.image_size << "x"
                                   << ic.in_channels << " images; " << o.checkpoint << " animates " << vc.image_size
                                   << "x" << vc.image_size << "x" << vc.in_channels << " frames");
  DDPM_CHECK(vc.num_classes == 0 || ic.num_classes == 0 || vc.num_classes == ic.num_classes,
             "--first-frame-from " << o.first_frame_from << " has " << ic.num_classes << " classes and "
                                   << o.checkpoint << " " << vc.num_classes
                                   << "; the image stage's labels would not name the same classes");
  // One codec decodes both stages of a latent pipeline (the autoencoders are the same).
  std::unique_ptr<LatentCodec> codec = video_ae.empty() ? nullptr : std::make_unique<LatentCodec>(video_ae, o.device);
  DDPM_CHECK(o.decoder.empty() || codec, "--decoder " << o.decoder << " does not apply to " << o.checkpoint
                                                      << ": it is a pixel-space model; --decoder decodes a latent "
                                                         "video run's clips");
  if (codec && !o.decoder.empty()) codec->use_clip_decoder(o.decoder);  // the video stage's clips (latent_run.h)
  SampleOptions image_o = o;
  image_o.decoder.clear();  // the image stage's images go through the run's own decoder
  image_o.checkpoint = o.first_frame_from;
  image_o.first_frame_from.clear();
  image_o.segments = 1;  // the image stage makes the first frames only
  image_o.frames = -1;   // an image model has no clip length
  image_o.overlap = 0;
  image_o.frame_guidance_scale = 1.0;  // the image model has no frame condition to guide
  image_o.sampler_defaulted = o.sampler_defaulted;  // an EDM image model picks heun as it would alone
  SampleOptions video_o = o;
  video_o.first_frame_from.clear();

  SampleResult result;
  std::vector<std::string> files;
  auto fill = [&](const std::string& tmp) {
    const fs::path dir(tmp);
    image_o.out = (dir / kFirstFramesFolder).string();
    if (log) *log << "video: sampling the first frames with the image model " << o.first_frame_from << "\n";
    const SampleResult first = run_sample(image_o, image, log, codec.get());
    video_o.first_frame = (dir / kFirstFramesFolder / "samples.npz").string();
    video_o.first_frame_latents = first.latents;  // a latent image stage's: frame 0 as sampled
    video_o.out = (dir / kVideoStageFolder).string();
    if (log) *log << "video: animating them with " << o.checkpoint << "\n";
    result = run_sample(video_o, video, log, codec.get());
    for (const auto& entry : fs::directory_iterator(video_o.out)) fs::rename(entry.path(), dir / entry.path().filename());
    fs::remove(video_o.out);
    const fs::path info_path = dir / "sample_info.json";
    nlohmann::json info = nlohmann::json::parse(read_file(info_path.string()));
    info["video"]["first_frame"]["path"] = (fs::path(o.out) / kFirstFramesFolder / "samples.npz").string();
    info["video"]["image_stage"] = {
        {"model", o.first_frame_from},
        {"folder", kFirstFramesFolder},
        {"sample_info", nlohmann::json::parse(read_file((dir / kFirstFramesFolder / "sample_info.json").string()))}};
    write_file_atomic(info_path.string(), info.dump(2) + "\n");
    for (const std::string& f : first.files) files.push_back(std::string(kFirstFramesFolder) + "/" + f);
    files.insert(files.end(), result.files.begin(), result.files.end());
  };
  publish_directory(o.out, fill, o.overwrite ? IfExists::replace : IfExists::fail);
  result.out_dir = o.out;
  result.files = files;
  if (log) *log << "video: wrote " << files.size() << " files to " << o.out << " (first frames in " << o.out << "/"
                << kFirstFramesFolder << ")\n";
  return result;
}

}  // namespace ddpm::run
