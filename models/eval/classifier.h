// models/eval/classifier.h: the feature network of the evaluation metrics, a small CNN the
// engine trains itself (no Inception weights are available offline).
//
// Architecture ("ddpm-eval-cnn", width w, images H x W x C with H and W multiples of 8):
//   x [N, H, W, C] in [-1, 1]
//   3 x { Conv2d 3x3 pad 1 -> GroupNorm + SiLU -> avg_pool2x }:
//        channels C -> w -> 2w -> 4w                         -> [N, H/8, W/8, 4w]
//   flatten                                                  -> [N, H/8 * W/8 * 4w]
//   Linear -> SiLU                                           -> [N, feature_dim]   "features"
//   Linear                                                   -> [N, num_classes]   logits
// The penultimate activations ("features") feed FID, KID and precision/recall.
//
// Training: cross-entropy with AdamW, cosine learning-rate decay to 0, no augmentation.
//   CE = -(1/N) sum_i log softmax(z_i)[y_i],  log softmax(z) = z - m - log sum_k e^(z_k - m)
// with m = max_k z_k per row (a constant: it cancels in the gradient) for stability.
//
// On disk, a classifier folder holds
//   model.safetensors   the parameters by name (convolutions in the engine's KRSC layout)
//   classifier.json     architecture, image size, classes, dataset, test accuracy
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/data/dataset.h"
#include "models/data/loader.h"
#include "models/nn/layers.h"

namespace ddpm::eval {

inline constexpr const char* kClassifierArchitecture = "ddpm-eval-cnn";

struct ClassifierConfig {
  int height = 32, width = 32, channels = 1;
  int num_classes = 10;
  int base_channels = 16;  // w above
  int feature_dim = 128;
  int norm_groups = 8;
  void validate() const;  // ValueError naming the first bad field
};

// The convolutional trunk both evaluation networks share (this classifier on images, the video
// classifier on frames and their differences), width w:
//   3 x { Conv2d 3x3 pad 1 -> GroupNorm + SiLU -> avg_pool2x }:
//        channels in -> w -> 2w -> 4w:     [N, H, W, in] -> [N, H/8, W/8, 4w]
// Registered under the empty name, so its parameters are the owner's conv0..2 and norm0..2.
class ConvTrunk : public nn::Module {
 public:
  ConvTrunk(int in_channels, int base_channels, int norm_groups, Generator& gen, Device device);
  Tensor forward(const Tensor& x) const;  // [N, H, W, in] -> [N, H/8, W/8, 4w]

 private:
  std::vector<nn::Conv2d*> convs_;
  std::vector<nn::GroupNorm*> norms_;
};

class Classifier : public nn::Module {
 public:
  Classifier(const ClassifierConfig& cfg, Generator& gen, Device device);
  // x [N, H, W, C] -> penultimate features [N, feature_dim].
  Tensor features(const Tensor& x) const;
  // x [N, H, W, C] -> logits [N, num_classes].
  Tensor forward(const Tensor& x) const;
  // features -> logits (the last layer alone).
  Tensor head(const Tensor& features) const;

  const ClassifierConfig& config() const { return cfg_; }
  Device device() const { return device_; }

 private:
  ClassifierConfig cfg_;
  Device device_;
  ConvTrunk* trunk_ = nullptr;
  nn::Linear* fc_ = nullptr;
  nn::Linear* out_ = nullptr;
};

// Mean cross-entropy of logits [N, K] against N class indices in [0, K). Recorded on the tape.
Tensor cross_entropy(const Tensor& logits, const std::vector<std::int64_t>& labels);

// uint8 images [i0, i0 + count) of ds -> f32 [count, H, W, C] in [-1, 1] on device
// (v / 127.5 - 1, like the batch loader).
Tensor image_batch(const Dataset& ds, std::int64_t begin, std::int64_t count, Device device);

struct ClassifierTrainOptions {
  int epochs = 2;
  std::int64_t batch_size = 64;
  double lr = 2e-3;
  double weight_decay = 1e-4;
  std::uint64_t seed = 0;
  std::int64_t max_steps = 0;  // > 0: stop after this many steps (tests)
  std::int64_t log_every = 100;
  Device device = Device::cpu();
};

// What a training run of either evaluation network reports (ClassifierTrainReport and
// video_classifier.h's VideoClassifierTrainReport add their test accuracies).
struct NetworkTrainReport {
  std::int64_t steps = 0;
  std::vector<double> losses;  // one per step
  double train_seconds = 0;
};

struct ClassifierTrainReport : NetworkTrainReport {
  double test_accuracy = 0;    // on `test` after training
};

// The loop both evaluation networks train with (this one and video_classifier.h): AdamW
// (o.lr, o.weight_decay) over all of net's parameters on batches of `data` (min(batch_size,
// N) samples, o.seed, no flips), for S = min(epochs x batches per epoch, max_steps) steps
// with cosine decay from lr to 0,
//   lr_s = lr (1 + cos(pi s / S)) / 2,
// loss_of(batch) giving each step's loss on the tape, and a line "step s/S  loss L  lr l  t s"
// (L the mean since the last line) to `log` every o.log_every steps and after the last.
// Fills report's steps, losses and train_seconds.
void train_network(nn::Module& net, std::shared_ptr<const Dataset> data, const ClassifierTrainOptions& o,
                   const std::function<Tensor(const Batch&)>& loss_of,
                   const std::function<void(const std::string&)>& log, NetworkTrainReport& report);

// Trains cls on `train` (which needs labels) and measures its accuracy on `test`.
// `log` (optional) receives one line every log_every steps.
ClassifierTrainReport train_classifier(Classifier& cls, const Dataset& train, const Dataset& test,
                                       const ClassifierTrainOptions& options,
                                       const std::function<void(const std::string&)>& log = {});

// Predicted class of every image (argmax of the logits), batch by batch, without a tape.
std::vector<std::int64_t> predict(const Classifier& cls, const Dataset& ds, std::int64_t batch_size = 256);
// Fraction of ds's images whose prediction equals their label.
double accuracy(const Classifier& cls, const Dataset& ds, std::int64_t batch_size = 256);

// Writes DIR/model.safetensors and DIR/classifier.json (with `info` merged into the json:
// dataset, test accuracy, class names...). Creates DIR when missing.
void save_classifier(const Classifier& cls, const std::string& dir, const nlohmann::json& info);
struct LoadedClassifier {
  std::unique_ptr<Classifier> model;
  nlohmann::json info;  // classifier.json as written
};
// IoError / ValueError naming the file when the folder is missing, incomplete or mismatched.
LoadedClassifier load_classifier(const std::string& dir, Device device);
// "ddpm-eval-cnn (w=32, 128-d features, 28x28x1 -> 10 classes; test accuracy 91.2% on fashion-mnist/test)"
std::string describe_classifier(const LoadedClassifier& c);

}  // namespace ddpm::eval
