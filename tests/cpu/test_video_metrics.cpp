// tests/cpu/test_video_metrics.cpp: the temporal-consistency metrics of models/eval/video_metrics.h
// on clips whose answer follows from their geometry (a translating square, a shift beyond the
// search range, a brightening frame, real moving-toy clips against their shuffled frames), the
// sample loader's refusals, and `ddpm-eval video`'s runner (run_video_eval) end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/io/npz.h"
#include "models/data/moving.h"
#include "models/data/toy.h"
#include "models/eval/eval_run.h"
#include "models/eval/video_metrics.h"
#include "support/temp_dir.h"
#include "support/value_error.h"

namespace ddpm::eval {
namespace {

using ddpm::testing::expect_value_error;
using ddpm::testing::io_error_message;
using ddpm::testing::temp_path;

// n black clips of F frames of size x size x C.
Dataset black_clips(std::int64_t n, std::int64_t F, std::int64_t size, std::int64_t C) {
  Dataset d;
  d.name = "synthetic";
  d.n = n;
  d.frames = F;
  d.height = d.width = size;
  d.channels = C;
  d.images.assign(static_cast<std::size_t>(n * F * size * size * C), 0);
  return d;
}

// Paints a k x k square with top-left corner (x, y) into frame f of clip i, channel c = value + 10 c.
void paint_square(Dataset& d, std::int64_t i, std::int64_t f, int x, int y, int k, int value) {
  std::uint8_t* frame = d.images.data() + (i * d.frames + f) * static_cast<std::int64_t>(d.frame_bytes());
  for (int yy = y; yy < y + k; ++yy)
    for (int xx = x; xx < x + k; ++xx)
      for (std::int64_t c = 0; c < d.channels; ++c)
        frame[(yy * d.width + xx) * d.channels + c] = static_cast<std::uint8_t>(value + 10 * c);
}

TEST(VideoMetrics, AnExactTranslationHasZeroResidualAndKeepsItsMass) {
  for (std::int64_t C : {1, 3}) {
    // A 4x4 square stepping (+2, +1) px per frame on a 16x16 black canvas, never leaving it.
    Dataset d = black_clips(1, 4, 16, C);
    for (int f = 0; f < 4; ++f) paint_square(d, 0, f, 2 + 2 * f, 3 + f, 4, 200);
    const VideoMetrics m = video_metrics(d, 4);
    EXPECT_EQ(m.clips, 1);
    EXPECT_EQ(m.motion_residual, 0.0) << "C=" << C;
    EXPECT_EQ(m.mass_drift, 0.0) << "C=" << C;
    // The squares of two frames overlap on (4 - 2) x (4 - 1) = 6 pixels, so 2 (16 - 6) = 20
    // pixels differ, each by the square's value in every channel.
    double per_pixel = 0;
    for (std::int64_t c = 0; c < C; ++c) per_pixel += (200.0 + 10.0 * c) / 255.0;
    EXPECT_NEAR(m.frame_diff, 20.0 * per_pixel / (16.0 * 16.0 * C), 1e-12) << "C=" << C;
    // The sign convention: next(p) is compared with prev(p - d), d the item's motion.
    const std::uint8_t* f0 = d.image(0);
    const std::uint8_t* f1 = f0 + d.frame_bytes();
    EXPECT_EQ(shifted_frame_difference(f0, f1, 16, 16, C, 2, 1), 0.0);
    EXPECT_GT(shifted_frame_difference(f0, f1, 16, 16, C, -2, -1), 0.0);
  }
}

TEST(VideoMetrics, AShiftBeyondTheSearchRangeIsNotCompensated) {
  // 6 px to the right per frame: S = 4 cannot reach it, S = 6 can.
  Dataset d = black_clips(1, 3, 24, 1);
  for (int f = 0; f < 3; ++f) paint_square(d, 0, f, 1 + 6 * f, 5, 4, 255);
  const VideoMetrics near = video_metrics(d, 4), far = video_metrics(d, 6);
  EXPECT_GT(near.motion_residual, 0.0);
  EXPECT_EQ(far.motion_residual, 0.0);
  // The squares do not overlap: every pair differs on 2 x 16 pixels of 1.0, with or without
  // a search, and the best shift in [-4, 4] moves the old square at most 4 px closer (an
  // overlap of at most 2 x 4 = 8 pixels): residual >= (32 - 2 * 8) / 576.
  EXPECT_NEAR(near.frame_diff, 32.0 / 576.0, 1e-12);
  EXPECT_GE(near.motion_residual, 16.0 / 576.0 - 1e-12);
  EXPECT_EQ(near.frame_diff, far.frame_diff);
  EXPECT_EQ(near.mass_drift, 0.0);
}

TEST(VideoMetrics, ABrighteningClipDriftsByItsMassesStdOverMean) {
  // Clip 0: uniform frames of 50, 100, 150: masses m, 2m, 3m (m = 50/255 * 64 pixels), so
  // std / mean = sqrt(2/3) m / 2m = sqrt(2/3) / 2. Clip 1: black, mean mass 0, drift 0 (the guard).
  Dataset d = black_clips(2, 3, 8, 1);
  for (int f = 0; f < 3; ++f) paint_square(d, 0, f, 0, 0, 8, 50 * (f + 1));
  const VideoMetrics m = video_metrics(d, 2);
  EXPECT_NEAR(m.mass_drift, 0.5 * (std::sqrt(2.0 / 3.0) / 2.0 + 0.0), 1e-12);
  // Each of clip 0's pairs differs by 50/255 everywhere; any shift lets black in at the border
  // (|x - 0| >= 50 there too), so no shift beats d = 0. Clip 1 contributes zeros.
  EXPECT_NEAR(m.frame_diff, 0.5 * 50.0 / 255.0, 1e-12);
  EXPECT_NEAR(m.motion_residual, 0.5 * 50.0 / 255.0, 1e-12);
}

TEST(VideoMetrics, MovingToyClipsAreCoherentAndTheirShuffledFramesAreNot) {
  MovingClipsOptions o;
  o.frames = 4;
  o.canvas = 24;
  o.item_size = 8;
  o.seed = 3;
  const Dataset clips = make_moving_clips(make_toy_shapes(6, 1, 16), o);
  const Dataset shuffled = shuffled_clips(clips);
  // Frame f of shuffled clip i is frame f of clip (i + f) mod N.
  ASSERT_EQ(shuffled.images.size(), clips.images.size());
  for (std::int64_t i = 0; i < clips.n; ++i)
    for (std::int64_t f = 0; f < clips.frames; ++f)
      EXPECT_EQ(std::memcmp(shuffled.image(i) + f * clips.frame_bytes(),
                            clips.image((i + f) % clips.n) + f * clips.frame_bytes(), clips.frame_bytes()),
                0)
          << "clip " << i << " frame " << f;
  const VideoMetrics real = video_metrics(clips, 4), incoherent = video_metrics(shuffled, 4);
  // One item moving at most 3 px per frame inside the canvas: an exact integer translation.
  EXPECT_EQ(real.motion_residual, 0.0);
  EXPECT_EQ(real.mass_drift, 0.0);
  EXPECT_GT(real.frame_diff, 0.0);
  EXPECT_GT(incoherent.motion_residual, 0.01);
}

TEST(VideoMetrics, RefusesStillImagesANegativeShiftAndAShuffleOfOneClip) {
  Dataset still = black_clips(2, 1, 8, 1);
  still.name = "stills";
  expect_value_error([&] { video_metrics(still, 4); }, "stills holds still images (frames = 1)");
  expect_value_error([&] { video_metrics(black_clips(2, 3, 8, 1), -1); }, "--max-shift must be 0 or more, got -1");
  expect_value_error([&] { shuffled_clips(black_clips(1, 3, 8, 1)); }, "needs at least 2");
}

// Writes clips (uint8 [N, F, H, W, C], or any shape given) as arr_0 of an .npz.
std::string write_clips(const std::string& name, const std::vector<std::int64_t>& shape,
                        const std::vector<std::uint8_t>& bytes) {
  const std::string path = temp_path(name);
  write_npz(path, {npy_view("arr_0", shape, bytes)});
  return path;
}

TEST(VideoMetrics, TheSampleLoaderRefusesWhatIsNotClips) {
  const std::vector<std::uint8_t> bytes(2 * 3 * 4 * 4, 7);
  const Dataset ok = load_sample_clips(write_clips("ok.npz", {2, 3, 4, 4, 1}, bytes));
  EXPECT_EQ(ok.n, 2);
  EXPECT_EQ(ok.frames, 3);
  EXPECT_EQ(ok.height, 4);
  EXPECT_EQ(ok.channels, 1);
  expect_value_error([&] { load_sample_clips(write_clips("images.npz", {6, 4, 4, 1}, bytes)); },
                     "must be clips, uint8 [N, F, H, W, C], got uint8 [6, 4, 4, 1] (still images");
  expect_value_error([&] { load_sample_clips(write_clips("one_frame.npz", {6, 1, 4, 4, 1}, bytes)); },
                     "has F = 1 frames");
  const std::vector<float> floats(2 * 3 * 4 * 4, 0.5f);
  const std::string float_path = temp_path("float.npz");
  write_npz(float_path, {npy_view("arr_0", {2, 3, 4, 4, 1}, floats)});
  expect_value_error([&] { load_sample_clips(float_path); }, "got float32 [2, 3, 4, 4, 1]");
  const std::string labels_only = temp_path("labels.npz");
  write_npz(labels_only, {npy_view("arr_1", {2}, std::vector<std::int64_t>{0, 1})});
  expect_value_error([&] { load_sample_clips(labels_only); }, "has no array \"arr_0\"");
  EXPECT_NE(io_error_message([&] { load_sample_clips(temp_path("missing.npz")); }).find("is not a file"),
            std::string::npos);
}

// Moving-toy-shaped samples: 3 clips of 4 frames of 16x16x1, one 5x5 square stepping 2 px right
// in each, the clips' squares 5 px apart vertically (beyond the default S = 4).
std::string square_samples(const std::string& name) {
  Dataset d = black_clips(3, 4, 16, 1);
  for (int i = 0; i < 3; ++i)
    for (int f = 0; f < 4; ++f) paint_square(d, i, f, 1 + 2 * f, 5 * i, 5, 180);
  return write_clips(name, {3, 4, 16, 16, 1}, d.images);
}

TEST(VideoEval, PrintsTheTableAndWritesTheJson) {
  VideoEvalArgs a;
  a.samples = square_samples("run.npz");
  a.data = "moving-toy";
  a.frames = 4;
  a.canvas = 16;
  a.item_size = 8;
  a.limit = 5;
  a.json = temp_path("video.json");
  std::ostringstream out;
  const VideoEvalReport r = run_video_eval(a, out);
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_EQ(r.rows[0].label, "samples");
  EXPECT_EQ(r.rows[0].metrics.motion_residual, 0.0);  // pure translations
  EXPECT_EQ(r.rows[1].label, "shuffled");
  EXPECT_GT(r.rows[1].metrics.motion_residual, 0.0);  // consecutive frames 5 or 10 px apart vertically
  EXPECT_EQ(r.rows[2].label, "data");
  EXPECT_EQ(r.rows[2].metrics.clips, 5);
  EXPECT_EQ(r.rows[2].metrics.motion_residual, 0.0);
  const std::string text = out.str();
  EXPECT_NE(text.find("row          clips    frame_diff  motion_residual  mass_drift"), std::string::npos) << text;
  EXPECT_NE(text.find("shuffled"), std::string::npos);
  std::ifstream in(a.json);
  const nlohmann::json j = nlohmann::json::parse(in);
  ASSERT_EQ(j["rows"].size(), 3u);
  EXPECT_EQ(j["rows"][1]["row"], "shuffled");
  EXPECT_DOUBLE_EQ(j["rows"][1]["motion_residual"].get<double>(), r.rows[1].metrics.motion_residual);
  EXPECT_EQ(j["frames"], 4);
  EXPECT_EQ(j["max_shift"], 4);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(VideoEval, RefusesBeforeWritingAnything) {
  VideoEvalArgs a;
  a.samples = square_samples("refused.npz");
  a.json = temp_path("refused.json");
  std::ostringstream out;
  const auto refused = [&](VideoEvalArgs b, const std::string& fragment) {
    expect_value_error([&] { run_video_eval(b, out); }, fragment);
    EXPECT_FALSE(std::filesystem::exists(a.json)) << fragment;
  };
  VideoEvalArgs b = a;
  b.data = "toy";
  refused(b, "--data toy holds still images, not clips");
  b = a;
  b.data = "moving-toy";  // the default 8 frames of 32x32, against 4 frames of 16x16
  refused(b, "gives clips of 8 frames of 32x32x1 but --samples");
  b = a;
  b.frames = 4;  // a clip flag without --data would do nothing
  refused(b, "--frames 4 shapes the real clips of --data, and no --data was given");
  b = a;
  b.max_shift = -2;
  refused(b, "--max-shift must be 0 or more, got -2");
  b = a;
  b.samples = write_clips("single.npz", {1, 4, 16, 16, 1}, std::vector<std::uint8_t>(4 * 16 * 16, 9));
  refused(b, "holds 1 clip");
  // An existing --json is kept unless --overwrite.
  { std::ofstream(a.json) << "keep"; }
  expect_value_error([&] { run_video_eval(a, out); }, "exists; pass --overwrite");
  EXPECT_EQ(read_text(a.json), "keep");
  a.overwrite = true;
  run_video_eval(a, out);
  EXPECT_NE(read_text(a.json).find("\"rows\""), std::string::npos);
}

}  // namespace
}  // namespace ddpm::eval
