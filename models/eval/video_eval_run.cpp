// models/eval/video_eval_run.cpp: `ddpm-eval video` (eval_run.h): the temporal-consistency
// table of generated clips beside a shuffled baseline and real clips (video_metrics.h).
#include <filesystem>
#include <iomanip>
#include <tuple>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/eval/eval_run.h"

namespace fs = std::filesystem;

namespace ddpm::eval {
namespace {

// The real clips of --data: ddpm-train's spec with the clip flags, the first `count` clips
// (moving.h builds clip k from (seed, k) alone, so building `count` clips IS taking the first).
Dataset load_real_clips(const VideoEvalArgs& a, std::int64_t count) {
  const run::DataSpec spec = run::parse_data_spec(a.data);
  DDPM_CHECK(spec.is_moving(), "video: --data " << a.data << " holds still images, not clips; give a video "
                                                             "dataset (moving-toy or moving-fashion-mnist[:DIR])");
  run::DataOptions o;
  o.seed = a.seed;
  o.frames = a.frames;
  o.canvas = a.canvas;
  o.item_size = a.item_size;
  o.moving_items = a.moving_items;
  o.clip_count = count;
  return run::load_data(spec, o);
}

std::string clip_shape(const Dataset& d) {
  return std::to_string(d.frames) + " frames of " + std::to_string(d.height) + "x" + std::to_string(d.width) + "x" +
         std::to_string(d.channels);
}

}  // namespace

VideoEvalReport run_video_eval(const VideoEvalArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.samples.empty(), "video needs --samples SAMPLES.npz");
  DDPM_CHECK(a.max_shift >= 0, "video: --max-shift must be 0 or more, got " << a.max_shift);
  DDPM_CHECK(a.limit >= 0, "video: --limit must be 0 or more, got " << a.limit);
  check_report_file(a.json, "--json", a.overwrite, "video");
  if (a.data.empty()) {  // the clip flags shape --data's clips; alone they would do nothing
    const VideoEvalArgs defaults;
    for (const auto& [flag, value, fallback] :
         {std::tuple<const char*, std::int64_t, std::int64_t>{"--frames", a.frames, defaults.frames},
          {"--canvas", a.canvas, defaults.canvas},
          {"--item-size", a.item_size, defaults.item_size},
          {"--moving-items", a.moving_items, defaults.moving_items},
          {"--limit", a.limit, defaults.limit}})
      DDPM_CHECK(value == fallback, "video: " << flag << " " << value << " shapes the real clips of --data, "
                                                                        "and no --data was given");
  }
  const Dataset samples = load_sample_clips(a.samples, "video: --samples");
  DDPM_CHECK(samples.n >= 2, "video: --samples " << a.samples << " holds 1 clip; the shuffled reference takes its "
                                                                   "frames from other clips, so give at least 2");
  Dataset real;
  if (!a.data.empty()) {
    real = load_real_clips(a, a.limit > 0 ? a.limit : samples.n);
    DDPM_CHECK(real.frames == samples.frames && real.height == samples.height && real.width == samples.width &&
                   real.channels == samples.channels,
               "video: --data " << a.data << " gives clips of " << clip_shape(real) << " but --samples " << a.samples
                                << " holds clips of " << clip_shape(samples)
                                << "; match them with --frames, --canvas and the dataset");
  }
  out << "samples: " << a.samples << ", " << samples.n << " clips of " << clip_shape(samples) << "\n"
      << "shuffled: frame f of clip (i + f) mod " << samples.n << " (every frame real, consecutive frames unrelated)\n";
  if (!a.data.empty()) out << "data: " << real.describe() << ", clip seed " << a.seed << "\n";
  out << "motion search: integer shifts |dx|, |dy| <= " << a.max_shift << " px, black outside the frame; "
      << "intensities in [0, 1]" << std::endl;

  VideoEvalReport r;
  r.rows.push_back({"samples", video_metrics(samples, a.max_shift)});
  r.rows.push_back({"shuffled", video_metrics(shuffled_clips(samples), a.max_shift)});
  if (!a.data.empty()) r.rows.push_back({"data", video_metrics(real, a.max_shift)});

  out << std::left << std::setw(10) << "row" << std::right << std::setw(8) << "clips" << std::setw(14) << "frame_diff"
      << std::setw(17) << "motion_residual" << std::setw(12) << "mass_drift" << "\n";
  for (const VideoEvalRow& row : r.rows)
    out << std::left << std::setw(10) << row.label << std::right << std::setw(8) << row.metrics.clips << std::fixed
        << std::setprecision(6) << std::setw(14) << row.metrics.frame_diff << std::setw(17)
        << row.metrics.motion_residual << std::setw(12) << row.metrics.mass_drift << std::defaultfloat << "\n";
  if (!a.json.empty()) {
    nlohmann::json j;
    j["samples"] = a.samples;
    j["frames"] = samples.frames;
    j["height"] = samples.height;
    j["width"] = samples.width;
    j["channels"] = samples.channels;
    j["max_shift"] = a.max_shift;
    j["data"] = a.data.empty() ? nlohmann::json(nullptr) : nlohmann::json(real.name);
    for (const VideoEvalRow& row : r.rows)
      j["rows"].push_back({{"row", row.label},
                           {"clips", row.metrics.clips},
                           {"frame_diff", row.metrics.frame_diff},
                           {"motion_residual", row.metrics.motion_residual},
                           {"mass_drift", row.metrics.mass_drift}});
    write_file_atomic(a.json, j.dump(1) + "\n");
    out << "wrote " << a.json << "\n";
  }
  return r;
}

}  // namespace ddpm::eval
