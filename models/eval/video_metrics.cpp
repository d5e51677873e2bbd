// models/eval/video_metrics.cpp: frame difference, motion-compensated residual and mass drift
// of clips (see video_metrics.h).
#include "models/eval/video_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <vector>

#include "engine/error.h"
#include "engine/io/npz.h"

namespace ddpm::eval {
namespace {

// sum_p |next(p) - prev(p - d)| in bytes (an exact integer; the means divide it by 255 H W C).
// Row y of next meets row y - dy of prev; outside prev's rows or columns prev reads 0.
std::int64_t shifted_abs_sum(const std::uint8_t* prev, const std::uint8_t* next, std::int64_t H, std::int64_t W,
                             std::int64_t C, int dx, int dy) {
  std::int64_t sum = 0;
  for (std::int64_t y = 0; y < H; ++y) {
    const std::uint8_t* n_row = next + y * W * C;
    const std::int64_t sy = y - dy;
    if (sy < 0 || sy >= H) {  // the whole row compares against the black canvas
      for (std::int64_t i = 0; i < W * C; ++i) sum += n_row[i];
      continue;
    }
    const std::uint8_t* p_row = prev + sy * W * C;
    for (std::int64_t x = 0; x < W; ++x) {
      const std::int64_t sx = x - dx;
      const bool inside = sx >= 0 && sx < W;
      for (std::int64_t c = 0; c < C; ++c) {
        const int a = n_row[x * C + c], b = inside ? p_row[sx * C + c] : 0;
        sum += std::abs(a - b);
      }
    }
  }
  return sum;
}

void check_clips(const Dataset& clips, const char* what) {
  DDPM_CHECK(clips.frames >= 2, what << ": " << clips.name << " holds still images (frames = " << clips.frames
                                     << "), not clips of at least 2 frames");
  DDPM_CHECK(clips.n >= 1, what << ": " << clips.name << " holds no clip");
}

}  // namespace

double shifted_frame_difference(const std::uint8_t* prev, const std::uint8_t* next, std::int64_t height,
                                std::int64_t width, std::int64_t channels, int dx, int dy) {
  const double elements = static_cast<double>(height * width * channels);
  return static_cast<double>(shifted_abs_sum(prev, next, height, width, channels, dx, dy)) / (255.0 * elements);
}

VideoMetrics video_metrics(const Dataset& clips, int max_shift) {
  check_clips(clips, "video metrics");
  DDPM_CHECK(max_shift >= 0, "video metrics: the largest shift --max-shift must be 0 or more, got " << max_shift);
  const std::int64_t H = clips.height, W = clips.width, C = clips.channels, F = clips.frames;
  const std::size_t frame = clips.frame_bytes();
  const double scale = 255.0 * static_cast<double>(H * W * C);  // bytes -> mean intensity
  double diff_sum = 0, residual_sum = 0, drift_sum = 0;
  std::vector<double> mass(static_cast<std::size_t>(F));
  for (std::int64_t i = 0; i < clips.n; ++i) {
    const std::uint8_t* clip = clips.image(i);  // [F, H, W, C]
    for (std::int64_t f = 0; f + 1 < F; ++f) {
      const std::uint8_t* prev = clip + static_cast<std::size_t>(f) * frame;
      const std::uint8_t* next = prev + frame;
      diff_sum += static_cast<double>(shifted_abs_sum(prev, next, H, W, C, 0, 0)) / scale;
      std::int64_t best = std::numeric_limits<std::int64_t>::max();
      for (int dy = -max_shift; dy <= max_shift; ++dy)
        for (int dx = -max_shift; dx <= max_shift; ++dx)
          best = std::min(best, shifted_abs_sum(prev, next, H, W, C, dx, dy));
      residual_sum += static_cast<double>(best) / scale;
    }
    // m_f = sum_p x_f(p); drift = std_f(m) / mean_f(m), population std.
    double mean = 0;
    for (std::int64_t f = 0; f < F; ++f) {
      const std::uint8_t* p = clip + static_cast<std::size_t>(f) * frame;
      std::int64_t bytes = 0;
      for (std::size_t k = 0; k < frame; ++k) bytes += p[k];
      mass[static_cast<std::size_t>(f)] = static_cast<double>(bytes) / 255.0;
      mean += mass[static_cast<std::size_t>(f)];
    }
    mean /= static_cast<double>(F);
    if (mean > 0) {
      double var = 0;
      for (double m : mass) var += (m - mean) * (m - mean);
      drift_sum += std::sqrt(var / static_cast<double>(F)) / mean;
    }
  }
  VideoMetrics r;
  r.clips = clips.n;
  const double pairs = static_cast<double>(clips.n * (F - 1));
  r.frame_diff = diff_sum / pairs;
  r.motion_residual = residual_sum / pairs;
  r.mass_drift = drift_sum / static_cast<double>(clips.n);
  return r;
}

Dataset shuffled_clips(const Dataset& clips) {
  check_clips(clips, "shuffled clips");
  DDPM_CHECK(clips.n >= 2, "shuffled clips: " << clips.name << " holds 1 clip; the shuffled reference takes "
                                                               "its frames from other clips, so it needs at least 2");
  Dataset out;
  out.name = clips.name + " (frames shuffled across clips)";
  out.n = clips.n;
  out.frames = clips.frames;
  out.height = clips.height;
  out.width = clips.width;
  out.channels = clips.channels;
  out.images.resize(clips.images.size());
  const std::size_t frame = clips.frame_bytes();
  for (std::int64_t i = 0; i < clips.n; ++i)
    for (std::int64_t f = 0; f < clips.frames; ++f) {
      const std::uint8_t* src = clips.image((i + f) % clips.n) + static_cast<std::size_t>(f) * frame;
      std::copy(src, src + frame, out.images.data() + (static_cast<std::size_t>(i * clips.frames + f)) * frame);
    }
  return out;
}

Dataset load_sample_clips(const std::string& path, const std::string& flag) {
  DDPM_CHECK_AS(std::filesystem::is_regular_file(path), IoError,
                flag << " " << path << " is not a file (give the samples.npz ddpm-sample wrote for a video run)");
  const NpzFile npz = load_npz(path);  // IoError when damaged
  const std::string name = npz.contains("images") ? "images" : "arr_0";
  DDPM_CHECK(npz.contains(name), flag << " " << path << " has no array \"arr_0\" (or \"images\"): expected the clips "
                                             "uint8 [N, F, H, W, C] that ddpm-sample writes for a video run");
  const NpyArray& a = npz.get(name);
  DDPM_CHECK(a.dtype == NpyDType::u8 && a.shape.size() == 5,
             flag << " " << path << ": \"" << name << "\" must be clips, uint8 [N, F, H, W, C], got " << a.describe()
                  << (a.shape.size() == 4 ? " (still images: sample a video run)" : ""));
  DDPM_CHECK(a.shape[1] >= 2, flag << " " << path << ": \"" << name << "\" " << a.describe()
                                   << " has F = " << a.shape[1] << " frames; the metrics compare consecutive frames, "
                                                                   "so F must be at least 2");
  DDPM_CHECK(a.shape[0] >= 1, flag << " " << path << ": \"" << name << "\" " << a.describe() << " holds no clip");
  Dataset ds;
  ds.name = path;
  ds.n = a.shape[0];
  ds.frames = a.shape[1];
  ds.height = a.shape[2];
  ds.width = a.shape[3];
  ds.channels = a.shape[4];
  DDPM_CHECK(ds.channels == 1 || ds.channels == 3,
             flag << " " << path << ": \"" << name << "\" " << a.describe() << " has " << ds.channels
                  << " channels; expected grey (1) or RGB (3)");
  ds.images.assign(a.bytes.begin(), a.bytes.end());
  ds.validate();
  return ds;
}

}  // namespace ddpm::eval
