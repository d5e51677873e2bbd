// models/run/edit_inputs.h: the images ddpm-edit works on (--images).
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
// The image sets ddpm-edit writes (grid, images/, samples.npz) come from
// models/run/image_sets.h, as ddpm-sample's do.
#pragma once

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

}  // namespace ddpm::run
