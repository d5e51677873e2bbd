// models/run/video_run.h: continuing clips from their last K' frames (--segments,
// --overlap), the frame counts it implies, and the training draw of the known frames.
#include <gtest/gtest.h>

#include <vector>

#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/run/video_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

// Continues x [n, F, H, W, C] over `segments` segments joined by `overlap` frames with a fake
// sampler that reads its condition: frame j < K' of a segment re-draws known frame j exactly
// (channel block [C, 2C) of the network input), as an ideal model would, and frame j >= K'
// is the last known frame + (j - K' + 1). Checks every segment's condition against the last
// K' frames the segment before returned (mask 1 on them, zeros after), the frame count
// F + (S - 1)(F - K'), and that the written frames count up by one after x (no frame repeats).
void check_extend_clips(std::int64_t F, int overlap, int segments) {
  const std::int64_t n = 2, H = 2, W = 2, C = 1, P = H * W * C;
  const diffusion::DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return x;  // the concatenated input [n, F, H, W, C + C + 1]
  };
  std::vector<float> first(static_cast<std::size_t>(n * F * P));
  for (std::size_t i = 0; i < first.size(); ++i) first[i] = static_cast<float>(i % 5);  // any values
  const Tensor x = Tensor::from_vector(first, {n, F, H, W, C});
  Tensor previous = x;  // the segment the next draw must be conditioned on
  int calls = 0;
  auto draw = [&](const diffusion::DenoiseFn& f) {
    ++calls;
    const Tensor in = f(Tensor::zeros({n, F, H, W, C}), std::vector<double>(n, 0.0), {});
    EXPECT_EQ(in.shape(), (Shape{n, F, H, W, 2 * C + 1}));
    const Tensor known = slice(in, 4, C, C), mask = slice(in, 4, 2 * C, 1);
    const Tensor want_known = slice(previous, 1, F - overlap, overlap);  // the last K' frames
    EXPECT_EQ(slice(known, 1, 0, overlap).to_vector(), want_known.to_vector()) << "segment " << calls;
    EXPECT_EQ(slice(mask, 1, 0, overlap).to_vector(), std::vector<float>(n * overlap * H * W, 1.0f));
    EXPECT_EQ(slice(slice(in, 4, C, C + 1), 1, overlap, F - overlap).to_vector(),
              std::vector<float>(n * (F - overlap) * H * W * (C + 1), 0.0f));  // no condition after K'
    std::vector<Tensor> frames;
    for (std::int64_t j = 0; j < F; ++j)
      frames.push_back(j < overlap ? slice(known, 1, j, 1)
                                   : add_scalar(slice(known, 1, overlap - 1, 1), static_cast<double>(j - overlap + 1)));
    previous = concat(frames, 1);
    return previous;
  };
  const Tensor out = run::extend_clips(x, segments, overlap, net, draw);
  EXPECT_EQ(calls, segments - 1);
  ASSERT_EQ(out.shape(), (Shape{n, F + (segments - 1) * (F - overlap), H, W, C}));
  // Frames 0..F-1 are x; after that each frame is the previous one + 1 (the re-drawn known
  // frames of every later segment are dropped: no frame repeats).
  const std::vector<float> v = out.to_vector();
  const std::int64_t L = out.dim(1);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t f = 0; f < L; ++f)
      for (std::int64_t p = 0; p < P; ++p) {
        const float got = v[static_cast<std::size_t>((i * L + f) * P + p)];
        const float want = f < F ? first[static_cast<std::size_t>((i * F + f) * P + p)]
                                 : v[static_cast<std::size_t>((i * L + f - 1) * P + p)] + 1.0f;
        EXPECT_EQ(got, want) << "clip " << i << " frame " << f << " pixel " << p;
      }
  // One segment is the clip itself.
  EXPECT_EQ(run::extend_clips(x, 1, overlap, net, draw).to_vector(), first);
}

TEST(VideoRun, ExtendClipsChainsEachSegmentFromTheLastFrame) { check_extend_clips(3, 1, 3); }

TEST(VideoRun, ExtendClipsConditionsOnTheLastKFrames) {
  check_extend_clips(4, 2, 3);
  check_extend_clips(5, 3, 2);
  const diffusion::DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return x;
  };
  auto draw = [](const diffusion::DenoiseFn&) { return Tensor(); };
  const Tensor x = Tensor::zeros({1, 3, 2, 2, 1});
  testing::expect_value_error([&] { run::extend_clips(x, 2, 3, net, draw); },
                              "--overlap must be in [1, 2] for clips of 3 frames, got 3");
  testing::expect_value_error([&] { run::extend_clips(x, 2, 0, net, draw); }, "got 0");
}

TEST(VideoRun, OutputFramesCountTheSegments) {
  unet::UNetConfig video;
  video.num_frames = 8;
  video.first_frame_condition = true;
  video.condition_frames = 1;
  run::SampleOptions o;
  EXPECT_EQ(run::video_output_frames(o, video), 8);
  o.segments = 4;
  EXPECT_EQ(run::video_output_frames(o, video), 8 + 3 * 7);
  video.condition_frames = 3;  // --overlap defaults to the model's condition_frames
  EXPECT_EQ(run::video_overlap(o, video), 3);
  EXPECT_EQ(run::video_output_frames(o, video), 8 + 3 * 5);
  o.overlap = 2;
  EXPECT_EQ(run::video_output_frames(o, video), 8 + 3 * 6);
  EXPECT_EQ(run::video_output_frames(o, unet::UNetConfig{}), 0);  // an image model
}

TEST(VideoRun, OverlapIsCheckedAgainstTheModel) {
  unet::UNetConfig video;
  video.num_frames = 4;
  video.first_frame_condition = true;
  video.condition_frames = 2;
  run::SampleOptions o;
  o.checkpoint = "RUN";
  o.first_frame = "f.png";
  o.segments = 3;
  o.overlap = 2;
  run::check_video_flags(o);
  run::check_video_sample(o, video, false);  // K' = K: accepted
  o.overlap = 3;
  testing::expect_value_error([&] { run::check_video_sample(o, video, false); },
                              "--overlap 3 exceeds the known frames RUN was trained to take: its condition_frames is 2");
  o.overlap = -1;
  testing::expect_value_error([&] { run::check_video_flags(o); }, "--overlap must be at least 1");
  o.overlap = 2;
  o.segments = 1;
  testing::expect_value_error([&] { run::check_video_flags(o); }, "--overlap 2 sets how segments join");
}

// The training draw: k ~ Uniform{1..K} per clip, and each clip's condition holds its own
// first k frames with mask 1, zeros after.
TEST(VideoRun, TrainingDrawsKnownFramesUniformly) {
  const int K = 3;
  Generator gen(21);
  std::vector<int> counts(K + 1, 0);
  const std::vector<int> ks = run::draw_known_frames(3000, K, gen);
  for (int k : ks) {
    ASSERT_TRUE(k >= 1 && k <= K) << k;
    ++counts[static_cast<std::size_t>(k)];
  }
  for (int k = 1; k <= K; ++k) EXPECT_NEAR(counts[static_cast<std::size_t>(k)], 1000, 120) << "k = " << k;
  Generator one(21);
  EXPECT_EQ(run::draw_known_frames(4, 1, one), std::vector<int>(4, 1));
  EXPECT_EQ(one.offset(), 0u);  // K = 1 draws nothing: first-frame runs keep their streams

  const std::int64_t n = 3, F = 4, H = 2, W = 2, C = 2, P = H * W;
  std::vector<float> xv(static_cast<std::size_t>(n * F * P * C));
  for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = 0.25f + static_cast<float>(i);  // none is 0 or 1
  const Tensor x0 = Tensor::from_vector(xv, {n, F, H, W, C});
  const std::vector<int> known{2, 1, 3};
  const std::vector<float> c = run::known_frames_condition(x0, known).to_vector();
  ASSERT_EQ(c.size(), static_cast<std::size_t>(n * F * P * (C + 1)));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t f = 0; f < F; ++f)
      for (std::int64_t p = 0; p < P; ++p)
        for (std::int64_t ch = 0; ch <= C; ++ch) {
          const bool is_known = f < known[static_cast<std::size_t>(i)];
          const float want = !is_known ? 0.0f : ch == C ? 1.0f : xv[static_cast<std::size_t>(((i * F + f) * P + p) * C + ch)];
          ASSERT_EQ(c[static_cast<std::size_t>(((i * F + f) * P + p) * (C + 1) + ch)], want)
              << "clip " << i << " frame " << f << " pixel " << p << " channel " << ch;
        }

  // The provider's call: K = 1 is the first-frame condition; K > 1 draws from the generator.
  unet::UNetConfig mc;
  mc.num_frames = static_cast<int>(F);
  mc.first_frame_condition = true;
  mc.condition_frames = 1;
  Generator g1(5);
  EXPECT_EQ(run::training_frames_condition(x0, mc, g1).to_vector(), run::first_frame_condition_of(x0, 4).to_vector());
  EXPECT_EQ(g1.offset(), 0u);
  mc.condition_frames = 3;
  Generator g2(5), g3(5);
  EXPECT_EQ(run::training_frames_condition(x0, mc, g2).to_vector(),
            run::known_frames_condition(x0, run::draw_known_frames(n, 3, g3)).to_vector());
  EXPECT_GT(g2.offset(), 0u);
  testing::expect_value_error([&] { run::known_frames_condition(x0, {1, 2}); }, "one known-frame count per clip");
}

}  // namespace
}  // namespace ddpm
