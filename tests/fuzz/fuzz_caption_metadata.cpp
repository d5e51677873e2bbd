// tests/fuzz/fuzz_caption_metadata.cpp: read_caption_metadata (models/data/caption_metadata.h),
// an image folder's metadata.jsonl: lines, the JSON parser per line, "file_name" and "text",
// and the one-caption-per-image bookkeeping, for a folder of three images in two layouts.
#include <cstdlib>
#include <string>
#include <vector>

#include "models/data/caption_metadata.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<std::string> images = {"0001.png", "coat/0002.png", "coat/0003.png"};
  const std::string path = ddpm::fuzz::write_scratch("metadata.jsonl", data, size);
  ddpm::fuzz::expect_accept_or_refuse([&] {
    const std::vector<std::string> captions = ddpm::read_caption_metadata(path, images);
    if (captions.size() != images.size()) std::abort();
  });
  return 0;
}
