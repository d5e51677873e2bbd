// models/run/image_sets.h: the image sets ddpm-sample (sample_run.h) and ddpm-edit
// (edit_run.h) write, in one place so the two folders stay alike:
//   grid.png                  the images tiled, `nrow` per row (make_grid, engine/io/png.h)
//   images/000000.png ...     one PNG per image, numbered from 0 with six digits
//   samples.npz               "arr_0" uint8 [N, H, W, C] (as improved-diffusion writes its
//                             samples, so its evaluation scripts read it) and, when labels
//                             are given, "arr_1" int64 [N]
// and the video sets of a video model (unet.h num_frames), written by write_video_set:
//   grid.gif                  the clips tiled `nrow` per row, animated frame by frame
//                             (engine/io/gif.h; grey is stored exactly)
//   filmstrip.png             one row per clip, its F frames left to right
//   videos/000000.gif ...     one animated GIF per clip
//   samples.npz               "arr_0" uint8 [N, F, H, W, C] and, with labels, "arr_1" int64 [N]
// Pixels: a model's x in [-1, 1] is clipped to [-1, 1] and mapped to round((x + 1) * 127.5),
// the inverse of the data scaling x = v / 127.5 - 1 (rounded to the nearest level).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ddpm::run {

// Samples in [-1, 1] (any device, f32 or f64, [N, H, W, C]) -> uint8 pixels, same layout:
// clip to [-1, 1], round((x + 1) * 127.5).
std::vector<std::uint8_t> to_uint8_pixels(const Tensor& x);

// The inverse, as the data loader scales bytes: uint8 [M, S, S, C] -> f32 [M, S, S, C] on the
// CPU, x = v / 127.5 - 1.
Tensor pixels_to_unit(const std::vector<std::uint8_t>& px, std::int64_t m, std::int64_t s, std::int64_t c);

// Writes grid.png, images/NNNNNN.png and samples.npz into `dir` (an existing folder, usually
// the temporary one publish_directory fills) and appends their names (relative to dir) to
// `files`. pixels: uint8 [N, H, W, C]; labels: N or none. The grid is written as `grid_name`
// (ddpm-edit interpolate calls its one-row grid strip.png). ValueError when pixels does not
// hold N images of H x W x C.
void write_image_set(const std::string& dir, const std::vector<std::uint8_t>& pixels, std::int64_t N, int H, int W,
                     int C, int nrow, const std::vector<std::int64_t>& labels, std::vector<std::string>& files,
                     const std::string& grid_name = "grid.png");

// Images given on the command line (--low-res, --first-frame): a PNG, one image, or an .npz
// whose arr_0 is uint8 [M, S, S, C] (what ddpm-sample writes), with labels arr_1 int64 [M]
// when present. `flag` names the option in messages; `use` says what the model does with the
// images ("upsamples", "animates"). IoError when the file is missing or damaged; ValueError
// when its images are not size x size with `channels` channels (naming flag, file and shapes).
struct ImageStack {
  std::string path;
  std::int64_t count = 0;
  std::vector<std::uint8_t> pixels;   // [count, size, size, channels]
  std::vector<std::int64_t> labels;   // [count] from arr_1, or empty
};
ImageStack read_image_stack(const std::string& path, const std::string& flag, int size, int channels,
                            const std::string& use);

// grid.gif alone: frame f tiles frame f of the N clips, `nrow` per row (make_grid).
void write_video_grid(const std::string& path, const std::vector<std::uint8_t>& pixels, std::int64_t N, int F, int H,
                      int W, int C, int nrow, int delay_cs = 12);

// The video set above for N clips of F frames: pixels uint8 [N, F, H, W, C]; delay_cs is
// each GIF frame's display time in 1/100 s. ValueError when pixels does not hold N clips.
void write_video_set(const std::string& dir, const std::vector<std::uint8_t>& pixels, std::int64_t N, int F, int H,
                     int W, int C, int nrow, const std::vector<std::int64_t>& labels, std::vector<std::string>& files,
                     int delay_cs = 12);

}  // namespace ddpm::run
