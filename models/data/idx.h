// models/data/idx.h: MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST), plain or gzip.
//
// IDX layout (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): a 4-byte magic
//   0x00 0x00 <type> <number of dimensions>
// with type 0x08 = unsigned byte, then each dimension as a 32-bit big-endian integer, then
// the values in row-major order. Image files are 0x00000803 ([N, rows, cols]), label files
// 0x00000801 ([N]). The file must hold exactly as many bytes as the header announces.
// A file starting with the gzip magic 1f 8b is decompressed first (zlib).
#pragma once

#include <string>
#include <vector>

#include "models/data/dataset.h"

namespace ddpm {

// Loads an IDX image file and, unless labels_path is empty, its label file. Labels must be
// in [0, num_classes). IoError naming the file for: a missing file, a truncated or damaged
// gzip stream, a bad magic or dimension count, a file shorter or longer than its header
// says, a label count that differs from the image count, a label out of range.
Dataset load_idx(const std::string& images_path, const std::string& labels_path = "", int num_classes = 10,
                 const std::string& name = "");

// Fashion-MNIST (Xiao et al. 2017): 60000 train / 10000 test greyscale 28x28 images of 10
// clothing classes. `split` is "train" or "test"; `dir` holds train-images-idx3-ubyte.gz,
// train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or the
// same names without .gz). The Debian package dataset-fashion-mnist installs them in the
// default folder.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
Dataset load_fashion_mnist(const std::string& split = "train", const std::string& dir = kFashionMnistDir);

// The ten Fashion-MNIST class names, index = label.
const std::vector<std::string>& fashion_mnist_classes();

// Reads a whole file, decompressing it when it starts with the gzip magic; IoError naming
// the file when it is missing, unreadable, or a truncated / damaged gzip stream.
std::vector<unsigned char> read_maybe_gzip(const std::string& path);

}  // namespace ddpm
