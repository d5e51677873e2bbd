// models/run/data_spec.h: what `ddpm-train --data SPEC` means, and loading it.
//
//   fashion-mnist[:DIR]     Fashion-MNIST training split (the default), from the Debian package
//                           dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or DIR
//   idx:IMAGES[,LABELS]     MNIST-style IDX files, plain or gzip; labels optional (10 classes)
//   cifar10:DIR             CIFAR-10 binary batches (data_batch_1..5.bin), training split
//   folder:DIR              PNG images; labels from the class sub-folders, if any
//   toy                     built-in 16x16 shapes (4 classes, models/data/toy.h): no files,
//                           for tests and quick demos
//   moving-fashion-mnist[:DIR]  video: clips of Fashion-MNIST training items bouncing on a
//                           black canvas (models/data/moving.h), one clip per source image
//   moving-toy              video: clips of the toy shapes (no files, for tests)
//
// The moving-* clips take --frames, --canvas, --item-size and --moving-items (DataOptions);
// those flags are refused with any other dataset. A video dataset has frames > 1; --frames 1
// gives the clips' first frames as still images (the training set of the image model of Emu
// Video's factorisation, models/run/video_run.h).
//
// After loading, --pad-to-32 centres 28x28 images on a 32x32 canvas (so a 4-level UNet can
// halve them three times); --random-flip is applied per batch by the loader.
#pragma once

#include <cstdint>
#include <string>

#include "models/data/dataset.h"

namespace ddpm::run {

struct DataSpec {
  enum class Kind { fashion_mnist, idx, cifar10, folder, toy, moving_fashion_mnist, moving_toy };
  bool is_moving() const { return kind == Kind::moving_fashion_mnist || kind == Kind::moving_toy; }
  Kind kind = Kind::fashion_mnist;
  std::string path;         // the folder or the image file (empty: the default folder)
  std::string labels_path;  // idx only, may be empty
  std::string text;         // the spec as given
};

// Parses a --data value; ValueError listing the accepted forms for anything else.
DataSpec parse_data_spec(const std::string& text);

struct DataOptions {
  bool pad_to_32 = false;
  std::int64_t toy_count = 1024;  // images in the built-in toy set
  int toy_size = 16;
  std::uint64_t seed = 0;         // of the toy set and of the moving clips
  // moving-* datasets only (models/data/moving.h); the defaults are MovingClipsOptions'.
  int frames = 8;                 // --frames
  int canvas = 32;                // --canvas
  int item_size = 16;             // --item-size
  int moving_items = 1;           // --moving-items
  std::int64_t clip_count = 0;    // clips to build; 0 = one per source image
};

// ValueError naming the flag when a clip option differs from its default but the dataset is
// not a moving-* one (the flag would silently do nothing).
void check_clip_flags(const DataSpec& spec, const DataOptions& options);

// Loads the dataset (IoError naming the file, or the package to install, when data is
// missing or damaged) and applies the padding.
Dataset load_data(const DataSpec& spec, const DataOptions& options);

// load_data for the apps that work on still images (classifiers, autoencoders, ControlNet,
// distillation): ValueError "<what> trains on still images; --data <spec> holds video clips"
// for a moving-* spec, before anything is loaded.
Dataset load_image_data(const DataSpec& spec, const DataOptions& options, const std::string& what);

}  // namespace ddpm::run
