// models/eval/classifier.cpp: the evaluation CNN, its training loop and its folder on disk
// (see classifier.h).
#include "models/eval/classifier.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/descriptor.h"
#include "engine/io/safetensors.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resample.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "models/data/loader.h"

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

Classifier::Classifier(const ClassifierConfig& cfg, Generator& gen, Device device) : cfg_(cfg), device_(device) {
  cfg_.validate();
  const int w = cfg.base_channels;
  const int chans[4] = {cfg.channels, w, 2 * w, 4 * w};
  for (int i = 0; i < 3; ++i) {
    convs_.push_back(add_module("conv" + std::to_string(i), std::make_unique<nn::Conv2d>(chans[i], chans[i + 1], 3, 1,
                                                                                        1, gen, device)));
    norms_.push_back(
        add_module("norm" + std::to_string(i), std::make_unique<nn::GroupNorm>(cfg.norm_groups, chans[i + 1], device)));
  }
  const std::int64_t flat = static_cast<std::int64_t>(cfg.height / 8) * (cfg.width / 8) * 4 * w;
  fc_ = add_module("fc", std::make_unique<nn::Linear>(flat, cfg.feature_dim, gen, device));
  out_ = add_module("out", std::make_unique<nn::Linear>(cfg.feature_dim, cfg.num_classes, gen, device));
}

Tensor Classifier::features(const Tensor& x) const {
  DDPM_CHECK(x.ndim() == 4 && x.dim(1) == cfg_.height && x.dim(2) == cfg_.width && x.dim(3) == cfg_.channels,
             "classifier: expected images [N, " << cfg_.height << ", " << cfg_.width << ", " << cfg_.channels
                                                << "], got " << shape_str(x.shape()));
  Tensor h = x;
  for (int i = 0; i < 3; ++i) h = avg_pool2x(norms_[i]->forward(convs_[i]->forward(h), /*silu=*/true));
  h = h.reshape({x.dim(0), -1});  // [N, H/8 * W/8 * 4w]
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

ClassifierTrainReport train_classifier(Classifier& cls, const Dataset& train, const Dataset& test,
                                       const ClassifierTrainOptions& o,
                                       const std::function<void(const std::string&)>& log) {
  DDPM_CHECK(train.has_labels(), "train-classifier: " << train.name << " has no labels");
  DDPM_CHECK(o.epochs >= 1 && o.batch_size >= 1, "train-classifier: epochs and batch size must be positive");
  const auto t0 = std::chrono::steady_clock::now();
  ParameterSlab slab(cls.named_parameters());
  AdamWConfig ac;
  ac.lr = o.lr;
  ac.weight_decay = o.weight_decay;
  AdamW opt(slab, ac);
  LoaderOptions lo;
  lo.batch_size = std::min(o.batch_size, train.n);
  lo.seed = o.seed;
  lo.device = o.device;
  BatchLoader loader(std::make_shared<const Dataset>(train), lo);
  std::int64_t total = loader.batches_per_epoch() * o.epochs;
  if (o.max_steps > 0) total = std::min(total, o.max_steps);
  ClassifierTrainReport r;
  double running = 0;
  for (std::int64_t step = 0; step < total; ++step) {
    Batch b = loader.next();
    slab.zero_grad();
    Tensor loss = cross_entropy(cls.forward(b.images), b.labels);
    loss.backward();
    // Cosine decay from lr to 0 over the run: lr_s = lr * (1 + cos(pi s / S)) / 2.
    opt.set_lr(o.lr * 0.5 * (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total))));
    opt.step();
    r.losses.push_back(loss.item());
    running += r.losses.back();
    if (log && o.log_every > 0 && ((step + 1) % o.log_every == 0 || step + 1 == total)) {
      const std::int64_t span = (step + 1) % o.log_every == 0 ? o.log_every : (step + 1) % o.log_every;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::ostringstream line;
      line << "step " << step + 1 << "/" << total << "  loss " << running / static_cast<double>(span) << "  lr "
           << opt.lr() << "  " << secs << " s";
      log(line.str());
      running = 0;
    }
  }
  r.steps = total;
  r.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

void save_classifier(const Classifier& cls, const std::string& dir, const nlohmann::json& info) {
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, t] : cls.named_parameters()) tensors.emplace_back(name, t.cpu());
  save_safetensors(dir + "/model.safetensors", tensors, {{"architecture", kClassifierArchitecture}});
  const ClassifierConfig& c = cls.config();
  nlohmann::json j = info;
  j["architecture"] = kClassifierArchitecture;
  j["height"] = c.height;
  j["width"] = c.width;
  j["channels"] = c.channels;
  j["num_classes"] = c.num_classes;
  j["base_channels"] = c.base_channels;
  j["feature_dim"] = c.feature_dim;
  j["norm_groups"] = c.norm_groups;
  write_file_atomic(dir + "/classifier.json", j.dump(2) + "\n");
}

LoadedClassifier load_classifier(const std::string& dir, Device device) {
  const std::string json_path = dir + "/classifier.json";
  LoadedClassifier out;
  out.info = read_descriptor(dir, {"classifier.json", kClassifierArchitecture, "a feature classifier",
                                   "ddpm-eval train-classifier"});  // engine/io/descriptor.h
  ClassifierConfig c;
  try {
    c.height = out.info.at("height");
    c.width = out.info.at("width");
    c.channels = out.info.at("channels");
    c.num_classes = out.info.at("num_classes");
    c.base_channels = out.info.at("base_channels");
    c.feature_dim = out.info.at("feature_dim");
    c.norm_groups = out.info.at("norm_groups");
  } catch (const nlohmann::json::exception& e) {
    throw IoError(json_path + ": " + e.what());
  }
  Generator gen(0);
  out.model = std::make_unique<Classifier>(c, gen, device);
  const SafetensorsFile f = load_safetensors(dir + "/model.safetensors");
  const auto params = out.model->named_parameters();
  DDPM_CHECK_AS(f.tensors.size() == params.size(), IoError,
                f.path << " holds " << f.tensors.size() << " tensors, the classifier has " << params.size());
  for (const auto& [name, p] : params) {
    const Tensor& t = f.get(name);
    DDPM_CHECK_AS(t.shape() == p.shape() && t.dtype() == p.dtype(), IoError,
                  f.path << ": " << name << " is " << t.describe() << ", expected " << p.describe());
    Tensor dst = p;
    dst.copy_from(t);
  }
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
