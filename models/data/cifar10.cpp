#include "models/data/cifar10.h"

#include <filesystem>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm {

namespace {
constexpr std::size_t kSide = 32, kPlane = kSide * kSide, kRecord = 1 + 3 * kPlane;  // 3073
}

const std::vector<std::string>& cifar10_classes() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

void append_cifar10_records(const std::vector<unsigned char>& bytes, const std::string& path, Dataset& ds) {
  DDPM_CHECK_AS(!bytes.empty() && bytes.size() % kRecord == 0, IoError,
                "CIFAR-10 batch '" << path << "' is " << bytes.size() << " bytes long, which is not a positive multiple of "
                                   << kRecord << " (1 label byte + 3x32x32 pixels per record): the file is truncated "
                                   << "or not a CIFAR-10 binary batch");
  const std::size_t records = bytes.size() / kRecord;
  const std::size_t base = ds.images.size();
  ds.images.resize(base + records * 3 * kPlane);
  for (std::size_t r = 0; r < records; ++r) {
    const unsigned char* rec = bytes.data() + r * kRecord;
    DDPM_CHECK_AS(rec[0] < 10, IoError,
                  "CIFAR-10 batch '" << path << "': record " << r << " has label " << int(rec[0]) << ", outside [0, 10)");
    ds.labels.push_back(rec[0]);
    std::uint8_t* dst = ds.images.data() + base + r * 3 * kPlane;
    for (std::size_t p = 0; p < kPlane; ++p)  // p = y * 32 + x
      for (std::size_t c = 0; c < 3; ++c) dst[p * 3 + c] = rec[1 + c * kPlane + p];
  }
  ds.n += static_cast<std::int64_t>(records);
}

Dataset load_cifar10(const std::string& dir, const std::string& split) {
  DDPM_CHECK(split == "train" || split == "test",
             "load_cifar10: split must be \"train\" or \"test\", got \"" << split << "\"");
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string root = dir;
  if (!fs::exists(root + "/test_batch.bin", ec) && fs::is_directory(root + "/cifar-10-batches-bin", ec))
    root += "/cifar-10-batches-bin";
  std::vector<std::string> files;
  if (split == "train")
    for (int i = 1; i <= 5; ++i) files.push_back(root + "/data_batch_" + std::to_string(i) + ".bin");
  else
    files.push_back(root + "/test_batch.bin");

  Dataset ds;
  ds.name = "cifar10/" + split;
  ds.height = ds.width = kSide;
  ds.channels = 3;
  ds.num_classes = 10;
  ds.class_names = cifar10_classes();
  for (const std::string& f : files) {
    DDPM_CHECK_AS(fs::is_regular_file(f, ec), IoError,
                  "CIFAR-10 " << split << " batch '" << f << "' does not exist (download the binary version, "
                              << "cifar-10-binary.tar.gz, and pass the folder that holds the .bin files)");
    std::string s = read_file(f);
    append_cifar10_records(std::vector<unsigned char>(s.begin(), s.end()), f, ds);
  }
  return ds;
}

}  // namespace ddpm
