// models/data/moving.h: synthetic video clips of image items bouncing on a black canvas, in
// the manner of Moving MNIST (Srivastava et al. 2015, "Unsupervised Learning of Video
// Representations using LSTMs", sec. 3: digits move inside a 64x64 patch with a random
// velocity and bounce off its edges). Built from any grey or RGB image Dataset; the
// default training set is "Moving Fashion-MNIST" (models/run/data_spec.h).
//
// Conventions: pixel coordinates (x, y) with x to the right and y DOWNWARDS (image rows), so a
// positive vy moves an item down the picture. A position is the item's top-left corner; an
// item of size s on a canvas of size S stays inside when the corner is in [0, S - s]^2.
//
// Clip k of make_moving_clips is a pure function of (seed, k): every random number comes from
// Philox4x32-10 (kernels/common/philox.h) with key = seed and counter = (k, item, tag), so a
// clip does not depend on how many clips are built or in what order. For item j of clip k:
//   source image: k mod source.n for item 0 (so count = n walks the source once), uniform
//                 over the source for the other items
//   start corner: (x0, y0) uniform on [0, S - s]^2 (continuous)
//   velocity:     angle theta ~ U[0, 2 pi), speed v ~ U[min_speed, max_speed] px/frame,
//                 (vx, vy) = v (cos theta, sin theta)
// Positions advance by the velocity each frame; a position that passes a wall is reflected
// back (p -> -p at 0, p -> 2 L - p at L = S - s) and that velocity component changes sign,
// as a ball bouncing elastically. Positions stay continuous; the drawing rounds them to the
// nearest pixel. Items are drawn by max, so overlapping items do not saturate or hide each other.
//
// The item is resized to s x s by an area (box) filter: each output pixel is the average of
// the source pixels it covers, weighted by their overlap (exact for integer factors such
// as 28 -> 14, and a pixel replication when upsampling by an integer factor).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "models/data/dataset.h"

namespace ddpm {

struct MovingClipsOptions {
  int frames = 8;            // frames per clip; 1 = still images, each clip's frame 0 (the
                             // trajectory does not depend on the frame count, so these are
                             // exactly the first frames of the clips of any length)
  int canvas = 32;           // S: the clip is S x S
  int item_size = 16;        // s: each item is resized to s x s (s <= S)
  int items = 1;             // items per clip
  double min_speed = 1.0, max_speed = 3.0;  // speed range in pixels per frame
  std::int64_t count = 0;    // clips to build; 0 = one per source image
  std::uint64_t seed = 0;
};

// The start of one item's path: top-left corner (x, y) and velocity (vx, vy) in px/frame.
struct ItemPath {
  double x = 0, y = 0, vx = 0, vy = 0;
};

// The top-left corner of the item in frames 0 .. frames-1, start.(x, y) in frame 0, bouncing
// inside [0, limit]^2 (limit = S - s >= 0; a start outside it is a ValueError). Pure.
std::vector<std::array<double, 2>> bounce_path(const ItemPath& start, int frames, double limit);

// The path item `item` of clip `clip` starts on (the draws described above), for a canvas
// with corner range [0, limit]. Pure in (o.seed, clip, item).
ItemPath draw_item_path(const MovingClipsOptions& o, std::int64_t clip, int item, double limit);

// An h x w x c image resized to size x size x c by the area filter above.
std::vector<std::uint8_t> resize_area(const std::uint8_t* image, std::int64_t h, std::int64_t w, std::int64_t c,
                                      int size);

// The 8-point compass word of a velocity (y downwards): "right", "up-right", "up", "up-left",
// "left", "down-left", "down", "down-right", each covering 45 degrees centred on its
// direction; a zero velocity is "still".
std::string compass_word(double vx, double vy);
// The same sector as a bin, in compass_word's order: 0 right, 1 up-right, 2 up, 3 up-left, 4 left,
// 5 down-left, 6 down, 7 down-right; -1 for a zero velocity.
int compass_bin(double vx, double vy);

// A motion label source beside the class labels: the compass_bin of the first item's initial
// velocity in clips [0, count) of make_moving_clips(source, o) (draw_item_path(o, k, 0, limit),
// limit = o.canvas - o.item_size). Pure in (o.seed, k), like the clips, so it needs no source.
// ValueError when an item is larger than the canvas or a clip's first item stands still (a
// speed range that includes 0 can draw speed 0: it has no direction).
std::vector<std::int64_t> moving_direction_labels(const MovingClipsOptions& o, std::int64_t count);

// count clips (o.count, or source.n when 0) of o.frames frames of o.canvas x o.canvas x C:
// a Dataset with frames = o.frames, the labels of the first item's class (num_classes and
// class_names kept; unlabelled when the source is), and captions "<class name> moving
// <compass word of the first item's initial velocity>" when the source has labels and class
// names. ValueError for bad options (frames < 1, an item larger than the canvas, an empty or
// inverted speed range, ...) or a source that is empty, not grey or RGB, or already video.
Dataset make_moving_clips(const Dataset& source, const MovingClipsOptions& o);

}  // namespace ddpm
