// models/eval/video_classifier.h: the feature network of the Frechet Video Distance, a small
// video CNN the engine trains itself on moving-* clips (models/data/moving.h).
//
// FVD (Unterthiner et al. 2018, "Towards Accurate Generative Models of Video: A New Metric
// & Challenges") is FID's Frechet distance between Gaussians fitted to features of real and
// generated clips, the features taken from an I3D network (Carreira & Zisserman 2017) trained
// on Kinetics. No I3D weights are available offline, so, as for FID (classifier.h), the
// features come from a network trained here; its numbers are NOT comparable to published FVD.
// What matters is that the features see motion, so the network is trained on targets that
// need it: the clip's class (when the clips are labelled) AND the compass direction of its
// first item's initial velocity (moving_direction_labels: 8 bins), which no single frame
// tells.
//
// Architecture ("ddpm-eval-video-cnn", width w, clips F x H x W x C, H and W multiples of 8):
//   x [N, F, H, W, C] in [-1, 1]
//   u[f] = concat(x[f], x[f+1] - x[f]) on channels, x[F] = x[F-1]  -> [N*F, H, W, 2C]
//   per frame, the image classifier's trunk (classifier.h) on u:
//     3 x { Conv2d 3x3 pad 1 -> GroupNorm + SiLU -> avg_pool2x }  -> [N*F, H/8, W/8, 4w]
//     flatten -> Linear -> SiLU                                   -> e [N, F, D]  (D = frame_dim)
//   temporal convolution over frames, kernel 3, zero-padded at each clip's ends:
//     u[f] = concat(e[f-1], e[f], e[f+1])                         -> [N, F, 3D]
//     h = SiLU(Linear(u))                                         -> [N, F, T]    (T = temporal_dim)
//   mean over frames                                              -> [N, T]
//   Linear -> SiLU                                                -> [N, feature_dim]   "features"
//   Linear                                                        -> [N, K + 8]  logits
// Two routes to motion. The pixel difference x[f+1] - x[f] (the "RGB difference" input of
// Wang et al. 2016, Temporal Segment Networks) is positive on the item's leading
// edge and negative on its trailing one, so the convolutions read the direction of a step
// locally. And the per-frame embedding keeps where the item is (the flattened map is
// position-aware), so the temporal kernel reads displacements between frames: its taps on
// e[f+1] and e[f-1] with opposite signs are a feature difference, its middle tap appearance.
// The mean over frames forgets absolute time but not order: each h[f] depends on which frames
// are f's neighbours, so permuting a clip's frames changes the features (the "shuffled" line
// of ddpm-eval fvd measures exactly that).
// Logits: the first K = num_classes are the class (absent when num_classes = 0, unlabelled
// clips), the last 8 the direction bins (compass_bin's order).
//
// Training: the sum of the two cross-entropies (classifier.h cross_entropy), AdamW, cosine
// decay to 0 (classifier.h train_network), no flips (a mirrored clip would move the other way).
//
// On disk, a video classifier folder holds
//   model.safetensors        the parameters by name (convolutions in the engine's KRSC layout)
//   video_classifier.json    architecture, clip shape, the clip options it was trained on,
//                            classes, dataset, test accuracies
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/data/dataset.h"
#include "models/eval/classifier.h"
#include "models/eval/metrics.h"
#include "models/nn/layers.h"

namespace ddpm::eval {

inline constexpr const char* kVideoClassifierArchitecture = "ddpm-eval-video-cnn";
inline constexpr int kDirectionBins = 8;  // compass bins of moving.h

struct VideoClassifierConfig {
  int frames = 8, height = 32, width = 32, channels = 1;
  int num_classes = 10;  // K; 0 = no class head (the direction only)
  int base_channels = 16;
  int frame_dim = 64;     // D: the per-frame embedding
  int temporal_dim = 64;  // T: channels of the temporal convolution
  int feature_dim = 128;
  int norm_groups = 8;
  void validate() const;  // ValueError naming the first bad field
};

class VideoClassifier : public nn::Module {
 public:
  VideoClassifier(const VideoClassifierConfig& cfg, Generator& gen, Device device);
  // x [N, F, H, W, C] -> per-frame embeddings e [N, F, frame_dim].
  Tensor frame_embeddings(const Tensor& x) const;
  // x [N, F, H, W, C] -> the FVD features [N, feature_dim].
  Tensor features(const Tensor& x) const;
  // x [N, F, H, W, C] -> logits [N, num_classes + 8].
  Tensor forward(const Tensor& x) const;

  const VideoClassifierConfig& config() const { return cfg_; }
  Device device() const { return device_; }

 private:
  VideoClassifierConfig cfg_;
  Device device_;
  ConvTrunk* trunk_ = nullptr;  // classifier.h, on 2C channels
  nn::Linear* frame_fc_ = nullptr;
  nn::Linear* temporal_ = nullptr;  // [T, 3D]: column block k multiplies frame f + k - 1
  nn::Linear* fc_ = nullptr;
  nn::Linear* out_ = nullptr;
};

// Clips with their two targets: directions[i] = the compass bin of clip i (moving.h).
struct LabelledClips {
  Dataset clips;                         // frames >= 2; labels = classes (or empty)
  std::vector<std::int64_t> directions;  // [clips.n], each in [0, 8)
};

// uint8 clips [i0, i0 + count) of ds -> f32 [count, F, H, W, C] in [-1, 1] on device.
Tensor clip_batch(const Dataset& ds, std::int64_t begin, std::int64_t count, Device device);

// The training loss of a batch: CE(class logits, labels) (when K > 0) + CE(direction logits,
// directions). labels is empty exactly when the network has no class head.
Tensor video_classifier_loss(const VideoClassifier& cls, const Tensor& clips, const std::vector<std::int64_t>& labels,
                             const std::vector<std::int64_t>& directions);

// The image classifier's options (classifier.h), with smaller batches and more frequent lines.
struct VideoClassifierTrainOptions : ClassifierTrainOptions {
  VideoClassifierTrainOptions() {
    batch_size = 32;
    log_every = 50;
  }
};

struct VideoAccuracy {
  double class_accuracy = 0;      // 0 when unlabelled
  double direction_accuracy = 0;
};

struct VideoClassifierTrainReport : NetworkTrainReport {
  VideoAccuracy test;          // on `test` after training (zeros when test is empty)
};

// Trains cls on `train` and measures it on `test`. ValueError when the clips' shape or
// labelling disagrees with the network's, or a direction list has the wrong length.
VideoClassifierTrainReport train_video_classifier(VideoClassifier& cls, const LabelledClips& train,
                                                  const LabelledClips& test, const VideoClassifierTrainOptions& options,
                                                  const std::function<void(const std::string&)>& log = {});

// Class and direction accuracy (argmax of each logit block) on every clip, without a tape.
VideoAccuracy video_accuracy(const VideoClassifier& cls, const LabelledClips& data, std::int64_t batch_size = 64);

// The FVD features [n, feature_dim] of every clip of ds, batch by batch without a tape.
// ValueError, naming `what`, when ds's clips are not the network's F x H x W x C.
FeatureMatrix extract_video_features(const VideoClassifier& cls, const Dataset& ds, const std::string& what,
                                     std::int64_t batch_size = 64);

// Writes DIR/model.safetensors and DIR/video_classifier.json (`info` merged in: dataset, clip
// options, accuracies). Creates DIR when missing.
void save_video_classifier(const VideoClassifier& cls, const std::string& dir, const nlohmann::json& info);
struct LoadedVideoClassifier {
  std::unique_ptr<VideoClassifier> model;
  nlohmann::json info;  // video_classifier.json as written
};
// IoError naming the file when the folder is missing, incomplete or mismatched.
LoadedVideoClassifier load_video_classifier(const std::string& dir, Device device);
// "ddpm-eval-video-cnn (w=16, 128-d features, 8x32x32x1 clips -> 10 classes + 8 directions;
// test accuracy class 80.0%, direction 95.0% on moving-fashion-mnist/test)"
std::string describe_video_classifier(const LoadedVideoClassifier& c);

}  // namespace ddpm::eval
