// models/run/image_sets.cpp: see image_sets.h.
#include "models/run/image_sets.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "engine/error.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"

namespace ddpm::run {

namespace fs = std::filesystem;

std::vector<std::uint8_t> to_uint8_pixels(const Tensor& x) {
  const std::vector<double> v = x.to_double_vector();
  std::vector<std::uint8_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double c = std::min(1.0, std::max(-1.0, v[i]));
    out[i] = static_cast<std::uint8_t>(std::lround((c + 1.0) * 127.5));
  }
  return out;
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
  std::vector<NpyView> arrays{npy_view("arr_0", {N, H, W, C}, pixels)};  // uint8 [N, H, W, C]
  if (!labels.empty()) arrays.push_back(npy_view("arr_1", {N}, labels));  // int64 [N]
  write_npz((d / "samples.npz").string(), arrays);
  files.push_back("samples.npz");
}

}  // namespace ddpm::run
