// BatchLoader: permutations, scaling, drop_last, flips, determinism, and resuming from a
// saved position.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "engine/error.h"
#include "models/data/loader.h"
#include "models/data/toy.h"

namespace ddpm {
namespace {

// n images of 2x3x2 with distinct bytes: image i, pixel (y, x), channel c = (i * 12 + y * 6 + x * 2 + c) mod 256.
std::shared_ptr<const Dataset> numbered(std::int64_t n) {
  auto ds = std::make_shared<Dataset>();
  ds->name = "numbered";
  ds->n = n;
  ds->height = 2;
  ds->width = 3;
  ds->channels = 2;
  ds->num_classes = 5;
  for (std::int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < 12; ++j) ds->images.push_back(static_cast<std::uint8_t>((i * 12 + j) % 256));
    ds->labels.push_back(i % 5);
  }
  return ds;
}

// LoaderOptions without designated initializers (C++17).
LoaderOptions opts(std::int64_t batch_size, std::uint64_t seed = 0, bool shuffle = true, bool flip = false,
                   bool drop_last = true) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.seed = seed;
  o.shuffle = shuffle;
  o.random_flip = flip;
  o.drop_last = drop_last;
  return o;
}

TEST(BatchLoader, EachEpochIsAPermutationThatDependsOnSeedAndEpoch) {
  auto ds = numbered(50);
  BatchLoader a(ds, opts(8, 1));
  BatchLoader b(ds, opts(8, 2));
  std::vector<std::int64_t> e0 = a.epoch_order(0), e1 = a.epoch_order(1);
  std::vector<std::int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t i = 0; i < 50; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, b.epoch_order(0));
  EXPECT_EQ(e0, BatchLoader(ds, opts(8, 1)).epoch_order(0));
  BatchLoader plain(ds, opts(8, 0, false));
  EXPECT_EQ(plain.epoch_order(3), sorted);

  // drop_last: 6 batches of 8 per epoch, then epoch 1 starts; the batches cover e0[0..48).
  EXPECT_EQ(a.batches_per_epoch(), 6);
  std::vector<std::int64_t> visited;
  for (int k = 0; k < 6; ++k) {
    Batch batch = a.next();
    EXPECT_EQ(batch.images.shape(), (Shape{8, 2, 3, 2}));
    EXPECT_EQ(batch.position.epoch, 0);
    EXPECT_EQ(batch.position.index, 8 * k);
    visited.insert(visited.end(), batch.indices.begin(), batch.indices.end());
  }
  EXPECT_EQ(visited, std::vector<std::int64_t>(e0.begin(), e0.begin() + 48));
  EXPECT_EQ(a.position(), (LoaderPosition{1, 0}));
  EXPECT_EQ(a.next().indices[0], e1[0]);
}

TEST(BatchLoader, BatchesAreScaledToMinusOneOneWithTheirLabels) {
  auto ds = std::make_shared<Dataset>(*numbered(3));
  auto& imgs = ds->images;
  imgs[0] = 0;
  imgs[1] = 255;
  imgs[2] = 51;
  BatchLoader loader(ds, opts(2, 0, false, false, false));
  EXPECT_EQ(loader.batches_per_epoch(), 2);
  Batch first = loader.next();
  std::vector<float> v = first.images.to_vector();
  EXPECT_EQ(first.images.dtype(), DType::f32);
  EXPECT_EQ(v[0], -1.f);
  EXPECT_EQ(v[1], 1.f);
  EXPECT_FLOAT_EQ(v[2], 51 / 127.5 - 1);
  EXPECT_FLOAT_EQ(v[12 + 5], (12 + 5) / 127.5 - 1);
  EXPECT_EQ(first.labels, (std::vector<std::int64_t>{0, 1}));
  Batch last = loader.next();  // the short last batch of the epoch
  EXPECT_EQ(last.images.dim(0), 1);
  EXPECT_EQ(last.labels, (std::vector<std::int64_t>{2}));
  EXPECT_EQ(loader.position(), (LoaderPosition{1, 0}));
}

TEST(BatchLoader, FlipMirrorsTheWidthAxisForAboutHalfTheSamples) {
  auto ds = numbered(64);
  BatchLoader loader(ds, opts(64, 5, true, true));
  Batch batch = loader.next();
  std::vector<float> v = batch.images.to_vector();
  int flips = 0;
  for (int k = 0; k < 64; ++k) {
    const bool flip = batch.flipped[k];
    flips += flip;
    EXPECT_EQ(flip, loader.flip_at(0, k));
    const std::uint8_t* src = ds->image(batch.indices[k]);
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x)
        for (int c = 0; c < 2; ++c) {
          const int sx = flip ? 2 - x : x;
          EXPECT_EQ(v[k * 12 + (y * 3 + x) * 2 + c], static_cast<float>(src[(y * 3 + sx) * 2 + c] / 127.5 - 1.0));
        }
  }
  EXPECT_GT(flips, 16);
  EXPECT_LT(flips, 48);
  BatchLoader no_flip(ds, opts(64, 5));
  Batch nb = no_flip.next();
  EXPECT_EQ(std::count(nb.flipped.begin(), nb.flipped.end(), 1), 0);
  EXPECT_EQ(nb.indices, batch.indices);  // flipping does not change the order
}

TEST(BatchLoader, ResumingFromASavedPositionGivesTheSameBatches) {
  auto ds = std::make_shared<const Dataset>(make_toy_shapes(37, 11, 8));
  const LoaderOptions opt = opts(5, 99, true, true);
  BatchLoader straight(ds, opt);
  std::vector<Batch> reference;
  for (int k = 0; k < 20; ++k) reference.push_back(straight.next());  // 7 batches per epoch: crosses 2 epochs

  BatchLoader first(ds, opt);
  for (int k = 0; k < 9; ++k) first.next();
  LoaderPosition saved = first.position();
  EXPECT_EQ(saved, (LoaderPosition{1, 10}));

  BatchLoader resumed(ds, opt);
  resumed.set_position(saved);
  for (int k = 9; k < 20; ++k) {
    Batch b = resumed.next();
    EXPECT_EQ(b.position, reference[k].position) << "batch " << k;
    EXPECT_EQ(b.indices, reference[k].indices) << "batch " << k;
    EXPECT_EQ(b.labels, reference[k].labels) << "batch " << k;
    EXPECT_EQ(b.images.to_vector(), reference[k].images.to_vector()) << "batch " << k;
  }

  EXPECT_THROW(resumed.set_position({0, 3}), ValueError);   // not a batch boundary
  EXPECT_THROW(resumed.set_position({0, 35}), ValueError);  // past the last full batch
  EXPECT_THROW(resumed.set_position({-1, 0}), ValueError);
}

TEST(BatchLoader, InvalidOptionsAreRejected) {
  auto ds = numbered(4);
  EXPECT_THROW(BatchLoader(ds, opts(0)), ValueError);
  EXPECT_THROW(BatchLoader(ds, opts(5)), ValueError);  // drop_last leaves nothing
  EXPECT_NO_THROW(BatchLoader(ds, opts(5, 0, true, false, false)));
  EXPECT_THROW(BatchLoader(nullptr, {}), ValueError);
  auto broken = std::make_shared<Dataset>(*ds);
  broken->labels[2] = 7;  // num_classes is 5
  EXPECT_THROW(BatchLoader(broken, opts(2)), ValueError);
}

}  // namespace
}  // namespace ddpm
