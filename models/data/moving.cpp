// models/data/moving.cpp: bouncing-item video clips (contract and conventions in moving.h).
#include "models/data/moving.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "kernels/common/philox.h"

namespace ddpm {
namespace {

constexpr double kPi = 3.14159265358979323846;
// Counter word 3 = kMovingTag + block keeps these draws apart from the loader's streams
// (which use words 3 = 0 and 1) under the same seed.
constexpr std::uint32_t kMovingTag = 0x6d6f7600u;  // "mov\0"
// The random numbers of one item, in the order of their words.
enum Draw : std::uint32_t { kSource = 0, kStartX, kStartY, kAngle, kSpeed };

// Word `w` of item `item` of clip `clip`: counter (clip lo, clip hi, item, tag + w / 4).
std::uint32_t item_word(std::uint64_t seed, std::int64_t clip, int item, std::uint32_t w) {
  const auto k = static_cast<std::uint64_t>(clip);
  philox::U32x4 r = philox::philox4x32_10(static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(k >> 32),
                                          static_cast<std::uint32_t>(item), kMovingTag + w / 4,
                                          static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
  return r.v[w % 4];
}

// Uniform in [0, 1) from the top 24 bits (the same transform as philox.h's uniform).
double unit(std::uint32_t word) { return static_cast<double>(word >> 8) * (1.0 / 16777216.0); }

// Reflects a coordinate that left [0, limit] back inside, flipping the velocity on each
// bounce (several bounces when a step is longer than the range).
void reflect(double& p, double& v, double limit) {
  if (limit == 0) {  // the item fills the canvas: it cannot move
    p = 0;
    return;
  }
  while (p < 0 || p > limit) {
    p = p < 0 ? -p : 2 * limit - p;
    v = -v;
  }
}

void check_options(const Dataset& source, const MovingClipsOptions& o) {
  DDPM_CHECK(o.frames >= 1, "moving clips: frames must be at least 1 (1 = still images, the clips' first frames), "
                             "got " << o.frames);
  DDPM_CHECK(o.canvas >= 1, "moving clips: the canvas size must be positive, got " << o.canvas);
  DDPM_CHECK(o.item_size >= 1, "moving clips: the item size must be positive, got " << o.item_size);
  DDPM_CHECK(o.item_size <= o.canvas, "moving clips: an item of " << o.item_size << "x" << o.item_size
                                                                  << " is larger than the canvas of " << o.canvas
                                                                  << "x" << o.canvas);
  DDPM_CHECK(o.items >= 1, "moving clips: each clip needs at least 1 item, got " << o.items);
  DDPM_CHECK(std::isfinite(o.min_speed) && std::isfinite(o.max_speed) && o.min_speed >= 0 &&
                 o.min_speed <= o.max_speed,
             "moving clips: the speed range [" << o.min_speed << ", " << o.max_speed
                                               << "] px/frame must be finite with 0 <= min_speed <= max_speed");
  DDPM_CHECK(o.count >= 0, "moving clips: the clip count must be >= 0 (0 = one per source image), got " << o.count);
  source.validate();
  DDPM_CHECK(source.n > 0, "moving clips: the source dataset '" << source.name << "' is empty");
  DDPM_CHECK(source.frames == 1, "moving clips: the source dataset '" << source.name << "' holds clips of "
                                                                      << source.frames
                                                                      << " frames; it must hold still images");
  DDPM_CHECK(source.channels == 1 || source.channels == 3,
             "moving clips: the source dataset '" << source.name << "' has " << source.channels
                                                  << " channels; only grey (1) or RGB (3) images can be moved");
  const double bytes = static_cast<double>(o.count > 0 ? o.count : source.n) * o.frames * o.canvas * o.canvas *
                       static_cast<double>(source.channels);
  DDPM_CHECK(bytes <= 8.0 * (1ull << 30), "moving clips: " << (o.count > 0 ? o.count : source.n) << " clips of "
                                                           << o.frames << "x" << o.canvas << "x" << o.canvas << "x"
                                                           << source.channels << " would take " << bytes / (1ull << 30)
                                                           << " GiB; lower the clip count, frames or canvas");
}

}  // namespace

std::vector<std::array<double, 2>> bounce_path(const ItemPath& start, int frames, double limit) {
  DDPM_CHECK(frames >= 0 && limit >= 0, "bounce_path: need frames >= 0 and limit >= 0, got " << frames << ", " << limit);
  DDPM_CHECK(start.x >= 0 && start.x <= limit && start.y >= 0 && start.y <= limit,
             "bounce_path: the start (" << start.x << ", " << start.y << ") is outside [0, " << limit << "]^2");
  std::vector<std::array<double, 2>> path;
  path.reserve(static_cast<std::size_t>(frames));
  double x = start.x, y = start.y, vx = start.vx, vy = start.vy;
  for (int f = 0; f < frames; ++f) {
    path.push_back({x, y});
    x += vx;  // p_{f+1} = p_f + v, then reflection at the walls
    y += vy;
    reflect(x, vx, limit);
    reflect(y, vy, limit);
  }
  return path;
}

ItemPath draw_item_path(const MovingClipsOptions& o, std::int64_t clip, int item, double limit) {
  auto u = [&](Draw d) { return unit(item_word(o.seed, clip, item, d)); };
  ItemPath p;
  p.x = u(kStartX) * limit;
  p.y = u(kStartY) * limit;
  // theta = 2 pi u; philox.h's sin/cos avoid the math library, so a clip is the same on every machine.
  double sin_theta = 0, cos_theta = 0;
  philox::sincos_2pi_exact(u(kAngle), sin_theta, cos_theta);
  const double speed = o.min_speed + (o.max_speed - o.min_speed) * u(kSpeed);
  p.vx = speed * cos_theta;
  p.vy = speed * sin_theta;
  return p;
}

std::vector<std::uint8_t> resize_area(const std::uint8_t* image, std::int64_t h, std::int64_t w, std::int64_t c,
                                      int size) {
  DDPM_CHECK(h > 0 && w > 0 && c > 0 && size > 0,
             "resize_area: bad sizes " << h << "x" << w << "x" << c << " -> " << size);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(size) * size * c);
  // Output pixel (oy, ox) covers source rows [oy h/size, (oy+1) h/size) and the like for
  // columns; the value is the overlap-weighted mean of the source pixels in that box.
  const double sy = static_cast<double>(h) / size, sx = static_cast<double>(w) / size;
  std::vector<double> acc(static_cast<std::size_t>(c));
  for (int oy = 0; oy < size; ++oy) {
    const double y0 = oy * sy, y1 = (oy + 1) * sy;
    for (int ox = 0; ox < size; ++ox) {
      const double x0 = ox * sx, x1 = (ox + 1) * sx;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (auto y = static_cast<std::int64_t>(y0); y < h && y < y1; ++y) {
        const double wy = std::min<double>(y + 1, y1) - std::max<double>(y, y0);
        for (auto x = static_cast<std::int64_t>(x0); x < w && x < x1; ++x) {
          const double wxy = wy * (std::min<double>(x + 1, x1) - std::max<double>(x, x0));
          for (std::int64_t ch = 0; ch < c; ++ch) acc[ch] += wxy * image[(y * w + x) * c + ch];
        }
      }
      const double area = sy * sx;
      for (std::int64_t ch = 0; ch < c; ++ch)
        out[(static_cast<std::size_t>(oy) * size + ox) * c + ch] =
            static_cast<std::uint8_t>(std::clamp(std::floor(acc[ch] / area + 0.5), 0.0, 255.0));
    }
  }
  return out;
}

int compass_bin(double vx, double vy) {
  if (vx == 0 && vy == 0) return -1;
  // Angle counter-clockwise from "right" as seen on screen: y grows downwards, so up is -vy.
  const double angle = std::atan2(-vy, vx);  // (-pi, pi]
  const auto sector = static_cast<int>(std::floor(angle / (kPi / 4) + 0.5));  // nearest multiple of 45 degrees
  return ((sector % 8) + 8) % 8;
}

std::string compass_word(double vx, double vy) {
  static const char* const kWords[8] = {"right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right"};
  const int bin = compass_bin(vx, vy);
  return bin < 0 ? "still" : kWords[bin];
}

std::vector<std::int64_t> moving_direction_labels(const MovingClipsOptions& o, std::int64_t count) {
  DDPM_CHECK(o.item_size >= 1 && o.item_size <= o.canvas && count >= 0,
             "moving direction labels: need 1 <= item size <= canvas and count >= 0, got item size "
                 << o.item_size << ", canvas " << o.canvas << ", count " << count);
  const double limit = static_cast<double>(o.canvas - o.item_size);
  std::vector<std::int64_t> bins(static_cast<std::size_t>(count));
  for (std::int64_t k = 0; k < count; ++k) {
    const ItemPath p = draw_item_path(o, k, 0, limit);
    bins[k] = compass_bin(p.vx, p.vy);
    DDPM_CHECK(bins[k] >= 0, "moving direction labels: the first item of clip " << k << " stands still (speed range ["
                                                                              << o.min_speed << ", " << o.max_speed
                                                                              << "]), so it has no direction");
  }
  return bins;
}

Dataset make_moving_clips(const Dataset& source, const MovingClipsOptions& o) {
  check_options(source, o);
  const std::int64_t count = o.count > 0 ? o.count : source.n;
  const std::int64_t c = source.channels, s = o.item_size, canvas = o.canvas;
  const double limit = static_cast<double>(canvas - s);
  Dataset ds;
  ds.name = "moving-" + source.name;
  ds.n = count;
  ds.frames = o.frames;
  ds.height = ds.width = canvas;
  ds.channels = c;
  ds.num_classes = source.num_classes;
  ds.class_names = source.class_names;
  const bool captioned = source.has_labels() && !source.class_names.empty();
  ds.images.assign(static_cast<std::size_t>(count) * ds.image_bytes(), 0);  // [count, F, S, S, C], black
  if (source.has_labels()) ds.labels.resize(static_cast<std::size_t>(count));
  if (captioned) ds.captions.resize(static_cast<std::size_t>(count));
  for (std::int64_t k = 0; k < count; ++k) {
    std::uint8_t* clip = ds.images.data() + static_cast<std::size_t>(k) * ds.image_bytes();
    for (int j = 0; j < o.items; ++j) {
      // Item 0 walks the source in order; the others are drawn uniformly (multiply-shift).
      const std::int64_t src =
          j == 0 ? k % source.n
                 : static_cast<std::int64_t>((static_cast<std::uint64_t>(item_word(o.seed, k, j, kSource)) *
                                              static_cast<std::uint64_t>(source.n)) >> 32);
      const std::vector<std::uint8_t> item = resize_area(source.image(src), source.height, source.width, c, o.item_size);
      const ItemPath start = draw_item_path(o, k, j, limit);
      const std::vector<std::array<double, 2>> path = bounce_path(start, o.frames, limit);
      for (int f = 0; f < o.frames; ++f) {
        // Round the continuous corner to the nearest pixel; [0, limit] rounds into [0, S - s].
        const auto px = static_cast<std::int64_t>(std::floor(path[f][0] + 0.5));
        const auto py = static_cast<std::int64_t>(std::floor(path[f][1] + 0.5));
        std::uint8_t* frame = clip + static_cast<std::size_t>(f) * ds.frame_bytes();
        for (std::int64_t y = 0; y < s; ++y)
          for (std::int64_t x = 0; x < s; ++x)
            for (std::int64_t ch = 0; ch < c; ++ch) {
              std::uint8_t& dst = frame[((py + y) * canvas + px + x) * c + ch];
              dst = std::max(dst, item[(y * s + x) * c + ch]);  // overlapping items combine by max
            }
      }
      if (j != 0) continue;
      if (source.has_labels()) ds.labels[k] = source.labels[src];
      if (captioned)
        ds.captions[k] = source.class_names[source.labels[src]] + " moving " + compass_word(start.vx, start.vy);
    }
  }
  ds.validate();
  return ds;
}

}  // namespace ddpm
