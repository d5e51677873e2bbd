// tests/fuzz/fuzz_png.cpp: read_png (engine/io/png.h), libpng behind our conversion to 8-bit
// grey or RGB (palette, alpha compositing, 16-bit).
#include "engine/io/png.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = ddpm::fuzz::write_scratch("input.png", data, size);
  ddpm::fuzz::expect_accept_or_refuse([&] {
    ddpm::Image im = ddpm::read_png(path);
    // The reader's promise: pixels hold exactly [height, width, channels].
    if (im.pixels.size() != static_cast<std::size_t>(im.height) * im.width * im.channels) std::abort();
  });
  return 0;
}
