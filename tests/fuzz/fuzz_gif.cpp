// tests/fuzz/fuzz_gif.cpp: read_gif (engine/io/gif.h): block parsing, palettes, the LZW
// decoder (codes not yet in the table), interlacing, compositing at offsets, disposal.
#include "engine/io/gif.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = ddpm::fuzz::write_scratch("input.gif", data, size);
  ddpm::fuzz::expect_accept_or_refuse([&] {
    ddpm::Gif g = ddpm::read_gif(path);
    // The reader's promise: frames hold exactly [num_frames, height, width, channels], one delay each.
    if (g.frames.size() != static_cast<std::size_t>(g.num_frames) * g.height * g.width * g.channels ||
        g.delays_cs.size() != static_cast<std::size_t>(g.num_frames) || (g.channels != 1 && g.channels != 3))
      std::abort();
  });
  return 0;
}
