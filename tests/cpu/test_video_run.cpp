// models/run/video_run.h: continuing clips from their last frame (--segments) and the frame
// counts it implies.
#include <gtest/gtest.h>

#include <vector>

#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "models/run/video_run.h"

namespace ddpm {
namespace {

TEST(VideoRun, ExtendClipsChainsEachSegmentFromTheLastFrame) {
  // A fake sampler that reads its condition: it returns, as frame k of each clip, the
  // conditioning image (channel block [C, 2C) of the network input at frame 0) plus k, so its
  // frame 0 re-draws the condition exactly, as an ideal model would. Kept frames then count
  // up by one from the last frame of the segment before.
  const std::int64_t n = 2, F = 3, H = 2, W = 2, C = 1;
  const diffusion::DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return x;  // the concatenated input [n, F, H, W, C + C + 1]
  };
  int calls = 0;
  auto draw = [&](const diffusion::DenoiseFn& f) {
    ++calls;
    const Tensor in = f(Tensor::zeros({n, F, H, W, C}), std::vector<double>(n, 0.0), {});
    EXPECT_EQ(in.shape(), (Shape{n, F, H, W, 2 * C + 1}));
    const Tensor frame0 = slice(slice(in, 4, C, C), 1, 0, 1);  // the condition at frame 0
    std::vector<Tensor> frames;
    for (std::int64_t k = 0; k < F; ++k) frames.push_back(add_scalar(frame0, static_cast<double>(k)));
    return concat(frames, 1);
  };
  std::vector<float> first(static_cast<std::size_t>(n * F * H * W * C));
  for (std::size_t i = 0; i < first.size(); ++i) first[i] = static_cast<float>(i % 5);  // any values
  const Tensor x = Tensor::from_vector(first, {n, F, H, W, C});
  const Tensor out = run::extend_clips(x, 3, net, draw);
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(out.shape(), (Shape{n, F + 2 * (F - 1), H, W, C}));
  // Frames 0..F-1 are x; after that each frame is the previous one + 1 (frame 0 of every
  // later segment, the condition itself, is dropped: no frame repeats).
  const std::vector<float> v = out.to_vector();
  const std::int64_t L = out.dim(1), P = H * W * C;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t f = 0; f < L; ++f)
      for (std::int64_t p = 0; p < P; ++p) {
        const float got = v[static_cast<std::size_t>((i * L + f) * P + p)];
        const float want = f < F ? first[static_cast<std::size_t>((i * F + f) * P + p)]
                                 : v[static_cast<std::size_t>((i * L + f - 1) * P + p)] + 1.0f;
        EXPECT_EQ(got, want) << "clip " << i << " frame " << f << " pixel " << p;
      }
  // One segment is the clip itself.
  EXPECT_EQ(run::extend_clips(x, 1, net, draw).to_vector(), first);
}

TEST(VideoRun, OutputFramesCountTheSegments) {
  unet::UNetConfig video;
  video.num_frames = 8;
  run::SampleOptions o;
  EXPECT_EQ(run::video_output_frames(o, video), 8);
  o.segments = 4;
  EXPECT_EQ(run::video_output_frames(o, video), 8 + 3 * 7);
  EXPECT_EQ(run::video_output_frames(o, unet::UNetConfig{}), 0);  // an image model
}

}  // namespace
}  // namespace ddpm
