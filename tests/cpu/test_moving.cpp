// Video data: bouncing-item clips (models/data/moving.h), clip datasets (frames > 1) in
// Dataset and BatchLoader, and the moving-* --data specs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "engine/error.h"
#include "models/data/loader.h"
#include "models/data/moving.h"
#include "models/data/toy.h"
#include "models/run/data_spec.h"

namespace ddpm {
namespace {

MovingClipsOptions clip_opts(std::uint64_t seed, int frames = 6, int canvas = 24, int item_size = 8, int items = 1) {
  MovingClipsOptions o;
  o.seed = seed;
  o.frames = frames;
  o.canvas = canvas;
  o.item_size = item_size;
  o.items = items;
  return o;
}

std::int64_t sum_bytes(const std::uint8_t* p, std::size_t n) { return std::accumulate(p, p + n, std::int64_t{0}); }

TEST(MovingClips, SameSeedSameBytesAndAnotherSeedDiffers) {
  const Dataset src = make_toy_shapes(6, 1);
  const Dataset a = make_moving_clips(src, clip_opts(3));
  const Dataset b = make_moving_clips(src, clip_opts(3));
  const Dataset c = make_moving_clips(src, clip_opts(4));
  EXPECT_EQ(a.n, 6);
  EXPECT_EQ(a.frames, 6);
  EXPECT_EQ(a.height, 24);
  EXPECT_EQ(a.images.size(), 6u * 6 * 24 * 24);
  EXPECT_EQ(a.images, b.images);
  EXPECT_EQ(a.captions, b.captions);
  EXPECT_NE(a.images, c.images);
  // Clip k depends on (seed, k) only: building more clips leaves the first ones as they were.
  MovingClipsOptions more = clip_opts(3);
  more.count = 9;
  const Dataset m = make_moving_clips(src, more);
  EXPECT_TRUE(std::equal(a.images.begin(), a.images.end(), m.images.begin()));
}

TEST(MovingClips, OneFrameGivesTheFirstFramesOfLongerClips) {
  // --frames 1 is the image set of Emu Video's first stage: frame 0 of every clip, with the
  // same labels and captions, whatever length the clips have (two items too).
  const Dataset src = make_toy_shapes(5, 1);
  const Dataset clips = make_moving_clips(src, clip_opts(7, 6, 24, 8, 2));
  const Dataset stills = make_moving_clips(src, clip_opts(7, 1, 24, 8, 2));
  ASSERT_EQ(stills.frames, 1);
  ASSERT_EQ(stills.n, clips.n);
  for (std::int64_t i = 0; i < clips.n; ++i)
    EXPECT_TRUE(std::equal(stills.image(i), stills.image(i) + stills.frame_bytes(), clips.image(i))) << "clip " << i;
  EXPECT_EQ(stills.labels, clips.labels);
  EXPECT_EQ(stills.captions, clips.captions);
}

TEST(MovingClips, AreaResizeAveragesTheCoveredPixels) {
  // 4x4 -> 2x2 averages 2x2 blocks; 2x2 -> 4x4 replicates each pixel.
  const std::vector<std::uint8_t> img = {0, 10, 100, 100,   //
                                         20, 30, 100, 100,  //
                                         0, 0, 255, 255,    //
                                         0, 1, 255, 254};
  EXPECT_EQ(resize_area(img.data(), 4, 4, 1, 2), (std::vector<std::uint8_t>{15, 100, 0, 255}));  // 0.25 -> 0, 254.75 -> 255
  const std::vector<std::uint8_t> small = {1, 2, 3, 4};
  EXPECT_EQ(resize_area(small.data(), 2, 2, 1, 4),
            (std::vector<std::uint8_t>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));
  // 3 -> 2: output pixel 0 covers source [0, 1.5): (1 * 30 + 0.5 * 60) / 1.5 = 40 per row.
  const std::vector<std::uint8_t> three = {30, 60, 90, 30, 60, 90, 30, 60, 90};
  EXPECT_EQ(resize_area(three.data(), 3, 3, 1, 2), (std::vector<std::uint8_t>{40, 80, 40, 80}));
}

TEST(MovingClips, EveryFrameHoldsExactlyTheResizedItem) {
  const Dataset src = make_toy_shapes(5, 2, 16);
  const Dataset clips = make_moving_clips(src, clip_opts(7, 10, 24, 8));
  for (std::int64_t k = 0; k < clips.n; ++k) {
    const std::vector<std::uint8_t> item = resize_area(src.image(k), 16, 16, 1, 8);
    const std::int64_t item_sum = sum_bytes(item.data(), item.size());
    ASSERT_GT(item_sum, 0);
    for (int f = 0; f < clips.frames; ++f)
      EXPECT_EQ(sum_bytes(clips.image(k) + f * clips.frame_bytes(), clips.frame_bytes()), item_sum)
          << "clip " << k << " frame " << f;
    EXPECT_EQ(clips.labels[k], src.labels[k]);  // the first item is source image k
  }
}

TEST(MovingClips, BounceReflectsAtTheWalls) {
  // limit 10, moving right at 2 px/frame from x = 9: 9, then 11 reflects to 2*10 - 11 = 9
  // with the velocity reversed, then 7, 5; y does not move.
  auto p = bounce_path(ItemPath{9, 4, 2, 0}, 4, 10);
  ASSERT_EQ(p.size(), 4u);
  const double xs[4] = {9, 9, 7, 5};
  for (int f = 0; f < 4; ++f) {
    EXPECT_DOUBLE_EQ(p[f][0], xs[f]) << f;
    EXPECT_DOUBLE_EQ(p[f][1], 4) << f;
  }
  // Towards the top-left corner: both components reverse at 0 (p -> -p).
  p = bounce_path(ItemPath{1, 0.5, -1.5, -1}, 3, 10);
  EXPECT_DOUBLE_EQ(p[1][0], 0.5);
  EXPECT_DOUBLE_EQ(p[1][1], 0.5);
  EXPECT_DOUBLE_EQ(p[2][0], 2);
  EXPECT_DOUBLE_EQ(p[2][1], 1.5);
  // A step longer than the range bounces several times: the folded line 0, 10, 20 on a
  // range of 3 (period 6) is 0, 2, 2.
  p = bounce_path(ItemPath{0, 0, 10, 0}, 3, 3);
  EXPECT_DOUBLE_EQ(p[1][0], 2);
  EXPECT_DOUBLE_EQ(p[2][0], 2);
  EXPECT_THROW(bounce_path(ItemPath{11, 0, 0, 0}, 3, 10), ValueError);
}

TEST(MovingClips, DrawnPathsStayInsideTheCanvasWithinTheSpeedRange) {
  MovingClipsOptions o = clip_opts(5);
  o.min_speed = 2;
  o.max_speed = 4;
  const double limit = 24 - 8;
  int reversals = 0;
  for (std::int64_t k = 0; k < 200; ++k) {
    const ItemPath start = draw_item_path(o, k, 0, limit);
    const double speed = std::hypot(start.vx, start.vy);
    EXPECT_GE(speed, 2 - 1e-12);
    EXPECT_LE(speed, 4 + 1e-12);
    const auto path = bounce_path(start, 40, limit);
    for (const auto& q : path)
      for (double c : q) {
        ASSERT_GE(c, 0) << "clip " << k;
        ASSERT_LE(c, limit) << "clip " << k;
      }
    for (std::size_t f = 2; f < path.size(); ++f)
      reversals += (path[f][0] - path[f - 1][0]) * (path[f - 1][0] - path[f - 2][0]) < 0;
  }
  EXPECT_GT(reversals, 100);  // 40 frames at >= 2 px/frame on a range of 16: most paths bounce
}

TEST(MovingClips, CaptionsNameTheClassAndTheCompassDirection) {
  EXPECT_EQ(compass_word(1, 0), "right");
  EXPECT_EQ(compass_word(0, -2), "up");  // y grows downwards
  EXPECT_EQ(compass_word(1, 1), "down-right");
  EXPECT_EQ(compass_word(-1, -1), "up-left");
  EXPECT_EQ(compass_word(-3, 0.5), "left");
  EXPECT_EQ(compass_word(0, 0), "still");
  const Dataset src = make_toy_shapes(4, 3);
  const MovingClipsOptions o = clip_opts(2);
  const Dataset clips = make_moving_clips(src, o);
  ASSERT_EQ(clips.captions.size(), 4u);
  EXPECT_EQ(clips.class_names, src.class_names);
  EXPECT_EQ(clips.num_classes, src.num_classes);
  for (std::int64_t k = 0; k < 4; ++k) {
    const ItemPath p = draw_item_path(o, k, 0, 24 - 8);
    EXPECT_EQ(clips.captions[k], src.class_names[src.labels[k]] + " moving " + compass_word(p.vx, p.vy));
  }
  EXPECT_NE(clips.describe().find("4 clips of 6 frames of 24x24x1"), std::string::npos) << clips.describe();
}

TEST(MovingClips, OverlappingItemsCombineByMax) {
  // Flat 4x4 items of value 200 on an 8x8 canvas: a max keeps every pixel 0 or 200, where a
  // sum would show 255 (saturated) on the overlaps.
  Dataset flat;
  flat.name = "flat";
  flat.n = 3;
  flat.height = flat.width = 4;
  flat.channels = 1;
  flat.images.assign(3 * 16, 200);
  const Dataset two = make_moving_clips(flat, clip_opts(1, 6, 8, 4, 2));
  int overlapping = 0;
  for (std::int64_t k = 0; k < two.n; ++k)
    for (int f = 0; f < two.frames; ++f) {
      const std::uint8_t* frame = two.image(k) + f * two.frame_bytes();
      const auto lit = std::count(frame, frame + two.frame_bytes(), std::uint8_t{200});
      EXPECT_EQ(lit + std::count(frame, frame + two.frame_bytes(), std::uint8_t{0}), 64) << k << " " << f;
      EXPECT_GE(lit, 16);
      EXPECT_LE(lit, 32);
      overlapping += lit < 32;
    }
  EXPECT_GT(overlapping, 0);  // some frames do overlap, so the rule was exercised
}

TEST(MovingClips, BadOptionsAreValueErrors) {
  const Dataset src = make_toy_shapes(3, 1);
  auto bad = [&](MovingClipsOptions o) { EXPECT_THROW(make_moving_clips(src, o), ValueError); };
  MovingClipsOptions o = clip_opts(0);
  o.frames = 0;
  bad(o);
  o = clip_opts(0, 4, 8, 9);  // item larger than canvas
  bad(o);
  o = clip_opts(0);
  o.items = 0;
  bad(o);
  o = clip_opts(0);
  o.min_speed = 3;
  o.max_speed = 2;
  bad(o);
  o = clip_opts(0);
  o.min_speed = -1;
  bad(o);
  o = clip_opts(0);
  o.count = -1;
  bad(o);
  Dataset two_channel = src;
  two_channel.channels = 2;
  two_channel.images.resize(src.images.size() * 2);
  EXPECT_THROW(make_moving_clips(two_channel, clip_opts(0)), ValueError);
  const Dataset clips = make_moving_clips(src, clip_opts(0));
  EXPECT_THROW(make_moving_clips(clips, clip_opts(0)), ValueError);  // already video
  EXPECT_THROW(make_moving_clips(take(src, 0), clip_opts(0)), ValueError);
  try {
    make_moving_clips(src, clip_opts(0, 4, 8, 9));
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("larger than the canvas"), std::string::npos) << e.what();
  }
}

TEST(ClipDataset, ValidatePadAndTakeHandleFrames) {
  Dataset d = make_moving_clips(make_toy_shapes(3, 1), clip_opts(9, 3, 10, 6));
  Dataset bad = d;
  bad.frames = 0;
  EXPECT_THROW(bad.validate(), ValueError);
  bad = d;
  bad.frames = 4;  // the buffer holds 3 frames per clip
  EXPECT_THROW(bad.validate(), ValueError);
  const Dataset padded = pad_to(d, 12);  // one pixel of border on every side of every frame
  EXPECT_EQ(padded.images.size(), 3u * 3 * 12 * 12);
  for (std::int64_t i = 0; i < 3; ++i)
    for (int f = 0; f < 3; ++f) {
      const std::uint8_t* pf = padded.image(i) + f * padded.frame_bytes();
      const std::uint8_t* df = d.image(i) + f * d.frame_bytes();
      for (int y = 0; y < 10; ++y)
        for (int x = 0; x < 10; ++x) ASSERT_EQ(pf[(y + 1) * 12 + x + 1], df[y * 10 + x]);
      EXPECT_EQ(sum_bytes(pf, padded.frame_bytes()), sum_bytes(df, d.frame_bytes()));
    }
  const Dataset t = take(d, 2);
  EXPECT_EQ(t.images.size(), 2u * 3 * 10 * 10);
  EXPECT_TRUE(std::equal(t.images.begin(), t.images.end(), d.images.begin()));
  EXPECT_EQ(t.captions.size(), 2u);
}

// frames[f] of clip i is image i of `frames` image datasets: the clip loader must give clip
// i's frame f exactly where an image loader over frames[f] gives image i (same order, flips).
TEST(ClipLoader, YieldsFiveDimBatchesWithOneFlipPerClipAndMatchesTheImageLoader) {
  const std::int64_t n = 12, F = 3;
  std::vector<std::shared_ptr<const Dataset>> frames;
  for (int f = 0; f < F; ++f) frames.push_back(std::make_shared<const Dataset>(make_toy_shapes(n, 10 + f, 8)));
  auto clips = std::make_shared<Dataset>(*frames[0]);
  clips->frames = F;
  clips->images.clear();
  for (std::int64_t i = 0; i < n; ++i)
    for (int f = 0; f < F; ++f)
      clips->images.insert(clips->images.end(), frames[f]->image(i), frames[f]->image(i) + 64);
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.seed = 21;
  opt.random_flip = true;
  BatchLoader clip_loader(clips, opt);
  std::vector<BatchLoader> image_loaders;
  for (int f = 0; f < F; ++f) image_loaders.emplace_back(frames[f], opt);
  int flips = 0;
  for (int step = 0; step < 6; ++step) {  // two epochs
    Batch cb = clip_loader.next();
    ASSERT_EQ(cb.images.shape(), (Shape{4, F, 8, 8, 1}));
    const std::vector<float> cv = cb.images.to_vector();
    for (int f = 0; f < F; ++f) {
      Batch ib = image_loaders[f].next();
      ASSERT_EQ(ib.images.ndim(), 4);  // frames == 1: [B, H, W, C] as before
      EXPECT_EQ(ib.indices, cb.indices);
      EXPECT_EQ(ib.flipped, cb.flipped);
      const std::vector<float> iv = ib.images.to_vector();
      for (int k = 0; k < 4; ++k)
        for (int p = 0; p < 64; ++p) ASSERT_EQ(cv[(k * F + f) * 64 + p], iv[k * 64 + p]) << step << " " << f << " " << k;
    }
    for (int k = 0; k < 4; ++k) {
      flips += cb.flipped[k];
      // The flip mirrors each frame of the clip: frame f, row y is the source row reversed.
      const std::uint8_t* src = clips->image(cb.indices[k]);
      for (int f = 0; f < F; ++f)
        for (int y = 0; y < 8; ++y)
          for (int x = 0; x < 8; ++x) {
            const int sx = cb.flipped[k] ? 7 - x : x;
            ASSERT_EQ(cv[((k * F + f) * 8 + y) * 8 + x], static_cast<float>(src[(f * 8 + y) * 8 + sx] / 127.5 - 1.0));
          }
    }
  }
  EXPECT_GT(flips, 0);
  EXPECT_LT(flips, 24);
}

TEST(ClipLoader, ResumesBitIdenticallyAtASavedPosition) {
  auto clips = std::make_shared<const Dataset>(make_moving_clips(make_toy_shapes(11, 4, 8), clip_opts(6, 4, 12, 8)));
  LoaderOptions opt;
  opt.batch_size = 3;
  opt.seed = 8;
  opt.random_flip = true;
  BatchLoader straight(clips, opt);
  std::vector<Batch> reference;
  for (int k = 0; k < 8; ++k) reference.push_back(straight.next());  // 3 per epoch: crosses 2 epochs
  BatchLoader first(clips, opt);
  for (int k = 0; k < 4; ++k) first.next();
  BatchLoader resumed(clips, opt);
  resumed.set_position(first.position());
  for (int k = 4; k < 8; ++k) {
    Batch b = resumed.next();
    EXPECT_EQ(b.position, reference[k].position) << k;
    EXPECT_EQ(b.indices, reference[k].indices) << k;
    EXPECT_EQ(b.flipped, reference[k].flipped) << k;
    EXPECT_EQ(b.images.shape(), (Shape{3, 4, 12, 12, 1}));
    EXPECT_EQ(b.images.to_vector(), reference[k].images.to_vector()) << k;
  }
}

TEST(MovingDataSpec, ParsesLoadsAndRefusesClipFlagsElsewhere) {
  using run::DataSpec;
  EXPECT_EQ(run::parse_data_spec("moving-fashion-mnist").kind, DataSpec::Kind::moving_fashion_mnist);
  EXPECT_EQ(run::parse_data_spec("moving-fashion-mnist:/d").path, "/d");
  EXPECT_EQ(run::parse_data_spec("moving-toy").kind, DataSpec::Kind::moving_toy);
  EXPECT_THROW(run::parse_data_spec("moving-fashion-mnist:"), ValueError);
  run::DataOptions opt;
  opt.toy_count = 5;
  opt.frames = 4;
  opt.canvas = 20;
  opt.item_size = 10;
  const Dataset d = run::load_data(run::parse_data_spec("moving-toy"), opt);
  EXPECT_EQ(d.n, 5);
  EXPECT_EQ(d.frames, 4);
  EXPECT_EQ(d.height, 20);
  EXPECT_EQ(d.num_classes, kToyShapeClasses);
  EXPECT_THROW(run::load_data(run::parse_data_spec("moving-fashion-mnist:/nonexistent"), opt), IoError);
  try {  // a clip flag with still-image data does nothing, so it is refused by name
    run::load_data(run::parse_data_spec("toy"), opt);
    FAIL() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("--frames"), std::string::npos) << e.what();
  }
  run::DataOptions one_frame;
  one_frame.toy_count = 5;
  one_frame.frames = 0;
  EXPECT_THROW(run::load_data(run::parse_data_spec("moving-toy"), one_frame), ValueError);
  run::DataOptions big_item;
  big_item.toy_count = 5;
  big_item.item_size = 40;
  try {
    run::load_data(run::parse_data_spec("moving-toy"), big_item);
    FAIL() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("--item-size"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ddpm
