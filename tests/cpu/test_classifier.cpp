// The evaluation classifier: cross-entropy against hand-computed values and finite
// differences, a short training run on toy shapes (loss falls, accuracy high), and the
// classifier folder round trip.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "models/data/toy.h"
#include "models/eval/classifier.h"
#include "tests/support/gradcheck.h"
#include "tests/support/temp_dir.h"

namespace ddpm::eval {
namespace {

TEST(EvalClassifier, CrossEntropyMatchesHandComputedValue) {
  // Rows z = (1, 2, 3) with label 2 and (0, 0, 0) with label 0:
  //   CE = ((log(e + e^2 + e^3) - 3) + log 3) / 2
  const Tensor z = Tensor::from_vector(std::vector<double>{1, 2, 3, 0, 0, 0}, {2, 3});
  const double expected = (std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3 + std::log(3.0)) / 2;
  EXPECT_NEAR(cross_entropy(z, {2, 0}).item(), expected, 1e-12);
  // Large logits stay finite (the row maximum is subtracted).
  const Tensor big = Tensor::from_vector(std::vector<double>{1000, 0, -1000, 1000}, {2, 2});
  EXPECT_NEAR(cross_entropy(big, {0, 1}).item(), 0.0, 1e-12);
  EXPECT_THROW(cross_entropy(z, {3, 0}), ValueError);
  EXPECT_THROW(cross_entropy(z, {0}), ValueError);
}

TEST(EvalClassifier, CrossEntropyGradientMatchesFiniteDifferences) {
  const Tensor z = testing::random_tensor({4, 5}, 11).set_requires_grad(true);
  EXPECT_TRUE(testing::gradcheck([](const std::vector<Tensor>& in) { return cross_entropy(in[0], {0, 4, 2, 2}); },
                                 {z}));
}

TEST(EvalClassifier, RejectsSizesThatDoNotPoolThreeTimes) {
  ClassifierConfig c;
  c.height = c.width = 28;
  Generator gen(0);
  EXPECT_THROW(Classifier(c, gen, Device::cpu()), ValueError);
}

TEST(EvalClassifier, LearnsToyShapesAndRoundTripsThroughItsFolder) {
  const auto t0 = std::chrono::steady_clock::now();
  const Dataset train = make_toy_shapes(512, 1), test = make_toy_shapes(200, 2);
  ClassifierConfig c;
  c.height = c.width = 16;
  c.channels = 1;
  c.num_classes = kToyShapeClasses;
  c.base_channels = 8;
  c.feature_dim = 32;
  c.norm_groups = 4;
  Generator gen(5);
  Classifier cls(c, gen, Device::cpu());
  ClassifierTrainOptions o;
  o.epochs = 8;
  o.batch_size = 32;
  o.lr = 5e-3;
  const ClassifierTrainReport r = train_classifier(cls, train, test, o);
  ASSERT_EQ(r.steps, 8 * 16);
  double first = 0, last = 0;
  for (int i = 0; i < 8; ++i) first += r.losses[i], last += r.losses[r.losses.size() - 1 - i];
  EXPECT_LT(last, 0.5 * first);
  EXPECT_GE(r.test_accuracy, 0.88);  // 4 classes: chance is 0.25

  const std::string dir = testing::temp_path("eval_classifier");
  save_classifier(cls, dir, {{"test_accuracy", r.test_accuracy}, {"test_split", "toy-shapes/test"}});
  const LoadedClassifier back = load_classifier(dir, Device::cpu());
  EXPECT_EQ(back.model->config().feature_dim, 32);
  EXPECT_EQ(predict(*back.model, test), predict(cls, test));
  EXPECT_NE(describe_classifier(back).find("ddpm-eval-cnn"), std::string::npos);
  EXPECT_THROW(load_classifier(dir + "/missing", Device::cpu()), IoError);
  std::filesystem::remove_all(dir);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20.0);
}

}  // namespace
}  // namespace ddpm::eval
