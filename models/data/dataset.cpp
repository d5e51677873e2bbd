#include "models/data/dataset.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include "engine/error.h"

namespace ddpm {

std::string Dataset::describe() const {
  std::ostringstream os;
  os << name << ": " << n;
  if (is_video()) os << " clips of " << frames << " frames";
  else os << " images";
  os << " of " << height << "x" << width << "x" << channels;
  if (has_labels()) os << ", " << num_classes << " classes";
  else os << ", unlabelled";
  return os.str();
}

void Dataset::validate() const {
  DDPM_CHECK(frames >= 1, "dataset '" << name << "' has " << frames << " frames per item; it needs at least 1");
  DDPM_CHECK(n >= 0 && height > 0 && width > 0 && channels > 0,
             "dataset '" << name << "' has invalid sizes [" << n << ", " << height << ", " << width << ", " << channels
                         << "]");
  DDPM_CHECK(images.size() == static_cast<std::size_t>(n) * image_bytes(),
             "dataset '" << name << "' holds " << images.size() << " image bytes but [" << n << ", " << frames << ", "
                         << height << ", " << width << ", " << channels << "] needs "
                         << static_cast<std::size_t>(n) * image_bytes());
  if (!captions.empty()) {
    DDPM_CHECK(static_cast<std::int64_t>(captions.size()) == n,
               "dataset '" << name << "' has " << captions.size() << " captions for " << n << " images");
    for (std::size_t i = 0; i < captions.size(); ++i) {
      const std::string& c = captions[i];
      const bool has_word = std::any_of(c.begin(), c.end(), [](unsigned char ch) { return std::isalnum(ch) != 0; });
      DDPM_CHECK(has_word, "dataset '" << name << "': the caption of image " << i << " (\"" << c
                                       << "\") holds no letter or digit, so it has no word to condition on");
    }
  }
  if (labels.empty()) return;
  DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
             "dataset '" << name << "' has " << labels.size() << " labels for " << n << " images");
  for (std::size_t i = 0; i < labels.size(); ++i)
    DDPM_CHECK(labels[i] >= 0 && labels[i] < num_classes, "dataset '" << name << "': label " << labels[i] << " of image "
                                                                      << i << " is outside [0, " << num_classes << ")");
}

Dataset pad_to(const Dataset& ds, int size, std::uint8_t fill) {
  DDPM_CHECK(size >= ds.height && size >= ds.width, "pad_to(" << size << "): dataset '" << ds.name << "' has images of "
                                                              << ds.height << "x" << ds.width
                                                              << ", larger than the target");
  Dataset out = ds;
  out.height = size;
  out.width = size;
  const std::int64_t top = (size - ds.height) / 2, left = (size - ds.width) / 2;
  out.images.assign(static_cast<std::size_t>(ds.n) * out.image_bytes(), fill);
  const std::size_t row = static_cast<std::size_t>(ds.width * ds.channels);
  // Every frame of every item is padded alike: walk the n * frames frames.
  for (std::int64_t i = 0; i < ds.n * ds.frames; ++i) {
    const std::uint8_t* src = ds.images.data() + static_cast<std::size_t>(i) * ds.frame_bytes();
    std::uint8_t* dst = out.images.data() + static_cast<std::size_t>(i) * out.frame_bytes();
    for (std::int64_t y = 0; y < ds.height; ++y)
      std::copy(src + y * row, src + (y + 1) * row, dst + ((y + top) * size + left) * ds.channels);
  }
  return out;
}

Dataset take(const Dataset& ds, std::int64_t n) {
  DDPM_CHECK(n >= 0 && n <= ds.n, "take(" << n << "): dataset '" << ds.name << "' has " << ds.n << " items");
  Dataset out = ds;
  out.n = n;
  out.images.resize(static_cast<std::size_t>(n) * ds.image_bytes());
  if (ds.has_labels()) out.labels.resize(static_cast<std::size_t>(n));
  if (ds.has_captions()) out.captions.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace ddpm
