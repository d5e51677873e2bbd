// models/run/edit_inputs.h: the images ddpm-edit works on (--images), and the image sets it
// writes.
//
// --images is one of
//   a PNG file                      one image
//   a folder                        every *.png in it (not recursive), sorted by file name
//   a .npz (ddpm-sample's format)   "arr_0" uint8 [N, H, W, C]
// Every image must have the model's height, width and channel count (1 grey or 3 RGB): a
// ValueError names both shapes and the file. Pixels map to [-1, 1] as the training data,
// x = v / 127.5 - 1. A missing or damaged file is an IoError; an empty folder, a folder
// without PNGs, or an npz whose arr_0 is not uint8 [N, H, W, C] a ValueError.
//
// An image set is written as ddpm-sample writes its samples (sample_run.h): grid.png (the
// images tiled, `nrow` per row), images/NNNNNN.png and samples.npz ("arr_0" uint8
// [N, H, W, C], "arr_1" int64 [N] labels when given). Pixels: clip to [-1, 1], then
// round((x + 1) * 127.5).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ddpm::run {

struct EditImages {
  Tensor images;                   // [N, H, W, C] f64 on the CPU, in [-1, 1]
  std::vector<std::string> names;  // one per image: the PNG's path, or "FILE.npz[i]"
};

// Reads --images (see above) for a model of H x W x C images; `flag` names the option in
// messages ("--images").
EditImages load_edit_images(const std::string& path, int H, int W, int C, const std::string& flag = "--images");

// Writes grid.png, images/NNNNNN.png and samples.npz into `dir` (an existing folder) and
// appends their names (relative to dir) to `files`. pixels: uint8 [N, H, W, C]; the grid is
// written as `grid_name` (ddpm-edit interpolate calls its one-row grid strip.png).
void write_image_set(const std::string& dir, const std::vector<std::uint8_t>& pixels, std::int64_t N, int H, int W,
                     int C, int nrow, const std::vector<std::int64_t>& labels, std::vector<std::string>& files,
                     const std::string& grid_name = "grid.png");

}  // namespace ddpm::run
