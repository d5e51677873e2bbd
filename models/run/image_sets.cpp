// models/run/image_sets.cpp: see image_sets.h.
#include "models/run/image_sets.h"

#include <algorithm>
#include <cmath>
#include <cctype>
#include <cstdio>
#include <filesystem>

#include "engine/error.h"
#include "engine/io/gif.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

// samples.npz: "arr_0" uint8 of `shape` (images or clips) and, with labels, "arr_1" int64 [N].
void write_samples_npz(const fs::path& d, const Shape& shape, const std::vector<std::uint8_t>& pixels,
                       const std::vector<std::int64_t>& labels, std::vector<std::string>& files) {
  std::vector<NpyView> arrays{npy_view("arr_0", shape, pixels)};
  if (!labels.empty()) arrays.push_back(npy_view("arr_1", {shape[0]}, labels));
  write_npz((d / "samples.npz").string(), arrays);
  files.push_back("samples.npz");
}

}  // namespace

std::vector<std::uint8_t> to_uint8_pixels(const Tensor& x) {
  const std::vector<double> v = x.to_double_vector();
  std::vector<std::uint8_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double c = std::min(1.0, std::max(-1.0, v[i]));
    out[i] = static_cast<std::uint8_t>(std::lround((c + 1.0) * 127.5));
  }
  return out;
}

Tensor pixels_to_unit(const std::vector<std::uint8_t>& px, std::int64_t m, std::int64_t s, std::int64_t c) {
  DDPM_CHECK(px.size() == static_cast<std::size_t>(m * s * s * c),
             "pixels_to_unit: " << px.size() << " bytes for " << m << " images of " << s << "x" << s << "x" << c);
  std::vector<float> v(px.size());
  for (std::size_t i = 0; i < px.size(); ++i) v[i] = static_cast<float>(px[i] / 127.5 - 1.0);
  return Tensor::from_vector(v, {m, s, s, c});
}

void write_image_set(const std::string& dir, const std::vector<std::uint8_t>& pixels, std::int64_t N, int H, int W,
                     int C, int nrow, const std::vector<std::int64_t>& labels, std::vector<std::string>& files,
                     const std::string& grid_name) {
  const fs::path d(dir);
  const std::size_t image_bytes = static_cast<std::size_t>(H) * W * C;
  DDPM_CHECK(pixels.size() == static_cast<std::size_t>(N) * image_bytes,
             "write_image_set: " << pixels.size() << " bytes for " << N << " images of " << H << "x" << W << " with "
                                 << C << " channel(s)");
  write_png((d / grid_name).string(), make_grid(pixels.data(), static_cast<int>(N), H, W, C, nrow));
  files.push_back(grid_name);
  fs::create_directories(d / "images");
  for (std::int64_t i = 0; i < N; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "images/%06lld.png", static_cast<long long>(i));
    write_png((d / name).string(), pixels.data() + static_cast<std::size_t>(i) * image_bytes, H, W, C);
    files.push_back(name);
  }
  write_samples_npz(d, {N, H, W, C}, pixels, labels, files);
}

ImageStack read_image_stack(const std::string& path, const std::string& flag, int size, int channels,
                            const std::string& use) {
  ImageStack st;
  st.path = path;
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (ext == ".png") {
    const Image img = read_png(path);  // IoError when missing or damaged
    DDPM_CHECK(img.height == size && img.width == size && img.channels == channels,
               flag << " " << path << " is " << img.height << "x" << img.width << " with " << img.channels
                    << " channel(s); the model " << use << " " << size << "x" << size << " images with " << channels
                    << " channel(s)");
    st.count = 1;
    st.pixels = img.pixels;
    return st;
  }
  const NpzFile npz = load_npz(path);  // IoError when missing or damaged
  const NpyArray& a = npz.get("arr_0");
  DDPM_CHECK(a.dtype == NpyDType::u8 && a.shape.size() == 4 && a.shape[1] == size && a.shape[2] == size &&
                 a.shape[3] == channels && a.shape[0] >= 1,
             flag << " " << path << ": arr_0 is " << a.describe() << "; the model " << use << " uint8 [N, " << size
                  << ", " << size << ", " << channels << "] images (what ddpm-sample writes for an image model)");
  st.count = a.shape[0];
  st.pixels = a.bytes;
  if (npz.contains("arr_1")) {
    st.labels = npz.get("arr_1").as_int64();
    DDPM_CHECK(static_cast<std::int64_t>(st.labels.size()) == st.count,
               flag << " " << path << ": arr_1 holds " << st.labels.size() << " labels for " << st.count << " images");
  }
  return st;
}

void write_video_grid(const std::string& path, const std::vector<std::uint8_t>& pixels, std::int64_t N, int F, int H,
                      int W, int C, int nrow, int delay_cs) {
  const std::size_t frame_bytes = static_cast<std::size_t>(H) * W * C, clip_bytes = frame_bytes * F;
  DDPM_CHECK(N >= 1 && F >= 1 && pixels.size() == static_cast<std::size_t>(N) * clip_bytes,
             "write_video_grid: " << pixels.size() << " bytes for " << N << " clips of " << F << " frames of " << H
                                  << "x" << W << " with " << C << " channel(s)");
  std::vector<std::uint8_t> frames, frame_f(static_cast<std::size_t>(N) * frame_bytes);
  Image tile;
  for (int f = 0; f < F; ++f) {
    for (std::int64_t i = 0; i < N; ++i)
      std::copy_n(pixels.data() + static_cast<std::size_t>(i) * clip_bytes + static_cast<std::size_t>(f) * frame_bytes,
                  frame_bytes, frame_f.data() + static_cast<std::size_t>(i) * frame_bytes);
    tile = make_grid(frame_f.data(), static_cast<int>(N), H, W, C, nrow);
    frames.insert(frames.end(), tile.pixels.begin(), tile.pixels.end());
  }
  write_gif(path, frames.data(), F, tile.height, tile.width, C, delay_cs);
}

void write_video_set(const std::string& dir, const std::vector<std::uint8_t>& pixels, std::int64_t N, int F, int H,
                     int W, int C, int nrow, const std::vector<std::int64_t>& labels, std::vector<std::string>& files,
                     int delay_cs) {
  const fs::path d(dir);
  const std::size_t frame_bytes = static_cast<std::size_t>(H) * W * C, clip_bytes = frame_bytes * F;
  DDPM_CHECK(N >= 1 && F >= 1 && pixels.size() == static_cast<std::size_t>(N) * clip_bytes,
             "write_video_set: " << pixels.size() << " bytes for " << N << " clips of " << F << " frames of " << H
                                 << "x" << W << " with " << C << " channel(s)");
  write_video_grid((d / "grid.gif").string(), pixels, N, F, H, W, C, nrow, delay_cs);
  files.push_back("grid.gif");
  // filmstrip.png: the frames in order, F per row, so row i is clip i.
  write_png((d / "filmstrip.png").string(), make_grid(pixels.data(), static_cast<int>(N * F), H, W, C, F));
  files.push_back("filmstrip.png");
  fs::create_directories(d / "videos");
  for (std::int64_t i = 0; i < N; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "videos/%06lld.gif", static_cast<long long>(i));
    write_gif((d / name).string(), pixels.data() + static_cast<std::size_t>(i) * clip_bytes, F, H, W, C, delay_cs);
    files.push_back(name);
  }
  write_samples_npz(d, {N, F, H, W, C}, pixels, labels, files);
}

}  // namespace ddpm::run
