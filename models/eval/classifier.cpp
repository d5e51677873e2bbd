// models/eval/classifier.cpp: the evaluation CNN, its training loop and its folder on disk
// (see classifier.h).
#include "models/eval/classifier.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/descriptor.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resample.h"
#include "engine/optim.h"
#include "models/eval/network_folder.h"
#include "models/train/adamw_loop.h"

namespace ddpm::eval {

void ClassifierConfig::validate() const {
  DDPM_CHECK(height > 0 && width > 0 && height % 8 == 0 && width % 8 == 0,
             "classifier: image height and width must be positive multiples of 8 (three 2x poolings), got "
                 << height << "x" << width);
  DDPM_CHECK(channels >= 1, "classifier: channels must be at least 1, got " << channels);
  DDPM_CHECK(num_classes >= 2, "classifier: needs at least 2 classes, got " << num_classes);
  DDPM_CHECK(base_channels >= 1 && feature_dim >= 1, "classifier: base_channels and feature_dim must be positive");
  DDPM_CHECK(norm_groups >= 1 && base_channels % norm_groups == 0,
             "classifier: base_channels " << base_channels << " must be a multiple of norm_groups " << norm_groups);
}

ConvTrunk::ConvTrunk(int in_channels, int base_channels, int norm_groups, Generator& gen, Device device) {
  const int w = base_channels;
  const int chans[4] = {in_channels, w, 2 * w, 4 * w};
  for (int i = 0; i < 3; ++i) {
    convs_.push_back(add_module("conv" + std::to_string(i),
                                std::make_unique<nn::Conv2d>(chans[i], chans[i + 1], 3, 1, 1, gen, device)));
    norms_.push_back(
        add_module("norm" + std::to_string(i), std::make_unique<nn::GroupNorm>(norm_groups, chans[i + 1], device)));
  }
}

Tensor ConvTrunk::forward(const Tensor& x) const {
  Tensor h = x;
  for (int i = 0; i < 3; ++i) h = avg_pool2x(norms_[i]->forward(convs_[i]->forward(h), /*silu=*/true));
  return h;
}

Classifier::Classifier(const ClassifierConfig& cfg, Generator& gen, Device device) : cfg_(cfg), device_(device) {
  cfg_.validate();
  const int w = cfg.base_channels;
  trunk_ = add_module("", std::make_unique<ConvTrunk>(cfg.channels, w, cfg.norm_groups, gen, device));
  const std::int64_t flat = static_cast<std::int64_t>(cfg.height / 8) * (cfg.width / 8) * 4 * w;
  fc_ = add_module("fc", std::make_unique<nn::Linear>(flat, cfg.feature_dim, gen, device));
  out_ = add_module("out", std::make_unique<nn::Linear>(cfg.feature_dim, cfg.num_classes, gen, device));
}

Tensor Classifier::features(const Tensor& x) const {
  DDPM_CHECK(x.ndim() == 4 && x.dim(1) == cfg_.height && x.dim(2) == cfg_.width && x.dim(3) == cfg_.channels,
             "classifier: expected images [N, " << cfg_.height << ", " << cfg_.width << ", " << cfg_.channels
                                                << "], got " << shape_str(x.shape()));
  const Tensor h = trunk_->forward(x).reshape({x.dim(0), -1});  // [N, H/8 * W/8 * 4w]
  return silu(fc_->forward(h));   // [N, feature_dim]
}

Tensor Classifier::head(const Tensor& features) const { return out_->forward(features); }

Tensor Classifier::forward(const Tensor& x) const { return head(features(x)); }

Tensor cross_entropy(const Tensor& logits, const std::vector<std::int64_t>& labels) {
  DDPM_CHECK(logits.ndim() == 2, "cross_entropy: logits must be [N, K], got " << shape_str(logits.shape()));
  const std::int64_t n = logits.dim(0), k = logits.dim(1);
  DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
             "cross_entropy: " << labels.size() << " labels for logits " << shape_str(logits.shape()));
  // Row maxima and the one-hot targets are constants (host-built, not on the tape).
  const std::vector<double> z = logits.detach().to_double_vector();
  std::vector<double> row_max(static_cast<std::size_t>(n)), onehot(static_cast<std::size_t>(n * k), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    DDPM_CHECK(labels[i] >= 0 && labels[i] < k, "cross_entropy: label " << labels[i] << " of sample " << i
                                                                          << " is outside [0, " << k << ")");
    row_max[i] = *std::max_element(z.begin() + i * k, z.begin() + (i + 1) * k);
    onehot[i * k + labels[i]] = 1.0;
  }
  const Tensor m = Tensor::from_vector(row_max, {n, 1}, logits.dtype(), logits.device());
  const Tensor y = Tensor::from_vector(onehot, {n, k}, logits.dtype(), logits.device());
  const Tensor shifted = sub(logits, m);                                     // [N, K]
  const Tensor lse = log(sum(exp(shifted), {1}, /*keepdim=*/true));        // [N, 1]
  const Tensor log_probs = sub(shifted, lse);                               // [N, K]
  return scale(sum(mul(log_probs, y)), -1.0 / static_cast<double>(n));     // scalar
}

Tensor image_batch(const Dataset& ds, std::int64_t begin, std::int64_t count, Device device) {
  DDPM_CHECK(begin >= 0 && count > 0 && begin + count <= ds.n,
             "image_batch: images [" << begin << ", " << begin + count << ") are outside " << ds.describe());
  const std::size_t per = ds.image_bytes();
  std::vector<float> values(static_cast<std::size_t>(count) * per);
  const std::uint8_t* src = ds.image(begin);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(src[i]) / 127.5f - 1.0f;
  return Tensor::from_vector(values, {count, ds.height, ds.width, ds.channels}, device);
}

void train_network(nn::Module& net, std::shared_ptr<const Dataset> data, const ClassifierTrainOptions& o,
                   const std::function<Tensor(const Batch&)>& loss_of,
                   const std::function<void(const std::string&)>& log, NetworkTrainReport& r) {
  AdamWConfig ac;
  ac.lr = o.lr;
  ac.weight_decay = o.weight_decay;
  train::AdamWLoop loop(net.named_parameters(), ac, data, o.batch_size, o.seed, o.device);
  std::int64_t total = loop.loader().batches_per_epoch() * o.epochs;
  if (o.max_steps > 0) total = std::min(total, o.max_steps);
  train::LossWindow window(total, o.log_every);
  for (std::int64_t step = 0; step < total; ++step) {
    const Tensor loss = loss_of(loop.next());
    // Cosine decay from lr to 0 over the run: lr_s = lr * (1 + cos(pi s / S)) / 2.
    const double lr = o.lr * 0.5 * (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total)));
    r.losses.push_back(loop.step(loss, lr));
    if (window.add(step, {r.losses.back()}) && log) {
      std::ostringstream line;
      line << "step " << step + 1 << "/" << total << "  loss " << window.mean(0) << "  lr " << lr << "  "
           << window.seconds() << " s";
      log(line.str());
    }
  }
  r.steps = total;
  r.train_seconds = window.seconds();
}

ClassifierTrainReport train_classifier(Classifier& cls, const Dataset& train, const Dataset& test,
                                       const ClassifierTrainOptions& o,
                                       const std::function<void(const std::string&)>& log) {
  DDPM_CHECK(train.has_labels(), "train-classifier: " << train.name << " has no labels");
  DDPM_CHECK(o.epochs >= 1 && o.batch_size >= 1, "train-classifier: epochs and batch size must be positive");
  ClassifierTrainReport r;
  train_network(
      cls, std::make_shared<const Dataset>(train), o,
      [&cls](const Batch& b) { return cross_entropy(cls.forward(b.images), b.labels); }, log, r);
  r.test_accuracy = test.n > 0 ? accuracy(cls, test) : 0.0;
  return r;
}

std::vector<std::int64_t> predict(const Classifier& cls, const Dataset& ds, std::int64_t batch_size) {
  NoGradGuard no_grad;
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(ds.n));
  const std::int64_t k = cls.config().num_classes;
  for (std::int64_t b = 0; b < ds.n; b += batch_size) {
    const std::int64_t count = std::min(batch_size, ds.n - b);
    const std::vector<float> z = cls.forward(image_batch(ds, b, count, cls.device())).to_vector();
    for (std::int64_t i = 0; i < count; ++i)
      out.push_back(std::max_element(z.begin() + i * k, z.begin() + (i + 1) * k) - (z.begin() + i * k));
  }
  return out;
}

double accuracy(const Classifier& cls, const Dataset& ds, std::int64_t batch_size) {
  DDPM_CHECK(ds.has_labels() && ds.n > 0, "accuracy: " << ds.name << " has no labelled images");
  const std::vector<std::int64_t> p = predict(cls, ds, batch_size);
  std::int64_t right = 0;
  for (std::int64_t i = 0; i < ds.n; ++i) right += p[i] == ds.labels[i];
  return static_cast<double>(right) / static_cast<double>(ds.n);
}

namespace {

// classifier.json's config fields (network_folder.h).
const ConfigFields<ClassifierConfig>& classifier_fields() {
  using C = ClassifierConfig;
  static const ConfigFields<C> fields = {{"height", &C::height},
                                         {"width", &C::width},
                                         {"channels", &C::channels},
                                         {"num_classes", &C::num_classes},
                                         {"base_channels", &C::base_channels},
                                         {"feature_dim", &C::feature_dim},
                                         {"norm_groups", &C::norm_groups}};
  return fields;
}

}  // namespace

void save_classifier(const Classifier& cls, const std::string& dir, const nlohmann::json& info) {
  std::filesystem::create_directories(dir);
  save_network_weights(cls, dir + "/model.safetensors", kClassifierArchitecture);
  nlohmann::json j = info;
  j["architecture"] = kClassifierArchitecture;
  write_config_fields(j, cls.config(), classifier_fields());
  write_file_atomic(dir + "/classifier.json", j.dump(2) + "\n");
}

LoadedClassifier load_classifier(const std::string& dir, Device device) {
  LoadedClassifier out;
  out.info = read_descriptor(dir, {"classifier.json", kClassifierArchitecture, "a feature classifier",
                                   "ddpm-eval train-classifier"});  // engine/io/descriptor.h
  const ClassifierConfig c = read_config_fields(out.info, classifier_fields(), dir + "/classifier.json");
  Generator gen(0);
  out.model = std::make_unique<Classifier>(c, gen, device);
  load_network_weights(*out.model, dir + "/model.safetensors", "the classifier");
  return out;
}

std::string describe_classifier(const LoadedClassifier& c) {
  const ClassifierConfig& k = c.model->config();
  std::ostringstream s;
  s << kClassifierArchitecture << " (w=" << k.base_channels << ", " << k.feature_dim << "-d features, " << k.height
    << "x" << k.width << "x" << k.channels << " -> " << k.num_classes << " classes";
  if (c.info.contains("test_accuracy"))
    s << "; test accuracy " << 100.0 * c.info["test_accuracy"].get<double>() << "% on "
      << c.info.value("test_split", std::string("?"));
  s << ")";
  return s.str();
}

}  // namespace ddpm::eval
