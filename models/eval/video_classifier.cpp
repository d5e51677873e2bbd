// models/eval/video_classifier.cpp: the FVD feature network, its training loop and its folder
// on disk (see video_classifier.h).
#include "models/eval/video_classifier.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <filesystem>
#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/descriptor.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/eval/network_folder.h"

namespace ddpm::eval {
namespace {

std::string clip_shape_str(std::int64_t f, std::int64_t h, std::int64_t w, std::int64_t c) {
  std::ostringstream s;
  s << f << " frames of " << h << "x" << w << "x" << c;
  return s.str();
}

// The clips must be the network's F x H x W x C and carry the targets its heads predict.
void check_labelled(const VideoClassifier& cls, const LabelledClips& d, const std::string& what) {
  const VideoClassifierConfig& c = cls.config();
  DDPM_CHECK(d.clips.frames == c.frames && d.clips.height == c.height && d.clips.width == c.width &&
                 d.clips.channels == c.channels,
             what << " holds clips of " << clip_shape_str(d.clips.frames, d.clips.height, d.clips.width, d.clips.channels)
                  << "; the video classifier takes " << clip_shape_str(c.frames, c.height, c.width, c.channels));
  DDPM_CHECK(static_cast<std::int64_t>(d.directions.size()) == d.clips.n,
             what << ": " << d.directions.size() << " direction labels for " << d.clips.n << " clips");
  DDPM_CHECK(c.num_classes == 0 || d.clips.has_labels(),
             what << " has no class labels; the video classifier has a " << c.num_classes << "-class head");
}

// The argmax of logits [begin, begin + k) of row i of a row-major [n, stride] block.
std::int64_t argmax_block(const std::vector<float>& z, std::int64_t i, std::int64_t stride, std::int64_t begin,
                          std::int64_t k) {
  const auto row = z.begin() + i * stride + begin;
  return std::max_element(row, row + k) - row;
}

}  // namespace

void VideoClassifierConfig::validate() const {
  DDPM_CHECK(frames >= 2, "video classifier: clips need at least 2 frames (motion is between frames), got " << frames);
  DDPM_CHECK(height > 0 && width > 0 && height % 8 == 0 && width % 8 == 0,
             "video classifier: frame height and width must be positive multiples of 8 (three 2x poolings), got "
                 << height << "x" << width);
  DDPM_CHECK(channels >= 1, "video classifier: channels must be at least 1, got " << channels);
  DDPM_CHECK(num_classes == 0 || num_classes >= 2,
             "video classifier: num_classes must be 0 (no class head) or at least 2, got " << num_classes);
  DDPM_CHECK(base_channels >= 1 && frame_dim >= 1 && temporal_dim >= 1 && feature_dim >= 1,
             "video classifier: base_channels, frame_dim, temporal_dim and feature_dim must be positive");
  DDPM_CHECK(norm_groups >= 1 && base_channels % norm_groups == 0,
             "video classifier: base_channels " << base_channels << " must be a multiple of norm_groups "
                                                << norm_groups);
}

VideoClassifier::VideoClassifier(const VideoClassifierConfig& cfg, Generator& gen, Device device)
    : cfg_(cfg), device_(device) {
  cfg_.validate();
  const int w = cfg.base_channels;
  // A frame and its difference to the next: 2C channels into the image classifier's trunk.
  trunk_ = add_module("", std::make_unique<ConvTrunk>(2 * cfg.channels, w, cfg.norm_groups, gen, device));
  const std::int64_t flat = static_cast<std::int64_t>(cfg.height / 8) * (cfg.width / 8) * 4 * w;
  frame_fc_ = add_module("frame_fc", std::make_unique<nn::Linear>(flat, cfg.frame_dim, gen, device));
  temporal_ = add_module("temporal", std::make_unique<nn::Linear>(3 * cfg.frame_dim, cfg.temporal_dim, gen, device));
  fc_ = add_module("fc", std::make_unique<nn::Linear>(cfg.temporal_dim, cfg.feature_dim, gen, device));
  out_ = add_module("out", std::make_unique<nn::Linear>(cfg.feature_dim, cfg.num_classes + kDirectionBins, gen, device));
}

Tensor VideoClassifier::frame_embeddings(const Tensor& x) const {
  DDPM_CHECK(x.ndim() == 5 && x.dim(1) == cfg_.frames && x.dim(2) == cfg_.height && x.dim(3) == cfg_.width &&
                 x.dim(4) == cfg_.channels,
             "video classifier: expected clips [N, " << cfg_.frames << ", " << cfg_.height << ", " << cfg_.width << ", "
                                                     << cfg_.channels << "], got " << shape_str(x.shape()));
  const std::int64_t n = x.dim(0), f = x.dim(1);
  // d[f] = x[f+1] - x[f], and d[F-1] = 0 (the last frame repeated).
  const Tensor next = concat({slice(x, 1, 1, f - 1), slice(x, 1, f - 1, 1)}, 1);      // [N, F, H, W, C]
  const Tensor u = concat({x, sub(next, x)}, 4);                                     // [N, F, H, W, 2C]
  const Tensor frames = u.reshape({n * f, cfg_.height, cfg_.width, 2 * cfg_.channels});  // [N*F, H, W, 2C]
  const Tensor h = trunk_->forward(frames).reshape({n * f, -1});                       // [N*F, H/8 * W/8 * 4w]
  return silu(frame_fc_->forward(h)).reshape({n, f, cfg_.frame_dim});      // [N, F, D]
}

Tensor VideoClassifier::features(const Tensor& x) const {
  const Tensor e = frame_embeddings(x);  // [N, F, D]
  const std::int64_t n = e.dim(0), f = e.dim(1);
  // Kernel-3 convolution over frames with a zero frame beyond each end of the clip:
  //   h[f] = SiLU(b + W_0 e[f-1] + W_1 e[f] + W_2 e[f+1]),  e[-1] = e[F] = 0.
  const Tensor zero = Tensor::zeros({n, 1, cfg_.frame_dim}, e.dtype(), e.device());
  const Tensor prev = concat({zero, slice(e, 1, 0, f - 1)}, 1);  // [N, F, D]: e[f-1]
  const Tensor next = concat({slice(e, 1, 1, f - 1), zero}, 1);  // [N, F, D]: e[f+1]
  const Tensor u = concat({prev, e, next}, 2);                   // [N, F, 3D]
  const Tensor h = silu(temporal_->forward(u));                  // [N, F, T]
  return silu(fc_->forward(mean(h, {1})));                       // [N, feature_dim]
}

Tensor VideoClassifier::forward(const Tensor& x) const { return out_->forward(features(x)); }

Tensor clip_batch(const Dataset& ds, std::int64_t begin, std::int64_t count, Device device) {
  DDPM_CHECK(ds.is_video(), "clip_batch: " << ds.describe() << " holds still images, not clips");
  DDPM_CHECK(begin >= 0 && count > 0 && begin + count <= ds.n,
             "clip_batch: clips [" << begin << ", " << begin + count << ") are outside " << ds.describe());
  const std::size_t per = ds.image_bytes();
  std::vector<float> values(static_cast<std::size_t>(count) * per);
  const std::uint8_t* src = ds.image(begin);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(src[i]) / 127.5f - 1.0f;
  return Tensor::from_vector(values, {count, ds.frames, ds.height, ds.width, ds.channels}, device);
}

Tensor video_classifier_loss(const VideoClassifier& cls, const Tensor& clips, const std::vector<std::int64_t>& labels,
                             const std::vector<std::int64_t>& directions) {
  const int k = cls.config().num_classes;
  DDPM_CHECK(labels.empty() == (k == 0), "video classifier loss: " << labels.size() << " class labels for a network with "
                                                                   << k << " classes");
  const Tensor logits = cls.forward(clips);  // [N, K + 8]
  Tensor loss = cross_entropy(slice(logits, 1, k, kDirectionBins), directions);
  if (k > 0) loss = add(loss, cross_entropy(slice(logits, 1, 0, k), labels));
  return loss;
}

VideoClassifierTrainReport train_video_classifier(VideoClassifier& cls, const LabelledClips& train,
                                                  const LabelledClips& test, const VideoClassifierTrainOptions& o,
                                                  const std::function<void(const std::string&)>& log) {
  check_labelled(cls, train, "train-video-classifier: the training clips");
  DDPM_CHECK(train.clips.n > 0, "train-video-classifier: no training clips");
  DDPM_CHECK(o.epochs >= 1 && o.batch_size >= 1, "train-video-classifier: epochs and batch size must be positive");
  Dataset clips = train.clips;
  if (cls.config().num_classes == 0) clips.labels.clear();  // the loss takes no class labels then
  VideoClassifierTrainReport r;
  // random_flip stays off (train_network): a mirrored clip moves the other way.
  train_network(
      cls, std::make_shared<const Dataset>(std::move(clips)), o,
      [&cls, &train](const Batch& b) {
        std::vector<std::int64_t> dirs(b.indices.size());
        for (std::size_t i = 0; i < dirs.size(); ++i) dirs[i] = train.directions[b.indices[i]];
        return video_classifier_loss(cls, b.images, b.labels, dirs);
      },
      log, r);
  if (test.clips.n > 0) r.test = video_accuracy(cls, test);
  return r;
}

VideoAccuracy video_accuracy(const VideoClassifier& cls, const LabelledClips& d, std::int64_t batch_size) {
  check_labelled(cls, d, "video accuracy: the clips");
  DDPM_CHECK(d.clips.n > 0, "video accuracy: no clips");
  NoGradGuard no_grad;
  const std::int64_t k = cls.config().num_classes, stride = k + kDirectionBins;
  std::int64_t class_right = 0, direction_right = 0;
  for (std::int64_t b = 0; b < d.clips.n; b += batch_size) {
    const std::int64_t count = std::min(batch_size, d.clips.n - b);
    const std::vector<float> z = cls.forward(clip_batch(d.clips, b, count, cls.device())).to_vector();
    for (std::int64_t i = 0; i < count; ++i) {
      if (k > 0) class_right += argmax_block(z, i, stride, 0, k) == d.clips.labels[b + i];
      direction_right += argmax_block(z, i, stride, k, kDirectionBins) == d.directions[b + i];
    }
  }
  const double n = static_cast<double>(d.clips.n);
  return {k > 0 ? static_cast<double>(class_right) / n : 0.0, static_cast<double>(direction_right) / n};
}

FeatureMatrix extract_video_features(const VideoClassifier& cls, const Dataset& ds, const std::string& what,
                                     std::int64_t batch_size) {
  const VideoClassifierConfig& c = cls.config();
  DDPM_CHECK(ds.frames == c.frames && ds.height == c.height && ds.width == c.width && ds.channels == c.channels,
             what << " holds clips of " << clip_shape_str(ds.frames, ds.height, ds.width, ds.channels)
                  << "; the video classifier takes clips of " << clip_shape_str(c.frames, c.height, c.width, c.channels));
  NoGradGuard no_grad;
  FeatureMatrix f;
  f.n = ds.n;
  f.dim = c.feature_dim;
  f.values.reserve(static_cast<std::size_t>(f.n * f.dim));
  for (std::int64_t b = 0; b < ds.n; b += batch_size) {
    const std::int64_t count = std::min(batch_size, ds.n - b);
    const std::vector<double> v = cls.features(clip_batch(ds, b, count, cls.device())).to_double_vector();
    f.values.insert(f.values.end(), v.begin(), v.end());
  }
  return f;
}

namespace {

// video_classifier.json's config fields (network_folder.h).
const ConfigFields<VideoClassifierConfig>& video_classifier_fields() {
  using C = VideoClassifierConfig;
  static const ConfigFields<C> fields = {{"frames", &C::frames},
                                         {"height", &C::height},
                                         {"width", &C::width},
                                         {"channels", &C::channels},
                                         {"num_classes", &C::num_classes},
                                         {"base_channels", &C::base_channels},
                                         {"frame_dim", &C::frame_dim},
                                         {"temporal_dim", &C::temporal_dim},
                                         {"feature_dim", &C::feature_dim},
                                         {"norm_groups", &C::norm_groups}};
  return fields;
}

}  // namespace

void save_video_classifier(const VideoClassifier& cls, const std::string& dir, const nlohmann::json& info) {
  std::filesystem::create_directories(dir);
  save_network_weights(cls, dir + "/model.safetensors", kVideoClassifierArchitecture);
  nlohmann::json j = info;
  j["architecture"] = kVideoClassifierArchitecture;
  write_config_fields(j, cls.config(), video_classifier_fields());
  write_file_atomic(dir + "/video_classifier.json", j.dump(2) + "\n");
}

LoadedVideoClassifier load_video_classifier(const std::string& dir, Device device) {
  const std::string json_path = dir + "/video_classifier.json";
  LoadedVideoClassifier out;
  out.info = read_descriptor(dir, {"video_classifier.json", kVideoClassifierArchitecture, "a video feature classifier",
                                   "ddpm-eval train-video-classifier"});  // engine/io/descriptor.h
  const VideoClassifierConfig c = read_config_fields(out.info, video_classifier_fields(), json_path);
  try {
    c.validate();
  } catch (const ValueError& e) {
    throw IoError(json_path + ": " + e.what());
  }
  Generator gen(0);
  out.model = std::make_unique<VideoClassifier>(c, gen, device);
  load_network_weights(*out.model, dir + "/model.safetensors", "the video classifier");
  return out;
}

std::string describe_video_classifier(const LoadedVideoClassifier& c) {
  const VideoClassifierConfig& k = c.model->config();
  std::ostringstream s;
  s << kVideoClassifierArchitecture << " (w=" << k.base_channels << ", " << k.feature_dim << "-d features, "
    << k.frames << "x" << k.height << "x" << k.width << "x" << k.channels << " clips -> ";
  if (k.num_classes > 0) s << k.num_classes << " classes + ";
  s << kDirectionBins << " directions";
  if (c.info.contains("test_direction_accuracy")) {
    s << "; test accuracy";
    if (k.num_classes > 0 && c.info.contains("test_class_accuracy"))
      s << " class " << 100.0 * c.info["test_class_accuracy"].get<double>() << "%,";
    s << " direction " << 100.0 * c.info["test_direction_accuracy"].get<double>() << "% on "
      << c.info.value("test_split", std::string("?"));
  }
  s << ")";
  return s.str();
}

}  // namespace ddpm::eval
