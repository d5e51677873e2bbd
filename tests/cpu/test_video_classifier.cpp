// The FVD feature network (models/eval/video_classifier.h), its motion labels
// (models/data/moving.h compass_bin, moving_direction_labels) and the clip sets of ddpm-eval
// fvd (models/eval/fvd.h): shapes, order sensitivity, training, the Frechet distance of a set
// with itself, the frame permutation, save/load and the refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/rng.h"
#include "models/data/moving.h"
#include "models/data/toy.h"
#include "models/eval/fvd.h"
#include "models/eval/metrics.h"
#include "models/eval/video_classifier.h"

namespace ddpm::eval {
namespace {

VideoClassifierConfig tiny_config(int num_classes = 4) {
  VideoClassifierConfig c;
  c.frames = 4;
  c.height = c.width = 16;
  c.channels = 1;
  c.num_classes = num_classes;
  c.base_channels = 8;
  c.frame_dim = c.temporal_dim = c.feature_dim = 16;
  c.norm_groups = 4;
  return c;
}

EvalClipOptions tiny_clips() {
  EvalClipOptions o;
  o.frames = 4;
  o.canvas = 16;
  o.item_size = 8;
  return o;
}

// Circular distance between two compass bins (0..4).
int bin_distance(std::int64_t a, std::int64_t b) {
  const int d = static_cast<int>(std::abs(a - b)) % 8;
  return std::min(d, 8 - d);
}

TEST(CompassBin, FollowsTheCompassWordOrder) {
  const char* const words[8] = {"right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right"};
  // One velocity per sector, y downwards: angle 45 k degrees counter-clockwise on screen.
  for (int k = 0; k < 8; ++k) {
    const double a = k * M_PI / 4;
    const double vx = 2 * std::cos(a), vy = -2 * std::sin(a);
    EXPECT_EQ(compass_bin(vx, vy), k);
    EXPECT_EQ(compass_word(vx, vy), words[k]);
  }
  EXPECT_EQ(compass_bin(0, 0), -1);
  EXPECT_EQ(compass_bin(1, 0.3), 0);   // 16.7 degrees: still "right"
  EXPECT_EQ(compass_bin(1, -0.5), 1);  // 26.6 degrees up: "up-right"
}

TEST(MovingDirectionLabels, MatchTheRenderedFirstStep) {
  // Fast items (3 px/frame) on a roomy canvas: the labels are computed from the seed alone;
  // the direction of the rendered item's first step (centroid of frame 1 minus frame 0) must
  // fall in the labelled bin or a neighbouring one (positions are rounded to pixels).
  MovingClipsOptions o;
  o.frames = 2;
  o.canvas = 40;
  o.item_size = 6;
  o.min_speed = o.max_speed = 3;
  o.count = 64;
  o.seed = 5;
  Dataset src = make_toy_shapes(8, 1);
  std::fill(src.images.begin(), src.images.end(), 255);  // solid squares: the centroid is the item's centre
  const Dataset clips = make_moving_clips(src, o);
  const std::vector<std::int64_t> bins = moving_direction_labels(o, o.count);
  ASSERT_EQ(bins.size(), 64u);
  const double limit = o.canvas - o.item_size;
  int compared = 0, exact = 0;
  std::vector<int> seen(8, 0);
  for (std::int64_t k = 0; k < o.count; ++k) {
    const ItemPath p = draw_item_path(o, k, 0, limit);
    EXPECT_EQ(bins[k], compass_bin(p.vx, p.vy));
    ++seen[bins[k]];
    if (p.x + p.vx < 0 || p.x + p.vx > limit || p.y + p.vy < 0 || p.y + p.vy > limit) continue;  // bounced
    double cx[2] = {0, 0}, cy[2] = {0, 0}, m[2] = {0, 0};
    for (int f = 0; f < 2; ++f)
      for (int y = 0; y < o.canvas; ++y)
        for (int x = 0; x < o.canvas; ++x) {
          const double v = clips.image(k)[f * clips.frame_bytes() + y * o.canvas + x];
          cx[f] += v * x;
          cy[f] += v * y;
          m[f] += v;
        }
    const int rendered = compass_bin(cx[1] / m[1] - cx[0] / m[0], cy[1] / m[1] - cy[0] / m[0]);
    EXPECT_LE(bin_distance(rendered, bins[k]), 1) << "clip " << k;
    exact += rendered == bins[k];
    ++compared;
  }
  EXPECT_GT(compared, 40);
  EXPECT_GT(exact, compared / 2);
  for (int b = 0; b < 8; ++b) EXPECT_GT(seen[b], 0) << "bin " << b << " never drawn in 64 clips";
  o.min_speed = o.max_speed = 0;
  EXPECT_THROW(moving_direction_labels(o, 2), ValueError);  // a still item has no direction
}

TEST(VideoClassifier, ShapesAndOrderSensitivity) {
  Generator gen(1);
  const VideoClassifier net(tiny_config(), gen, Device::cpu());
  Generator data(2);
  const Tensor x = randn({3, 4, 16, 16, 1}, data);
  NoGradGuard no_grad;
  EXPECT_EQ(net.frame_embeddings(x).shape(), (Shape{3, 4, 16}));
  EXPECT_EQ(net.features(x).shape(), (Shape{3, 16}));
  EXPECT_EQ(net.forward(x).shape(), (Shape{3, 4 + kDirectionBins}));
  // The same frames in another order (frame 0 and 2 swapped): other features.
  const Tensor swapped = concat({slice(x, 1, 2, 1), slice(x, 1, 1, 1), slice(x, 1, 0, 1), slice(x, 1, 3, 1)}, 1);
  const std::vector<float> a = net.features(x).to_vector(), b = net.features(swapped).to_vector();
  double diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
  EXPECT_GT(diff, 1e-4);
  // No class head: the 8 direction logits only.
  Generator gen2(1);
  const VideoClassifier directions_only(tiny_config(0), gen2, Device::cpu());
  EXPECT_EQ(directions_only.forward(x).shape(), (Shape{3, kDirectionBins}));
  EXPECT_THROW(net.features(randn({3, 5, 16, 16, 1}, data)), ValueError);  // 5 frames, not 4
  VideoClassifierConfig bad = tiny_config();
  bad.frames = 1;
  EXPECT_THROW(bad.validate(), ValueError);
}

TEST(VideoClassifier, TrainingLowersTheLoss) {
  const LabelledClips train = load_eval_clips("moving-toy", "train", tiny_clips(), 128, 0);
  ASSERT_TRUE(train.clips.has_labels());
  ASSERT_EQ(train.directions.size(), 128u);
  Generator gen(3);
  VideoClassifier net(tiny_config(), gen, Device::cpu());
  VideoClassifierTrainOptions o;
  o.batch_size = 16;
  o.epochs = 8;  // 8 batches per epoch
  o.max_steps = 60;
  o.lr = 5e-3;
  const VideoClassifierTrainReport r = train_video_classifier(net, train, LabelledClips{}, o);
  ASSERT_EQ(r.losses.size(), 60u);
  const double first = std::accumulate(r.losses.begin(), r.losses.begin() + 5, 0.0) / 5;
  const double last = std::accumulate(r.losses.end() - 5, r.losses.end(), 0.0) / 5;
  // At start the loss is about log 4 + log 8 = 3.47 (uniform over both heads).
  EXPECT_NEAR(first, std::log(4.0) + std::log(8.0), 0.6);
  EXPECT_LT(last, first - 0.3) << "first " << first << ", last " << last;
}

TEST(VideoClassifier, SaveLoadRoundTripAndRefusals) {
  Generator gen(4);
  const VideoClassifier net(tiny_config(), gen, Device::cpu());
  const std::string dir = ::testing::TempDir() + "/video_classifier_roundtrip";
  std::filesystem::remove_all(dir);
  save_video_classifier(net, dir, {{"dataset", "moving-toy"}});
  const LoadedVideoClassifier back = load_video_classifier(dir, Device::cpu());
  EXPECT_EQ(back.info.at("dataset"), "moving-toy");
  const LabelledClips clips = load_eval_clips("moving-toy", "test", tiny_clips(), 6, 0);
  const FeatureMatrix a = extract_video_features(net, clips.clips, "clips");
  const FeatureMatrix b = extract_video_features(*back.model, clips.clips, "clips");
  EXPECT_EQ(a.values, b.values);
  EXPECT_THROW(load_video_classifier(::testing::TempDir() + "/no_such_video_classifier", Device::cpu()), IoError);
  // Clips of another shape are refused by name.
  EvalClipOptions other = tiny_clips();
  other.frames = 3;
  const LabelledClips three = load_eval_clips("moving-toy", "test", other, 2, 0);
  try {
    extract_video_features(net, three.clips, "--samples x.npz");
    FAIL() << "3-frame clips were accepted by a 4-frame network";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("--samples x.npz holds clips of 3 frames of 16x16x1"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(load_eval_clips("toy", "test", tiny_clips(), 2, 0), ValueError);  // still images
}

TEST(Fvd, SplitsDifferAndASetAgainstItselfScoresZero) {
  const LabelledClips train = load_eval_clips("moving-toy", "train", tiny_clips(), 40, 0);
  const LabelledClips test = load_eval_clips("moving-toy", "test", tiny_clips(), 40, 0);
  EXPECT_NE(train.clips.images, test.clips.images);
  EXPECT_NE(train.directions, test.directions);  // other trajectories, not only other shapes
  Generator gen(5);
  const VideoClassifier net(tiny_config(), gen, Device::cpu());
  const FeatureMatrix f = extract_video_features(net, test.clips, "test");
  const FeatureMatrix g = extract_video_features(net, train.clips, "train");
  // An untrained network's features vary little, so compare against the other split's score.
  const double self = fid(f, f), other = fid(f, g);
  EXPECT_NEAR(self, 0.0, 1e-9);
  EXPECT_GT(other, 1e-7);
  EXPECT_LT(std::abs(self), 1e-3 * other) << "self " << self << ", other split " << other;
}

TEST(Fvd, PermutedFramesArePermutationsButNeverInOrder) {
  const LabelledClips real = load_eval_clips("moving-toy", "train", tiny_clips(), 30, 0);
  const Dataset shuffled = permute_clip_frames(real.clips, 7);
  ASSERT_EQ(shuffled.n, real.clips.n);
  EXPECT_EQ(shuffled.labels, real.clips.labels);
  const std::size_t fb = real.clips.frame_bytes();
  const int f = static_cast<int>(real.clips.frames);
  int checked = 0;
  for (std::int64_t i = 0; i < real.clips.n; ++i) {
    std::vector<int> order(f, -1);
    std::vector<bool> used(f, false);
    for (int j = 0; j < f; ++j)
      for (int s = 0; s < f; ++s)
        if (!used[s] && std::equal(shuffled.image(i) + j * fb, shuffled.image(i) + (j + 1) * fb,
                                   real.clips.image(i) + s * fb)) {
          order[j] = s;
          used[s] = true;
          break;
        }
    for (int j = 0; j < f; ++j) ASSERT_GE(order[j], 0) << "clip " << i << " frame " << j << " is not a real frame";
    // The order is readable from the bytes only when the clip's frames are pairwise distinct
    // (an item rounded to the same pixel twice repeats a frame).
    bool distinct = true;
    for (int j = 0; j < f; ++j)
      for (int s = j + 1; s < f; ++s)
        distinct &= !std::equal(real.clips.image(i) + j * fb, real.clips.image(i) + (j + 1) * fb,
                                real.clips.image(i) + s * fb);
    if (!distinct) continue;
    ++checked;
    const bool identity = std::is_sorted(order.begin(), order.end());
    const bool reversal = std::is_sorted(order.rbegin(), order.rend());
    EXPECT_FALSE(identity || reversal) << "clip " << i;
  }
  EXPECT_GT(checked, 20);
}

}  // namespace
}  // namespace ddpm::eval
