#include "models/run/data_spec.h"

#include <filesystem>
#include <tuple>

#include "engine/error.h"
#include "models/data/cifar10.h"
#include "models/data/idx.h"
#include "models/data/image_folder.h"
#include "models/data/moving.h"
#include "models/data/toy.h"

namespace ddpm::run {
namespace {

constexpr const char* kForms =
    "fashion-mnist[:DIR], idx:IMAGES[,LABELS], cifar10:DIR, folder:DIR, toy, moving-fashion-mnist[:DIR] or "
    "moving-toy";

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

std::string after_colon(const std::string& text, const std::string& prefix) {
  std::string rest = text.substr(prefix.size());
  DDPM_CHECK(!rest.empty(), "--data " << text << ": the path after '" << prefix << "' is empty");
  return rest;
}

Dataset load_fashion_mnist_train(const DataSpec& spec) {
  const std::string dir = spec.path.empty() ? kFashionMnistDir : spec.path;
  if (!std::filesystem::is_directory(dir)) {
    if (spec.path.empty())
      DDPM_THROW(IoError, "Fashion-MNIST is not installed (no folder " << dir
                              << "): install the Debian package dataset-fashion-mnist "
                                 "(sudo apt-get install dataset-fashion-mnist), or pass "
                                 "--data idx:IMAGES,LABELS with the files");
    DDPM_THROW(IoError, "--data " << spec.text << ": no folder " << dir);
  }
  return load_fashion_mnist("train", dir);
}

MovingClipsOptions clip_options(const DataOptions& options) {
  MovingClipsOptions m;
  m.frames = options.frames;
  m.canvas = options.canvas;
  m.item_size = options.item_size;
  m.items = options.moving_items;
  m.count = options.clip_count;
  m.seed = options.seed;
  return m;
}

}  // namespace

void check_clip_flags(const DataSpec& spec, const DataOptions& options) {
  if (spec.is_moving()) {
    // The same limits make_moving_clips checks, named by their flags for the command line.
    DDPM_CHECK(options.frames >= 1, "--frames must be at least 1 for --data " << spec.text
                                                                            << " (1: still images, the clips' first "
                                                                               "frames), got " << options.frames);
    DDPM_CHECK(options.canvas >= 1, "--canvas must be positive, got " << options.canvas);
    DDPM_CHECK(options.item_size >= 1 && options.item_size <= options.canvas,
               "--item-size must be in [1, --canvas " << options.canvas << "], got " << options.item_size);
    DDPM_CHECK(options.moving_items >= 1, "--moving-items must be at least 1, got " << options.moving_items);
    return;
  }
  const DataOptions defaults;
  for (const auto& [flag, value, fallback] :
       {std::tuple<const char*, std::int64_t, std::int64_t>{"--frames", options.frames, defaults.frames},
        {"--canvas", options.canvas, defaults.canvas},
        {"--item-size", options.item_size, defaults.item_size},
        {"--moving-items", options.moving_items, defaults.moving_items}})
    DDPM_CHECK(value == fallback, flag << " " << value << " shapes the clips of a moving-* dataset, and --data "
                                       << spec.text
                                       << " is not one; use --data moving-fashion-mnist or moving-toy, or drop "
                                       << flag);
}

DataSpec parse_data_spec(const std::string& text) {
  DataSpec spec;
  spec.text = text;
  if (text == "fashion-mnist") {
    spec.kind = DataSpec::Kind::fashion_mnist;
  } else if (starts_with(text, "fashion-mnist:")) {
    spec.kind = DataSpec::Kind::fashion_mnist;
    spec.path = after_colon(text, "fashion-mnist:");
  } else if (starts_with(text, "idx:")) {
    spec.kind = DataSpec::Kind::idx;
    std::string rest = after_colon(text, "idx:");
    std::size_t comma = rest.find(',');
    spec.path = rest.substr(0, comma);
    if (comma != std::string::npos) {
      spec.labels_path = rest.substr(comma + 1);
      DDPM_CHECK(!spec.labels_path.empty() && spec.labels_path.find(',') == std::string::npos,
                 "--data " << text << ": expected idx:IMAGES or idx:IMAGES,LABELS");
    }
    DDPM_CHECK(!spec.path.empty(), "--data " << text << ": the image file is empty");
  } else if (starts_with(text, "cifar10:")) {
    spec.kind = DataSpec::Kind::cifar10;
    spec.path = after_colon(text, "cifar10:");
  } else if (starts_with(text, "folder:")) {
    spec.kind = DataSpec::Kind::folder;
    spec.path = after_colon(text, "folder:");
  } else if (text == "toy") {
    spec.kind = DataSpec::Kind::toy;
  } else if (text == "moving-fashion-mnist") {
    spec.kind = DataSpec::Kind::moving_fashion_mnist;
  } else if (starts_with(text, "moving-fashion-mnist:")) {
    spec.kind = DataSpec::Kind::moving_fashion_mnist;
    spec.path = after_colon(text, "moving-fashion-mnist:");
  } else if (text == "moving-toy") {
    spec.kind = DataSpec::Kind::moving_toy;
  } else {
    DDPM_THROW(ValueError, "--data '" << text << "' is not a dataset; expected " << kForms);
  }
  return spec;
}

Dataset load_data(const DataSpec& spec, const DataOptions& options) {
  check_clip_flags(spec, options);
  Dataset ds;
  switch (spec.kind) {
    case DataSpec::Kind::fashion_mnist:
      ds = load_fashion_mnist_train(spec);
      break;
    case DataSpec::Kind::idx:
      ds = load_idx(spec.path, spec.labels_path, 10, spec.path);
      break;
    case DataSpec::Kind::cifar10:
      ds = load_cifar10(spec.path, "train");
      break;
    case DataSpec::Kind::folder:
      ds = load_image_folder(spec.path);
      break;
    case DataSpec::Kind::toy:
      DDPM_CHECK(options.toy_count > 0, "the toy dataset needs a positive image count");
      ds = make_toy_shapes(options.toy_count, options.seed, options.toy_size);
      break;
    case DataSpec::Kind::moving_fashion_mnist:
      // "Moving Fashion-MNIST": the 60000 training items, each the first item of its clip.
      ds = make_moving_clips(load_fashion_mnist_train(spec), clip_options(options));
      break;
    case DataSpec::Kind::moving_toy:
      DDPM_CHECK(options.toy_count > 0, "the moving-toy dataset needs a positive image count");
      ds = make_moving_clips(make_toy_shapes(options.toy_count, options.seed, options.toy_size), clip_options(options));
      break;
  }
  ds.validate();
  if (options.pad_to_32) {
    DDPM_CHECK(ds.height <= 32 && ds.width <= 32,
               "--pad-to-32: the images of " << ds.name << " are " << ds.height << "x" << ds.width
                                             << ", larger than 32x32");
    if (ds.height != 32 || ds.width != 32) ds = pad_to(ds, 32);
  }
  return ds;
}

Dataset load_image_data(const DataSpec& spec, const DataOptions& options, const std::string& what) {
  DDPM_CHECK(!spec.is_moving(), what << " works on still images; " << spec.text
                                     << " holds video clips (only ddpm-train and ddpm-sample handle video)");
  return load_data(spec, options);
}

}  // namespace ddpm::run
