// models/eval/features.cpp: feature extraction and sample loading (see features.h).
#include "models/eval/features.h"

#include <algorithm>
#include <filesystem>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/npz.h"
#include "models/data/image_folder.h"

namespace ddpm::eval {

Dataset conform(const Dataset& ds, const ClassifierConfig& cfg, const std::string& what) {
  DDPM_CHECK(ds.channels == cfg.channels, what << " has " << ds.channels << " channel(s) per pixel, the classifier "
                                               << "expects " << cfg.channels);
  if (ds.height == cfg.height && ds.width == cfg.width) return ds;
  DDPM_CHECK(cfg.height == cfg.width && ds.height <= cfg.height && ds.width <= cfg.width,
             what << " holds " << ds.height << "x" << ds.width << " images; the classifier expects " << cfg.height
                  << "x" << cfg.width << " (smaller images are padded, larger ones are refused)");
  return pad_to(ds, cfg.height);
}

FeatureMatrix extract_features(const Classifier& cls, const Dataset& input, std::int64_t batch_size) {
  const Dataset ds = conform(input, cls.config(), input.name);
  NoGradGuard no_grad;
  FeatureMatrix f;
  f.n = ds.n;
  f.dim = cls.config().feature_dim;
  f.values.reserve(static_cast<std::size_t>(f.n * f.dim));
  for (std::int64_t b = 0; b < ds.n; b += batch_size) {
    const std::int64_t count = std::min(batch_size, ds.n - b);
    const std::vector<double> v = cls.features(image_batch(ds, b, count, cls.device())).to_double_vector();
    f.values.insert(f.values.end(), v.begin(), v.end());
  }
  return f;
}

Dataset load_samples(const std::string& path) {
  DDPM_CHECK_AS(std::filesystem::exists(path), IoError, "samples: " << path << " does not exist");
  if (std::filesystem::is_directory(path)) return load_image_folder(path);
  const NpzFile npz = load_npz(path);
  // Two conventions: named arrays, or numpy.savez's positional arr_0 / arr_1 (what
  // ddpm-sample writes, like the improved-diffusion and guided-diffusion samplers).
  const bool named = npz.contains("images");
  const std::string images_name = named ? "images" : "arr_0", labels_name = named ? "labels" : "arr_1";
  if (!named && !npz.contains("arr_0")) {
    std::string present;
    for (const NpyArray& a : npz.arrays) present += (present.empty() ? "" : ", ") + a.name;
    DDPM_THROW(IoError, path << ": no array \"images\" or \"arr_0\" (uint8 [N, H, W, C] samples); it holds: "
                             << (present.empty() ? "nothing" : present));
  }
  const NpyArray& images = npz.get(images_name);
  DDPM_CHECK_AS(images.dtype == NpyDType::u8 && (images.shape.size() == 4 || images.shape.size() == 3), IoError,
                path << ": \"" << images_name << "\" must be uint8 [N, H, W, C] (or [N, H, W]), got "
                     << images.describe());
  Dataset ds;
  ds.name = path;
  ds.n = images.shape[0];
  ds.height = images.shape[1];
  ds.width = images.shape[2];
  ds.channels = images.shape.size() == 4 ? images.shape[3] : 1;
  ds.images.assign(images.bytes.begin(), images.bytes.end());
  if (npz.contains(labels_name)) {
    const NpyArray& labels = npz.get(labels_name);
    DDPM_CHECK_AS(labels.dtype == NpyDType::i64 && labels.shape.size() == 1 && labels.shape[0] == ds.n, IoError,
                  path << ": \"" << labels_name << "\" must be int64 [" << ds.n << "], got " << labels.describe());
    ds.labels = labels.as_int64();
    for (std::int64_t y : ds.labels) {
      DDPM_CHECK_AS(y >= 0, IoError, path << ": label " << y << " is negative");
      ds.num_classes = std::max<int>(ds.num_classes, static_cast<int>(y) + 1);
    }
  }
  ds.validate();
  return ds;
}

}  // namespace ddpm::eval
