// engine/io/png.h: 8-bit PNG images in and out, and the sample grid.
//
// Pixels are row-major HWC uint8: pixel (y, x) channel c is pixels[(y * W + x) * C + c].
// C is 1 (grey) or 3 (RGB). Reading converts whatever the file holds to one of those:
// palette -> RGB, grey+alpha / RGBA -> grey / RGB by compositing on black (v * alpha / 255),
// 16-bit -> 8-bit (round(v * 255 / 65535)), no gamma change. Writing is atomic (atomic_file.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

struct Image {
  int height = 0;
  int width = 0;
  int channels = 0;             // 1 or 3
  std::vector<std::uint8_t> pixels;  // [height, width, channels]
};

// Writes an 8-bit grey (channels == 1) or RGB (channels == 3) PNG atomically.
void write_png(const std::string& path, const std::uint8_t* pixels, int height, int width, int channels);
inline void write_png(const std::string& path, const Image& image) {
  write_png(path, image.pixels.data(), image.height, image.width, image.channels);
}

// Reads a PNG as 8-bit grey or RGB. IoError naming the file when it is missing, not a PNG,
// or damaged.
Image read_png(const std::string& path);

// Tiles images [N, H, W, C] (uint8, NHWC) into one picture of nrow images per row (the
// last row may be short), with `padding` pixels of `pad_value` between and around them,
// like torchvision.utils.make_grid: the result is
//   [ceil(N / nrow) * (H + padding) + padding, min(N, nrow) * (W + padding) + padding, C].
Image make_grid(const std::uint8_t* images, int n, int height, int width, int channels, int nrow, int padding = 2,
                std::uint8_t pad_value = 0);

}  // namespace ddpm
