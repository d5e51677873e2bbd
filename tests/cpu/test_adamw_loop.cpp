// models/train/adamw_loop.h: the side networks' loop. LossWindow's lines fall every `every`
// steps and on the last, each the mean of its own window (the last one shorter); one
// AdamWLoop step equals the slab / AdamW / loader sequence it replaces, bit for bit.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "engine/optim.h"
#include "engine/parameters.h"
#include "models/data/loader.h"
#include "models/data/toy.h"
#include "models/eval/classifier.h"
#include "models/train/adamw_loop.h"

namespace ddpm::train {
namespace {

TEST(LossWindow, LinesEveryNStepsAndAtTheEndWithTheirWindowsMeans) {
  // 7 steps, a line every 3: after steps 3, 6 and 7 (1-based), of windows {1,2,3}, {4,5,6}, {7}.
  LossWindow w(7, 3);
  std::vector<std::int64_t> due;
  std::vector<double> means, second;
  for (std::int64_t s = 0; s < 7; ++s) {
    const double v = static_cast<double>(s + 1);
    if (w.add(s, {v, 10 * v})) {
      due.push_back(s + 1);
      means.push_back(w.mean(0));
      second.push_back(w.mean(1));
    }
  }
  EXPECT_EQ(due, (std::vector<std::int64_t>{3, 6, 7}));
  EXPECT_EQ(means, (std::vector<double>{2.0, 5.0, 7.0}));
  EXPECT_EQ(second, (std::vector<double>{20.0, 50.0, 70.0}));
  EXPECT_GE(w.seconds(), 0.0);
}

TEST(LossWindow, NoLinesWhenEveryIsZero) {
  LossWindow w(4, 0);
  for (std::int64_t s = 0; s < 4; ++s) EXPECT_FALSE(w.add(s, {1.0}));
}

TEST(AdamWLoop, StepEqualsTheSlabAdamWLoaderSequence) {
  auto data = std::make_shared<const Dataset>(make_toy_shapes(32, 1));
  eval::ClassifierConfig c;
  c.height = c.width = 16;
  c.num_classes = kToyShapeClasses;
  c.base_channels = 4;
  c.feature_dim = 8;
  c.norm_groups = 2;
  Generator g1(7), g2(7);
  eval::Classifier a(c, g1, Device::cpu()), b(c, g2, Device::cpu());
  AdamWConfig ac;
  ac.lr = 1e-2;
  ac.weight_decay = 1e-3;
  // By hand: the sequence train_classifier ran before AdamWLoop existed.
  ParameterSlab slab(b.named_parameters());
  AdamW opt(slab, ac);
  LoaderOptions lo;
  lo.batch_size = 8;
  lo.seed = 3;
  BatchLoader loader(data, lo);
  AdamWLoop loop(a.named_parameters(), ac, data, 8, 3, Device::cpu());
  for (int step = 0; step < 3; ++step) {
    const double lr = 1e-2 / (step + 1);
    const Batch ba = loop.next(), bb = loader.next();
    ASSERT_EQ(ba.indices, bb.indices);
    const double la = loop.step(eval::cross_entropy(a.forward(ba.images), ba.labels), lr);
    slab.zero_grad();
    const Tensor lb = eval::cross_entropy(b.forward(bb.images), bb.labels);
    lb.backward();
    opt.set_lr(lr);
    opt.step();
    EXPECT_EQ(la, lb.item()) << "step " << step;
  }
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second.to_double_vector(), pb[i].second.to_double_vector()) << pa[i].first;
}

}  // namespace
}  // namespace ddpm::train
