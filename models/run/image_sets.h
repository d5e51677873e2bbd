// models/run/image_sets.h: the image sets ddpm-sample (sample_run.h) and ddpm-edit
// (edit_run.h) write, in one place so the two folders stay alike:
//   grid.png                  the images tiled, `nrow` per row (make_grid, engine/io/png.h)
//   images/000000.png ...     one PNG per image, numbered from 0 with six digits
//   samples.npz               "arr_0" uint8 [N, H, W, C] (as improved-diffusion writes its
//                             samples, so its evaluation scripts read it) and, when labels
//                             are given, "arr_1" int64 [N]
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

// Writes grid.png, images/NNNNNN.png and samples.npz into `dir` (an existing folder, usually
// the temporary one publish_directory fills) and appends their names (relative to dir) to
// `files`. pixels: uint8 [N, H, W, C]; labels: N or none. The grid is written as `grid_name`
// (ddpm-edit interpolate calls its one-row grid strip.png). ValueError when pixels does not
// hold N images of H x W x C.
void write_image_set(const std::string& dir, const std::vector<std::uint8_t>& pixels, std::int64_t N, int H, int W,
                     int C, int nrow, const std::vector<std::int64_t>& labels, std::vector<std::string>& files,
                     const std::string& grid_name = "grid.png");

}  // namespace ddpm::run
