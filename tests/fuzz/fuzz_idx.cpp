// tests/fuzz/fuzz_idx.cpp: load_idx (models/data/idx.h), the Fashion-MNIST reader: the IDX
// magic and big-endian dimensions, plain or gzip'd (zlib), and the label file beside it.
// The first byte chooses which of the two files gets the fuzzed bytes; the other is a valid
// file of 4 images of 5x5 (or 4 labels).
#include <vector>

#include "models/data/idx.h"
#include "tests/fuzz/fuzz_support.h"

namespace {
std::vector<std::uint8_t> valid_images() {
  std::vector<std::uint8_t> b{0, 0, 0x08, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 5};
  for (int i = 0; i < 4 * 5 * 5; ++i) b.push_back(static_cast<std::uint8_t>(i * 13));
  return b;
}
const std::vector<std::uint8_t> kLabels{0, 0, 0x08, 1, 0, 0, 0, 4, 0, 3, 9, 1};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const std::vector<std::uint8_t> images = valid_images();
  const bool fuzz_labels = (data[0] & 1) != 0;
  const std::string fuzzed = ddpm::fuzz::write_scratch("fuzzed-idx", data + 1, size - 1);
  const std::string other = fuzz_labels ? ddpm::fuzz::write_scratch("images-idx", images.data(), images.size())
                                        : ddpm::fuzz::write_scratch("labels-idx", kLabels.data(), kLabels.size());
  ddpm::fuzz::expect_accept_or_refuse([&] {
    ddpm::Dataset ds = fuzz_labels ? ddpm::load_idx(other, fuzzed) : ddpm::load_idx(fuzzed, other);
    (void)ds;
  });
  return 0;
}
