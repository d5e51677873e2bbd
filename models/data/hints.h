// models/data/hints.h: the spatial conditions ("hints") a ControlNet is trained on
// (models/unet/controlnet.h), computed from an image on the host, deterministically, so the
// same image always gives the same hint in training and in sampling.
//
// A small registry: each hint has a name, an optional integer argument ("name:K") and a rule
// for its channels and values. Hints are NHWC f32 in [-1, 1] like the images.
//   edges       Sobel gradient magnitude of the luminance, 1 channel (Canny's first stage;
//               ControlNet's "Canny edge" condition without the thinning and hysteresis).
//               Luminance Y in [0, 1]: the image itself for 1 channel, else ITU-R BT.601
//               0.299 R + 0.587 G + 0.114 B of (x + 1) / 2. With the 3x3 Sobel kernels
//                 G_x = [-1 0 1; -2 0 2; -1 0 1] * Y,   G_y = G_x^T * Y
//               (cross-correlation, borders replicated), the hint is
//                 e = 2 min(sqrt(G_x^2 + G_y^2) / 4, 1) - 1,
//               where 4 is the magnitude across an ideal black-to-white step (1 + 2 + 1): a
//               full-contrast edge maps to +1, a flat region to -1. A fixed normaliser (not
//               the image's own maximum) keeps faint edges faint, and one image's hint
//               independent of any other's.
//   lowres:K    the image area-averaged to K x K and upsampled back bilinearly (the
//               super-resolution condition of models/diffusion/super_res.h), the image's
//               channels: ControlNet as a guided upsampler / colouriser of a blurred
//               layout. K >= 1 must divide the image size and be smaller than it.
#pragma once

#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ddpm::data {

struct HintSpec {
  std::string name;  // "edges", "lowres"
  int arg = 0;       // K of lowres:K; 0 for hints without an argument
};

// "edges" or "lowres:K"; ValueError listing the known hints for anything else.
HintSpec parse_hint(const std::string& text);
std::string hint_string(const HintSpec& h);  // the inverse of parse_hint
// One line per registered hint, for --help and errors.
std::string hint_help();

// The hint's channels for images of `image_channels` channels.
int hint_channels(const HintSpec& h, int image_channels);
// ValueError when the hint cannot be made for images of size x size (lowres:K with K not
// dividing size).
void check_hint_fits(const HintSpec& h, int size);

// x [N, H, W, C] in [-1, 1] (f32 or f64, CPU) -> the hint [N, H, W, hint_channels] f32 on the
// CPU, in [-1, 1].
Tensor compute_hint(const HintSpec& h, const Tensor& x);

// The edges hint of one luminance plane y [H * W] in [0, 1] (row-major), in [-1, 1]: the
// rule above, exposed for tests.
std::vector<double> sobel_edge_hint(const std::vector<double>& y, int H, int W);

}  // namespace ddpm::data
