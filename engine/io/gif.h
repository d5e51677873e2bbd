// engine/io/gif.h: animated GIF89a files for video samples, in and out.
//
// Frames are row-major [F, H, W, C] uint8: frame f, pixel (y, x), channel c is
// frames[((f * H + y) * W + x) * C + c]. C is 1 (grey) or 3 (RGB).
//
// Writing (GIF89a spec, W3C/CompuServe 1990): one 256-entry global palette, one Graphic
// Control Extension (delay in 1/100 s, disposal "do not dispose") and one full-canvas image
// per frame, LZW-compressed (codes from min_code_size + 1 = 9 bits up to 12, a clear code
// when the table is full). A NETSCAPE2.0 application extension makes viewers loop forever.
// - Grey: palette entry i is (i, i, i), so grey frames are stored exactly.
// - RGB: a fixed 6x7x6 colour cube (6 red, 7 green, 6 blue levels evenly spaced over
//   0..255: 252 colours, the eye is most sensitive to green), each pixel mapped to the
//   nearest cube colour per channel, no dithering. Worst-case error per channel: 25 for red
//   and blue (levels 51 apart), 21 for green (levels 42.5 apart): see kGifRgbMaxError.
// Writing is atomic (atomic_file.h).
//
// Reading decodes what common writers produce: global and local palettes, interlaced
// images, frames smaller than the canvas composited at their offset, a transparent index,
// disposal methods 0-3 (none, do not dispose, restore to background, restore to previous).
// The canvas starts as the background colour (black without a global palette). Every frame
// read is the whole canvas after that image is drawn. Not supported, refused with an
// IoError naming the file: images reaching outside the canvas, reserved disposal values
// 4-7, pixel indices outside the palette, a canvas above 4096 x 4096 pixels or decoded
// frames above 256 MiB in total. Plain-text extensions are skipped (their text is not drawn).
// Damaged or truncated files give an IoError, never a crash.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// The worst-case per-channel error of an RGB round trip through write_gif's 6x7x6 palette.
constexpr int kGifRgbMaxError[3] = {25, 21, 25};

// Writes frames [num_frames, height, width, channels] (channels 1 or 3) as an animated GIF,
// each frame shown for delay_cs hundredths of a second, looping forever when `loop`.
// ValueError naming the value for bad sizes, channels or delay; IoError naming the file
// when it cannot be written.
void write_gif(const std::string& path, const std::uint8_t* frames, int num_frames, int height, int width,
               int channels, int delay_cs = 12, bool loop = true);

struct Gif {
  int height = 0;
  int width = 0;
  int channels = 0;                  // 1 when every pixel of every frame is grey, else 3
  std::vector<std::uint8_t> frames;  // [num_frames, height, width, channels]
  int num_frames = 0;
  std::vector<int> delays_cs;        // per frame, 1/100 s (0 when the frame has no GCE)
};

// Reads every frame of a GIF (87a or 89a). IoError naming the file when it is missing,
// not a GIF, damaged, truncated, or uses something listed above as not supported.
Gif read_gif(const std::string& path);

}  // namespace ddpm
