// models/run/edit_inputs.cpp: see edit_inputs.h.
#include "models/run/edit_inputs.h"

#include <algorithm>
#include <filesystem>

#include "engine/error.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

std::string shape_text(std::int64_t h, std::int64_t w, std::int64_t c) {
  return std::to_string(h) + "x" + std::to_string(w) + " with " + std::to_string(c) + " channel(s)";
}

// uint8 [H, W, C] pixels appended as v / 127.5 - 1.
void append_pixels(const std::uint8_t* px, std::size_t count, std::vector<double>& out) {
  for (std::size_t k = 0; k < count; ++k) out.push_back(px[k] / 127.5 - 1.0);
}

}  // namespace

EditImages load_edit_images(const std::string& path, int H, int W, int C, const std::string& flag) {
  DDPM_CHECK(!path.empty(), flag << " is required: a PNG, a folder of PNGs or a samples.npz");
  const std::string model_shape = "the model's images are " + shape_text(H, W, C);
  const std::size_t image_size = static_cast<std::size_t>(H) * W * C;
  EditImages in;
  std::vector<double> values;
  std::error_code ec;
  if (fs::path(path).extension() == ".npz") {
    const NpzFile npz = load_npz(path);  // IoError when missing or damaged
    const NpyArray& a = npz.get("arr_0");
    DDPM_CHECK(a.dtype == NpyDType::u8 && a.shape.size() == 4 && a.shape[0] > 0,
               flag << " " << path << ": arr_0 must be uint8 [N, H, W, C] images (as ddpm-sample writes them), got "
                    << a.describe());
    DDPM_CHECK(a.shape[1] == H && a.shape[2] == W && a.shape[3] == C,
               flag << " " << path << " holds " << shape_text(a.shape[1], a.shape[2], a.shape[3]) << " images; "
                    << model_shape);
    append_pixels(a.bytes.data(), a.bytes.size(), values);
    for (std::int64_t i = 0; i < a.shape[0]; ++i) in.names.push_back(path + "[" + std::to_string(i) + "]");
  } else {
    std::vector<std::string> files;
    if (fs::is_directory(path, ec)) {
      for (const auto& e : fs::directory_iterator(path))
        if (e.is_regular_file() && e.path().extension() == ".png") files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
      DDPM_CHECK(!files.empty(), flag << " " << path << " is a folder without .png files");
    } else {
      files.push_back(path);
    }
    for (const std::string& f : files) {
      const Image img = read_png(f);  // IoError when missing or damaged
      DDPM_CHECK(img.height == H && img.width == W && img.channels == C,
                 flag << " " << f << " is " << shape_text(img.height, img.width, img.channels) << "; "
                      << model_shape);
      append_pixels(img.pixels.data(), image_size, values);
      in.names.push_back(f);
    }
  }
  const std::int64_t N = static_cast<std::int64_t>(in.names.size());
  in.images = Tensor::from_vector(values, {N, H, W, C});
  return in;
}

}  // namespace ddpm::run
