// models/run/toy_pictures.cpp: ddpm-toy's sampling and its pictures (sample and forward;
// the samplers and the files are listed in toy_run.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <string>
#include <tuple>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/seed_streams.h"
#include "models/diffusion/guidance.h"
#include "models/run/int_list.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/plms.h"
#include "models/diffusion/sampler.h"
#include "models/run/scatter_plot.h"
#include "models/run/toy_run.h"
#include "models/toy/datasets2d.h"
#include "models/toy/energy_distance.h"

namespace ddpm::run {

namespace {

// Both axes of every picture: the standardized data lie within about +-2.5, x_T ~ N(0, I)
// within +-3 but for a few points.
constexpr double kLo = -3.0, kHi = 3.0;
const Rgb kData{175, 175, 175}, kSamples{31, 100, 200}, kNoisy{214, 90, 40};
const Rgb kClassData{110, 110, 110};  // the requested class's data, over the other classes' grey
// Sample colours by class (well apart in hue, all dark enough to read on white and over grey).
const Rgb kClassColors[8] = {{31, 100, 200}, {214, 90, 40}, {40, 150, 60},  {200, 40, 50},
                             {130, 80, 180}, {140, 90, 60}, {220, 80, 170}, {20, 160, 170}};
Rgb class_color(std::int64_t k) { return kClassColors[static_cast<std::size_t>(k) % 8]; }

// The labelled reference of the class metrics (models/toy/class_metrics.h): fresh data,
// never the samples' own scoring draw, and enough points that every class has hundreds.
constexpr std::int64_t kClassReference = 4000;

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::vector<float> as_points(const Tensor& x) { return x.to_vector(); }  // [n, 2] row-major

// The step counts after which the trajectory keeps a snapshot: the first step (still noise),
// the first state whose signal fraction alpha_bar reaches 0.1, 0.3, 0.6 and 0.9, and the
// sample. Chosen by noise level, not by step count: the Karras levels crowd near sigma_min
// (rho = 7), so evenly spaced steps would show noise in all but the last panels.
std::vector<std::int64_t> snapshot_counts(const std::vector<double>& alpha_bar) {
  const std::int64_t K = static_cast<std::int64_t>(alpha_bar.size());
  std::vector<std::int64_t> counts = {1};
  for (const double target : {0.1, 0.3, 0.6, 0.9}) {
    std::int64_t k = 1;
    while (k < K && alpha_bar[static_cast<std::size_t>(k - 1)] < target) ++k;
    if (k > counts.back() && k < K) counts.push_back(k);
  }
  if (K > counts.back()) counts.push_back(K);
  return counts;
}

// The points of dataset draw d whose label is k, [m, 2].
std::vector<float> points_of_class(const PointDataset& d, std::int64_t k) {
  std::vector<float> p;
  for (std::size_t i = 0; i < d.labels.size(); ++i)
    if (d.labels[i] == k) p.insert(p.end(), {d.points[2 * i], d.points[2 * i + 1]});
  return p;
}

toy::LabelledPoints labelled(const ToyModel& m, const PointDataset& d) {
  return toy::LabelledPoints{d.points, d.labels, toy::toy2d_num_classes(m.data)};
}

// The guidance scales of --scales: comma-separated, each finite and >= 0, 1 to 8 of them.
std::vector<double> parse_scales(const std::string& text) {
  const std::vector<double> scales = parse_number_list("--scales", text);
  for (double v : scales)
    DDPM_CHECK(v >= 0, "--scales must be comma-separated guidance scales >= 0 (e.g. 0,1,2,4,8), got '" << text << "'");
  DDPM_CHECK(scales.size() <= 8, "--scales takes at most 8 scales (one panel each), got " << scales.size());
  return scales;
}

}  // namespace

std::uint64_t derived_seed(std::uint64_t seed, std::uint64_t stream) { return splitmix64_stream(seed, stream); }

const std::vector<std::string>& toy_sampler_names() {
  static const std::vector<std::string> names = {"ddpm", "ddim", "heun", "euler", "euler-ancestral", "dpm++2m", "plms"};
  return names;
}

namespace {

// The sampler config for a toy model (see toy_run.h), and whether it is a Karras-level solver.
diffusion::SamplerConfig toy_sampler_config(const ToyModel& m, const std::string& sampler, std::int64_t K,
                                            diffusion::KarrasSolver& solver, bool& karras) {
  const auto& names = toy_sampler_names();
  DDPM_CHECK(std::find(names.begin(), names.end(), sampler) != names.end(),
             "unknown sampler '" << sampler << "'; ddpm-toy offers ddpm, ddim, heun, euler, euler-ancestral, "
                                 << "dpm++2m and plms");
  const std::int64_t T = m.diffusion_steps;
  DDPM_CHECK(K >= 1 && K <= T, "--sampling-steps must be in [1, " << T << "] (the model's T), got " << K);
  diffusion::SamplerConfig cfg;
  cfg.mean_type = m.predict;
  cfg.clip_x0 = false;  // unit-variance data reach beyond [-1, 1]
  karras = diffusion::parse_karras_solver(sampler, solver);
  if (karras) {
    cfg.kind = diffusion::SamplerConfig::Kind::heun;
    cfg.heun_steps = K;
  } else {
    cfg.kind = sampler == "ddpm" ? diffusion::SamplerConfig::Kind::ddpm : diffusion::SamplerConfig::Kind::ddim;
    cfg.respacing = sampler == "ddpm" && K == T ? "" : std::to_string(K);
    if (sampler == "plms" && T % K == 0) cfg.respacing = "ddim" + std::to_string(K);  // exact stride
  }
  return cfg;
}

}  // namespace

ToyStepLevels toy_step_levels(const ToyModel& m, const std::string& sampler, std::int64_t K) {
  diffusion::KarrasSolver solver{};
  bool karras = false;
  const diffusion::SamplerConfig cfg = toy_sampler_config(m, sampler, K, solver, karras);
  const diffusion::DiffusionSchedule base(m.betas);
  ToyStepLevels levels;
  if (karras) {
    // After step k the state is at level sigma_k (karras_sigmas: sigma_0 = sigma_max, sigma_K = 0),
    // shown in the network's scaling, whose signal fraction is abar = 1 / (1 + sigma^2).
    const auto range = diffusion::resolve_sigma_range(base, cfg);
    const std::vector<double> sig = diffusion::karras_sigmas(K, range.first, range.second, cfg.rho);
    for (std::int64_t k = 1; k < K; ++k) {
      const double s = sig[static_cast<std::size_t>(k)];
      levels.alpha_bar.push_back(1.0 / (1.0 + s * s));
      levels.label.push_back(format("sigma=%.3g", s));
    }
  } else {
    // After the step at respaced index i = K - k the state is x at index i - 1, i.e. at the
    // original timestep timestep_map[K - k - 1].
    const diffusion::Timesteps map = diffusion::sampling_process(base, cfg.respacing).timestep_map;
    for (std::int64_t k = 1; k < K; ++k) {
      const std::int64_t t = map[static_cast<std::size_t>(K - k - 1)];
      levels.alpha_bar.push_back(base.alphas_cumprod[static_cast<std::size_t>(t)]);
      levels.label.push_back("t=" + std::to_string(t));
    }
  }
  levels.alpha_bar.push_back(1.0);
  levels.label.push_back("sample");
  return levels;
}

std::vector<std::int64_t> toy_class_labels(const ToyModel& m, const std::string& class_flag, std::int64_t n,
                                           const ToyClassifier* classifier) {
  const int num_classes = m.num_classes > 0 ? m.num_classes : (classifier ? classifier->net->config().num_classes : 0);
  DDPM_CHECK(num_classes > 0, "--class " << class_flag << " needs a class-conditional model (or --classifier); this "
                                         << m.data << " model was trained without --class-cond");
  std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
  if (class_flag == "all") {
    for (std::int64_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = i % num_classes;
    return labels;
  }
  std::size_t used = 0;
  long long k = -1;
  try {
    k = std::stoll(class_flag, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DDPM_CHECK(used == class_flag.size() && used > 0,
             "--class must be a class index or 'all', got '" << class_flag << "'");
  DDPM_CHECK(k >= 0 && k < num_classes, "--class " << k << " is out of range: the " << m.data << " model has "
                                                   << num_classes << " classes (0 to " << num_classes - 1 << ")");
  std::fill(labels.begin(), labels.end(), static_cast<std::int64_t>(k));
  return labels;
}

Tensor sample_toy(const ToyModel& m, const std::string& sampler, std::int64_t K, std::int64_t n, Generator& gen,
                  const ToyStepFn& on_step, const ToyConditioning& cond) {
  DDPM_CHECK(n >= 1, "--num-samples must be positive, got " << n);
  diffusion::KarrasSolver solver{};
  bool karras = false;
  diffusion::SamplerConfig cfg = toy_sampler_config(m, sampler, K, solver, karras);
  const ToyStepLevels levels = toy_step_levels(m, sampler, K);
  const diffusion::DiffusionSchedule base(m.betas);
  diffusion::DenoiseFn net = m.net->fn();
  DDPM_CHECK(std::isfinite(cond.guidance_scale) && cond.guidance_scale >= 0,
             "--guidance-scale must be >= 0, got " << cond.guidance_scale);
  const bool autoguided = cond.autoguide != nullptr;
  if (autoguided) check_toy_autoguide_fits(m, *cond.autoguide);
  DDPM_CHECK(cond.guidance_scale == 1.0 || m.num_classes > 0 || autoguided,
             "--guidance-scale " << cond.guidance_scale << " without --class-cond: this " << m.data
                                 << " model was trained without classes, so there is nothing to guide towards "
                                    "(--autoguide guides without classes)");
  DDPM_CHECK(cond.guidance_scale == 1.0 || !cond.labels.empty() || autoguided,
             "--guidance-scale " << cond.guidance_scale << " needs --class: guidance pushes towards a class");
  const bool classifier = cond.classifier != nullptr;
  DDPM_CHECK(cond.labels.empty() || m.num_classes > 0 || classifier,
             "--class needs a class-conditional model (or --classifier); this " << m.data
                                                                                << " model was trained without --class-cond");
  diffusion::ClassifierGuidance cg;
  if (classifier) {
    const ToyClassifier& c = *cond.classifier;
    DDPM_CHECK(!cond.labels.empty(), "--classifier needs --class: classifier guidance pushes towards a class");
    DDPM_CHECK(std::isfinite(cond.classifier_scale) && cond.classifier_scale >= 0,
               "--classifier-scale must be >= 0, got " << cond.classifier_scale);
    DDPM_CHECK(sampler == "ddpm" || sampler == "ddim",
               "classifier guidance is implemented for --sampler ddpm and ddim (it shifts their steps, "
               "classifier_guidance.h), not " << sampler);
    DDPM_CHECK(c.data == m.data && c.diffusion_steps == m.diffusion_steps && c.noise_schedule == m.noise_schedule,
               "the classifier was trained for " << c.data << " with a " << c.diffusion_steps << "-step "
                                                 << diffusion::noise_schedule_name(c.noise_schedule)
                                                 << " schedule; the model is " << m.data << " with a "
                                                 << m.diffusion_steps << "-step "
                                                 << diffusion::noise_schedule_name(m.noise_schedule) << " schedule");
    cg.classifier = c.net->fn();
    cg.scale = cond.classifier_scale;
    cg.labels = cond.labels;
  }
  DDPM_CHECK(cond.labels.empty() || static_cast<std::int64_t>(cond.labels.size()) == n,
             "sample_toy: " << n << " samples need as many labels, got " << cond.labels.size());
  diffusion::DenoiseFn guide = autoguided ? cond.autoguide->net->fn() : diffusion::DenoiseFn();
  if (m.num_classes > 0 && cond.labels.empty()) {
    // Unconditional samples from a conditional model: every call gets the null label
    // (num_classes), the p(x) branch that label dropout trained; the sampler sees an
    // unconditional network (and so does the guide's, the same way).
    const std::int64_t null_label = m.num_classes;
    auto unconditional = [null_label](const diffusion::DenoiseFn conditional) -> diffusion::DenoiseFn {
      return [conditional, null_label](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
        return conditional(x, t, std::vector<std::int64_t>(static_cast<std::size_t>(x.dim(0)), null_label));
      };
    };
    net = unconditional(net);
    if (autoguided) guide = unconditional(guide);
  } else if (m.num_classes > 0) {
    // The library's classifier-free guidance (sampler.h network_output): one doubled batch
    // [x; x] with labels [y; null], pred = pred_u + s (pred_c - pred_u).
    cfg.num_classes = m.num_classes;
  }
  // Classifier-free guidance of the labels, or autoguidance (guidance.h: the guide takes the
  // unconditional branch's place), limited to the guidance interval.
  cfg.guidance_scale = cond.guidance_scale;
  cfg.autoguide = guide;
  cfg.guidance_sigma_lo = cond.guidance_sigma_lo;
  cfg.guidance_sigma_hi = cond.guidance_sigma_hi;
  const Shape shape{n, 2};
  std::int64_t done = 0;
  const diffusion::StepCallback callback = [&](const diffusion::StepInfo& info) {
    ++done;
    if (on_step) on_step(done, K, info.x, levels.label[static_cast<std::size_t>(std::min(done, K) - 1)]);
  };
  // An unconditional model takes the labels only through the classifier.
  const std::vector<std::int64_t> labels = m.num_classes > 0 ? cond.labels : std::vector<std::int64_t>{};
  if (karras) return diffusion::karras_sample(base, net, shape, labels, cfg, gen, Device::cpu(), callback, solver);
  if (sampler == "plms") return diffusion::plms_sample(base, net, shape, labels, cfg, gen, Device::cpu(), callback);
  return diffusion::sample(base, net, shape, labels, cfg, gen, Device::cpu(), callback, cg);
}

ToyScore run_toy_sample(const ToySampleArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.checkpoint.empty(), "--checkpoint is required: a folder written by ddpm-toy train");
  DDPM_CHECK(a.num_samples >= 1 && a.num_samples <= 20000,
             "--num-samples must be in [1, 20000] (the score compares all pairs), got " << a.num_samples);
  DDPM_CHECK(a.sampling_steps >= 0, "--sampling-steps must be >= 0, got " << a.sampling_steps);
  check_toy_out_folder(a.out, a.overwrite);
  const ToyModel m = load_toy_model(a.checkpoint, a.no_ema);
  const std::int64_t K = a.sampling_steps > 0 ? a.sampling_steps : (a.sampler == "ddpm" ? m.diffusion_steps : 50);
  const std::int64_t n = a.num_samples;
  ToyClassifier classifier;
  if (!a.classifier.empty()) classifier = load_toy_classifier(a.classifier);
  ToyConditioning cond;
  if (!a.class_label.empty())
    cond.labels = toy_class_labels(m, a.class_label, n, a.classifier.empty() ? nullptr : &classifier);
  cond.guidance_scale = a.guidance_scale;
  if (!a.classifier.empty()) cond.classifier = &classifier, cond.classifier_scale = a.classifier_scale;
  ToyModel guide;
  if (!a.autoguide.empty()) {
    guide = load_toy_model(a.autoguide, a.no_ema);
    cond.autoguide = &guide;
  }
  if (!a.guidance_interval.empty()) {
    DDPM_CHECK(a.guidance_scale != 1.0 || !a.classifier.empty(),
               "--guidance-interval " << a.guidance_interval
                                      << " limits guidance to a range of noise levels; it needs --guidance-scale != 1 "
                                         "or --classifier");
    std::tie(cond.guidance_sigma_lo, cond.guidance_sigma_hi) =
        diffusion::parse_guidance_interval(a.guidance_interval, "--guidance-interval");
  }

  // The trajectory: snapshots of x after the chosen step counts.
  const std::vector<std::int64_t> counts = snapshot_counts(toy_step_levels(m, a.sampler, K).alpha_bar);
  std::vector<ScatterPanel> trajectory;
  Generator gen(a.seed);
  const Tensor samples = sample_toy(
      m, a.sampler, K, n, gen,
      [&](std::int64_t done, std::int64_t total, const Tensor& x, const std::string& l) {
        if (std::find(counts.begin(), counts.end(), done) == counts.end()) return;
        ScatterPanel p;
        p.title = l;
        p.caption = "step " + std::to_string(done) + "/" + std::to_string(total);
        p.layers.push_back({as_points(x), done == total ? kSamples : kNoisy, 0});
        trajectory.push_back(std::move(p));
      },
      cond);
  const std::vector<float> xs = as_points(samples);

  // The score: samples against fresh data, and the floor: fresh data against fresh data.
  // (With --class K the samples are scored against all the data, which they are not meant
  // to match; the per-class table below is the number to read then.)
  const PointDataset ref_draw = toy::make_toy2d(m.data, n, derived_seed(a.seed, 1));
  const std::vector<float>& ref = ref_draw.points;
  const std::vector<float> other = toy::make_toy2d(m.data, n, derived_seed(a.seed, 2)).points;
  ToyScore score;
  score.energy = toy::energy_distance(xs, ref);
  score.floor = toy::energy_distance(other, ref);
  if (!cond.labels.empty()) {
    const PointDataset class_ref = toy::make_toy2d(m.data, kClassReference, derived_seed(a.seed, 4));
    score.per_class = toy::per_class_stats(xs, cond.labels, labelled(m, class_ref));
  }

  const std::string steps = std::to_string(K) + " steps";
  const std::string evals =
      a.sampler == "heun" ? " (" + std::to_string(diffusion::karras_network_evaluations(diffusion::KarrasSolver::heun, K)) +
                                " evaluations)"
                          : "";
  std::string guidance = cond.labels.empty() ? "" : ", class " + a.class_label;
  if (!cond.labels.empty() && m.num_classes > 0 && !cond.autoguide) guidance += ", s=" + format("%g", a.guidance_scale);
  if (cond.autoguide) guidance += ", autoguided w=" + format("%g", a.guidance_scale);
  if (!a.guidance_interval.empty()) guidance += ", sigma in [" + a.guidance_interval + "]";
  if (cond.classifier != nullptr) guidance += ", classifier s=" + format("%g", a.classifier_scale);
  ScatterPanel scatter;
  scatter.title = a.sampler + ", " + steps + evals + guidance;
  scatter.caption = "energy distance " + format("%.4f", score.energy) + " (data floor " + format("%.4f", score.floor) + ")";
  scatter.layers.push_back({ref, kData, 1});
  if (cond.labels.empty()) {
    scatter.layers.push_back({xs, kSamples, 1});
  } else if (a.class_label == "all") {  // one colour per class
    for (std::int64_t k = 0; k < toy::toy2d_num_classes(m.data); ++k) {
      std::vector<float> pk;
      for (std::int64_t i = 0; i < n; ++i)
        if (cond.labels[static_cast<std::size_t>(i)] == k) pk.insert(pk.end(), {xs[2 * i], xs[2 * i + 1]});
      scatter.layers.push_back({pk, class_color(k), 1});
    }
  } else {  // the requested class's data darker, the samples in its colour
    scatter.layers.push_back({points_of_class(ref_draw, cond.labels[0]), kClassData, 1});
    scatter.layers.push_back({xs, class_color(cond.labels[0]), 1});
  }
  const Image scatter_png = draw_scatter(scatter, kLo, kHi, 620, 580);
  const Image trajectory_png = draw_scatter_strip(trajectory, kLo, kHi, 300, 270);

  publish_directory(
      a.out,
      [&](const std::string& tmp) {
        std::vector<NpyView> arrays = {npy_view("samples", {n, 2}, xs), npy_view("data", {n, 2}, ref)};
        if (!cond.labels.empty()) arrays.push_back(npy_view("labels", {n}, cond.labels));
        write_npz(tmp + "/samples.npz", arrays);
        write_png(tmp + "/scatter.png", scatter_png);
        write_png(tmp + "/trajectory.png", trajectory_png);
      },
      a.overwrite ? IfExists::replace : IfExists::fail);
  out << a.sampler << ", " << steps << evals << ", " << (a.no_ema ? "raw" : "EMA") << " weights, " << n
      << " samples of " << m.data;
  if (!cond.labels.empty()) out << ", class " << a.class_label;
  if (!cond.labels.empty() && m.num_classes > 0 && !cond.autoguide)
    out << ", guidance scale " << format("%g", a.guidance_scale);
  if (cond.autoguide) out << ", autoguided by " << a.autoguide << " with w = " << format("%g", a.guidance_scale);
  if (!a.guidance_interval.empty()) out << ", guidance only at sigma in [" << a.guidance_interval << "]";
  if (cond.labels.empty() && m.num_classes > 0) out << ", unconditional (null label)";
  if (cond.classifier != nullptr) out << ", classifier guidance scale " << format("%g", a.classifier_scale);
  out << "\n"
      << "energy distance to fresh data: " << format("%.5f", score.energy) << "  (data vs data floor "
      << format("%.5f", score.floor) << ")\n";
  if (!score.per_class.empty()) {
    out << "per class (accuracy: the nearest of " << kClassReference << " fresh labelled data points has the requested "
        << "class; spread: mean distance to the class's data mean over the data's own, 1 = as spread as the data):\n"
        << "  class  samples  accuracy  spread  energy\n";
    for (std::size_t k = 0; k < score.per_class.size(); ++k) {
      const toy::ClassStats& c = score.per_class[k];
      if (c.count == 0) continue;
      char line[96];
      std::snprintf(line, sizeof line, "  %5zu  %7lld  %8.3f  %6.3f  %.4f\n", k, static_cast<long long>(c.count),
                    c.accuracy, c.spread, c.energy);
      out << line;
    }
  }
  out << "wrote " << a.out << "/{samples.npz, scatter.png, trajectory.png}\n";
  return score;
}

std::vector<ToyGuidanceRow> run_toy_guidance(const ToyGuidanceArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.checkpoint.empty(), "--checkpoint is required: a folder written by ddpm-toy train --class-cond");
  DDPM_CHECK(a.num_samples >= 1 && a.num_samples <= 20000,
             "--num-samples must be in [1, 20000] (the score compares all pairs), got " << a.num_samples);
  const std::vector<double> scales = parse_scales(a.scales);
  check_toy_out_folder(a.out, a.overwrite);
  const ToyModel m = load_toy_model(a.checkpoint, a.no_ema);
  const std::int64_t n = a.num_samples, K = a.sampling_steps;
  // With a classifier the scales are its scales and the model is unconditional (a
  // conditional one at classifier-free scale 0: pred_u exactly).
  ToyClassifier classifier;
  const bool with_classifier = !a.classifier.empty();
  if (with_classifier) classifier = load_toy_classifier(a.classifier);
  ToyConditioning cond;
  cond.labels = toy_class_labels(m, std::to_string(a.class_label), n, with_classifier ? &classifier : nullptr);
  if (with_classifier) cond.classifier = &classifier, cond.guidance_scale = m.num_classes > 0 ? 0.0 : 1.0;
  if (!a.guidance_interval.empty()) {
    // Outside the interval a sampler drops every guidance: classifier-free guidance falls back
    // to the conditional prediction (scale 1). A conditional model under classifier guidance
    // runs at classifier-free scale 0 (unconditional), so outside the interval it would turn
    // conditional: a different model, not "no guidance". Only an unconditional one is clean.
    DDPM_CHECK(!with_classifier || m.num_classes == 0,
               "--guidance-interval with --classifier needs an unconditional model (ddpm-toy train without "
               "--class-cond): " << a.checkpoint << " is class-conditional, and outside the interval it would "
               "switch from unconditional to conditional predictions");
    std::tie(cond.guidance_sigma_lo, cond.guidance_sigma_hi) =
        diffusion::parse_guidance_interval(a.guidance_interval, "--guidance-interval");
  }
  const int num_classes = m.num_classes > 0 ? m.num_classes : classifier.net->config().num_classes;
  const std::int64_t k = a.class_label;

  // The reference of the class metrics, and the floor: a second fresh draw of the class's
  // data, as many points as samples (or all the draw has), against the reference's.
  const PointDataset class_ref = toy::make_toy2d(m.data, kClassReference, derived_seed(a.seed, 4));
  const toy::LabelledPoints reference = labelled(m, class_ref);
  std::vector<float> second = points_of_class(toy::make_toy2d(m.data, kClassReference, derived_seed(a.seed, 5)), k);
  second.resize(std::min(second.size(), static_cast<std::size_t>(2 * n)));
  const double floor = toy::energy_distance(second, points_of_class(class_ref, k));

  const PointDataset shown = toy::make_toy2d(m.data, 2000, derived_seed(a.seed, 1));  // the panels' data
  std::vector<ToyGuidanceRow> rows;
  std::vector<ScatterPanel> panels;
  for (const double s : scales) {
    (with_classifier ? cond.classifier_scale : cond.guidance_scale) = s;
    Generator gen(a.seed);  // the same x_T (and noise) at every scale
    const std::vector<float> xs = as_points(sample_toy(m, a.sampler, K, n, gen, {}, cond));
    const toy::ClassStats st = toy::class_stats(xs, k, reference);
    rows.push_back({s, st.accuracy, st.spread, st.energy, floor});
    ScatterPanel p;
    p.title = "s=" + format("%g", s);
    p.caption = "acc " + format("%.2f", st.accuracy) + "  spread " + format("%.2f", st.spread);
    p.layers.push_back({shown.points, kData, 0});
    p.layers.push_back({points_of_class(shown, k), kClassData, 0});
    p.layers.push_back({xs, class_color(k), 1});
    panels.push_back(std::move(p));
  }
  const Image strip = draw_scatter_strip(panels, kLo, kHi, 300, 270);
  std::string csv = "scale,accuracy,spread,energy,floor\n";
  for (const ToyGuidanceRow& r : rows)
    csv += format("%g", r.scale) + "," + format("%.4f", r.accuracy) + "," + format("%.4f", r.spread) + "," +
           format("%.6f", r.energy) + "," + format("%.6f", r.floor) + "\n";

  publish_directory(
      a.out,
      [&](const std::string& tmp) {
        write_png(tmp + "/guidance.png", strip);
        write_file_atomic(tmp + "/guidance.csv", csv);
      },
      a.overwrite ? IfExists::replace : IfExists::fail);
  out << m.data << ", class " << k << " of " << num_classes << ", " << a.sampler << " " << K << " steps, "
      << (a.no_ema ? "raw" : "EMA") << " weights, " << n << " samples per scale, seed " << a.seed << "\n"
      << (with_classifier ? "classifier guidance of the unconditional model, grad log p(y | x_t) scaled by s: s = 0 "
                            "unconditional\n"
                          : "classifier-free guidance eps = eps_u + s (eps_c - eps_u): s = 0 unconditional, 1 "
                            "conditional\n")
      << (a.guidance_interval.empty() ? ""
                                      : "guidance only at sigma in [" + a.guidance_interval + "], the " +
                                            (with_classifier ? "unconditional model" : "conditional branch") +
                                            " alone elsewhere\n")
      << "  scale  accuracy  spread  energy  (class data floor " << format("%.4f", floor) << ")\n";
  for (const ToyGuidanceRow& r : rows) {
    char line[96];
    std::snprintf(line, sizeof line, "  %5g  %8.3f  %6.3f  %.4f\n", r.scale, r.accuracy, r.spread, r.energy);
    out << line;
  }
  out << "wrote " << a.out << "/{guidance.png, guidance.csv}\n";
  return rows;
}

void run_toy_forward(const ToyForwardArgs& a, std::ostream& out) {
  toy::check_toy2d_name(a.data, "--data");
  DDPM_CHECK(a.diffusion_steps >= 100 && a.diffusion_steps <= 1000,
             "--diffusion-steps must be in [100, 1000], got " << a.diffusion_steps);
  DDPM_CHECK(a.num_points >= 1 && a.num_points <= 100000, "--num-points must be in [1, 100000], got " << a.num_points);
  check_toy_out_folder(a.out, a.overwrite);
  const std::int64_t T = a.diffusion_steps, n = a.num_points;
  const diffusion::DiffusionSchedule s(diffusion::betas_for(diffusion::parse_noise_schedule(a.noise_schedule), T));
  const Tensor x0 = Tensor::from_vector(toy::make_toy2d(a.data, n, a.seed).points, {n, 2});  // [n, 2]
  Generator noise_gen(derived_seed(a.seed, 3));
  const Tensor noise = randn({n, 2}, noise_gen);  // one eps for all panels: each point's path is visible
  std::vector<ScatterPanel> panels;
  out << a.data << ", " << T << "-step " << a.noise_schedule << " schedule: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps\n"
      << "      t   alpha_bar_t\n";
  for (const double f : {0.0, 0.05, 0.1, 0.2, 0.4, 1.0}) {
    const std::int64_t t = std::min(T - 1, static_cast<std::int64_t>(std::llround(f * T)));
    const Tensor xt = diffusion::q_sample(s, x0, diffusion::Timesteps(static_cast<std::size_t>(n), t), noise);
    const double abar = s.alphas_cumprod[static_cast<std::size_t>(t)];
    ScatterPanel p;
    p.title = "t=" + std::to_string(t);
    p.caption = "abar=" + format(abar < 0.001 ? "%.1e" : "%.3f", abar);
    p.layers.push_back({as_points(xt), t == 0 ? kSamples : kNoisy, 0});
    panels.push_back(std::move(p));
    char line[64];
    std::snprintf(line, sizeof line, "%7lld   %.6f\n", static_cast<long long>(t), abar);
    out << line;
  }
  const Image png = draw_scatter_strip(panels, kLo, kHi, 300, 270);
  publish_directory(
      a.out, [&](const std::string& tmp) { write_png(tmp + "/forward.png", png); },
      a.overwrite ? IfExists::replace : IfExists::fail);
  out << "wrote " << a.out << "/forward.png\n";
}

}  // namespace ddpm::run
