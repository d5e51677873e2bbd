// models/data/dataset.h: an in-memory image (or video clip) dataset, the common currency of
// the loaders.
//
// Images are uint8 NHWC: image i, pixel (y, x), channel c is
//   images[((i * H + y) * W + x) * C + c]
// A video dataset (frames > 1) holds n clips of `frames` frames each, [n, F, H, W, C]:
//   images[(((i * F + f) * H + y) * W + x) * C + c]
// An image dataset is the case frames == 1, so every existing layout is unchanged. An "item"
// is one image or one whole clip; labels and captions are per item (per clip).
// exactly as stored by MNIST / CIFAR-10 / PNG after conversion, so nothing is scaled until
// the batch loader maps a byte v to v / 127.5 - 1 in [-1, 1] (models/data/loader.h).
// Labels are class indices in [0, num_classes), one per image, or empty for an unlabelled
// dataset (num_classes == 0).
// Captions are one text per image (text conditioning), or empty: generated from the class
// names and the pixels (models/data/captions.h) or read from an image folder's
// metadata.jsonl (models/data/image_folder.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

struct Dataset {
  std::string name;  // "fashion-mnist/train", the folder, ... (for messages and logs)
  std::int64_t n = 0, height = 0, width = 0, channels = 0;
  std::int64_t frames = 1;           // frames per item: 1 = images, > 1 = video clips
  std::vector<std::uint8_t> images;  // [n, frames, height, width, channels]
  std::vector<std::int64_t> labels;  // [n], or empty
  int num_classes = 0;
  std::vector<std::string> class_names;  // [num_classes] when known, else empty
  std::vector<std::string> captions;     // [n], or empty

  bool has_labels() const { return !labels.empty(); }
  bool has_captions() const { return !captions.empty(); }
  // Bytes of one frame, H * W * C.
  std::size_t frame_bytes() const { return static_cast<std::size_t>(height * width * channels); }
  // Bytes of one ITEM: an image, or a whole clip of `frames` frames (F * H * W * C).
  std::size_t image_bytes() const { return static_cast<std::size_t>(frames) * frame_bytes(); }
  // Item i: an image [H, W, C], or a clip [F, H, W, C] whose frame f starts at f * frame_bytes().
  const std::uint8_t* image(std::int64_t i) const { return images.data() + static_cast<std::size_t>(i) * image_bytes(); }
  bool is_video() const { return frames > 1; }
  // "fashion-mnist/train: 60000 images of 28x28x1, 10 classes", or for clips
  // "moving-fashion-mnist: 60000 clips of 8 frames of 32x32x1, 10 classes"
  std::string describe() const;
  // Throws ValueError when frames < 1, when the sizes, the buffers and the labels disagree, or when there are
  // captions but not one per image, or one of them holds no letter or digit (no word).
  void validate() const;
};

// Centres every image (every frame of every clip) on a size x size canvas filled with `fill`
// (0, which the loader maps to -1, the background of MNIST-style data): 28x28 -> 32x32 adds
// 2 pixels on each side.
// When the padding is odd the extra pixel goes to the bottom / right. Images larger than
// `size` are a ValueError.
Dataset pad_to(const Dataset& ds, int size, std::uint8_t fill = 0);

// The first n items (images or clips, and their labels, captions) of ds, for quick runs and tests.
Dataset take(const Dataset& ds, std::int64_t n);

}  // namespace ddpm
