// models/data/cifar10.h: CIFAR-10, binary version (https://www.cs.toronto.edu/~kriz/cifar.html).
//
// Each batch file is a sequence of 3073-byte records: one label byte (0..9), then the
// 32x32 image as three 1024-byte planes, red, green, blue, each row-major (CHW). We
// transpose to HWC: pixel (y, x) channel c = record[1 + c * 1024 + y * 32 + x].
// The training split is data_batch_1.bin .. data_batch_5.bin (50000 images), the test
// split test_batch.bin (10000).
#pragma once

#include <string>
#include <vector>

#include "models/data/dataset.h"

namespace ddpm {

// `dir` holds the .bin files, directly or in the archive's own "cifar-10-batches-bin"
// sub-folder. IoError naming the file when one is missing, its size is not a positive
// multiple of 3073 bytes, or a label is above 9.
Dataset load_cifar10(const std::string& dir, const std::string& split = "train");

// Decodes one batch file's bytes (for tests and other containers of the same records).
void append_cifar10_records(const std::vector<unsigned char>& bytes, const std::string& path, Dataset& ds);

const std::vector<std::string>& cifar10_classes();

}  // namespace ddpm
