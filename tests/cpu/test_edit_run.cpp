// Tests for models/run/edit_run (ddpm-edit) on the tiny test model (8x8x3, T = 40): the output
// folders of the three commands, checked against second computations (the latents and frames
// decoded directly, the recorded error against the written pixels), the image-major layout
// of img2img, the input forms of --images, and the refusals.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/rng.h"
#include "models/diffusion/ddim_inversion.h"
#include "models/diffusion/respace.h"
#include "models/nn/module.h"
#include "models/run/edit_inputs.h"
#include "models/run/edit_run.h"
#include "models/run/sample_run.h"
#include "support/temp_dir.h"
#include "support/tiny_model.h"
#include "support/value_error.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

// A PNG of one grey level v (8x8x3 unless told).
std::string flat_png(const std::string& dir, const std::string& name, std::uint8_t v, int size = 8) {
  const std::string path = dir + "/" + name;
  write_png(path, std::vector<std::uint8_t>(static_cast<std::size_t>(size) * size * 3, v).data(), size, size, 3);
  return path;
}

// A PNG of a fixed pseudo-random pattern.
std::string pattern_png(const std::string& dir, const std::string& name, std::uint64_t seed) {
  Generator g(seed);
  const std::vector<float> z = randn({8, 8, 3}, g).to_vector();
  std::vector<std::uint8_t> px(z.size());
  for (std::size_t k = 0; k < z.size(); ++k) px[k] = static_cast<std::uint8_t>(std::clamp(128.0 + 60.0 * z[k], 0.0, 255.0));
  const std::string path = dir + "/" + name;
  write_png(path, px.data(), 8, 8, 3);
  return path;
}

EditOptions options(const std::string& command, const std::string& out) {
  EditOptions o;
  o.command = command;
  o.checkpoint = "tiny";
  o.sampling_steps = 10;
  o.out = out;
  o.seed = 7;
  return o;
}

diffusion::DenoiseFn fn_of(const ModelSource& m) {
  return [&m](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return m.net->forward(x, t, y, nn::Context{});
  };
}

TEST(EditRun, InvertWritesLatentsThatDecodeToTheReconstructions) {
  testing::TempDir tmp("edit-invert");
  fs::create_directory(tmp.path + "/in");
  pattern_png(tmp.path + "/in", "b.png", 2);
  pattern_png(tmp.path + "/in", "a.png", 1);
  const ModelSource m = testing::tiny_model_source();
  EditOptions o = options("invert", tmp.path + "/out");
  o.images = tmp.path + "/in";
  std::ostringstream log;
  const EditResult r = run_edit(o, m, &log);
  for (const char* f : {"latents.npz", "grid.png", "comparison.png", "samples.npz", "images/000001.png", "edit_info.json"})
    EXPECT_TRUE(fs::exists(o.out + "/" + f)) << f;
  EXPECT_NE(log.str().find("PSNR"), std::string::npos);
  EXPECT_EQ(r.info["images"][0], tmp.path + "/in/a.png");  // sorted by name

  const NpzFile npz = load_npz(o.out + "/latents.npz");
  const NpyArray& lat = npz.get("latents");
  ASSERT_EQ(lat.dtype, NpyDType::f32);
  ASSERT_EQ(lat.shape, (std::vector<std::int64_t>{2, 8, 8, 3}));
  EXPECT_EQ(npz.get("timesteps").as_int64(), diffusion::space_timesteps(40, "ddim10"));

  // Second path: decode the saved latents directly; they must give the written pixels.
  std::vector<float> lv(static_cast<std::size_t>(lat.numel()));
  std::memcpy(lv.data(), lat.bytes.data(), lat.bytes.size());
  const diffusion::DiffusionSchedule base(diffusion::linear_betas(40));
  diffusion::SamplerConfig sc;
  sc.kind = diffusion::SamplerConfig::Kind::ddim;
  sc.respacing = "ddim10";
  const Tensor rec = diffusion::ddim_decode(base, fn_of(m), Tensor::from_vector(lv, {2, 8, 8, 3}), {}, sc);
  const std::vector<std::uint8_t> px = to_uint8_pixels(rec);
  const NpzFile recs = load_npz(o.out + "/samples.npz");
  EXPECT_EQ(recs.get("arr_0").bytes, px);

  // The recorded error is that of these reconstructions against the inputs as read. (The
  // tiny model is untrained, so its ODE is far from invertible: the error is large, and it
  // is the float error before clipping, not the written pixels'.)
  const EditImages in = load_edit_images(o.images, 8, 8, 3);
  const double mse = diffusion::reconstruction_error(in.images, rec).mse;
  EXPECT_NEAR(r.info["reconstruction"]["mse"].get<double>(), mse, 1e-9 * mse);
}

TEST(EditRun, Img2imgIsImageMajorAndReproducible) {
  testing::TempDir tmp("edit-img2img");
  // Two guides in one npz: black, then white.
  std::vector<std::uint8_t> both(2 * 8 * 8 * 3, 0);
  std::fill(both.begin() + 192, both.end(), 255);
  write_npz(tmp.path + "/guides.npz", {npy_view("arr_0", {2, 8, 8, 3}, both)});
  const ModelSource m = testing::tiny_model_source();
  EditOptions o = options("img2img", tmp.path + "/a");
  o.images = tmp.path + "/guides.npz";
  o.strength = 0.1;  // ddim10 of T = 40 keeps 3, 7, ...: t0 = 4 starts at t = 3, one step
  o.num_samples = 2;
  o.batch_size = 3;  // batches cut across images
  const EditResult r = run_edit(o, m);
  EXPECT_EQ(r.info["start_timestep"], 3);
  EXPECT_EQ(r.info["network_calls_per_result"], 1);
  const NpyArray a = load_npz(o.out + "/samples.npz").get("arr_0");
  ASSERT_EQ(a.shape, (std::vector<std::int64_t>{4, 8, 8, 3}));
  // One barely noised step keeps each guide's level: rows 0, 1 dark (black), rows 2, 3 light.
  for (int row = 0; row < 4; ++row) {
    double mean = 0;
    for (int k = 0; k < 192; ++k) mean += a.bytes[row * 192 + k] / 192.0;
    EXPECT_EQ(mean > 127.5, row >= 2) << "row " << row << " mean " << mean;
  }
  EditOptions o2 = o;
  o2.out = tmp.path + "/b";
  run_edit(o2, m);
  EXPECT_EQ(load_npz(o2.out + "/samples.npz").get("arr_0").bytes, a.bytes);  // same seed, same results
}

TEST(EditRun, InterpolateFromSeedsEndsAtTheSeedsDecodings) {
  testing::TempDir tmp("edit-interp");
  const ModelSource m = testing::tiny_model_source();
  EditOptions o = options("interpolate", tmp.path + "/out");
  o.seeds = "3,4";
  o.frames = 5;
  const EditResult r = run_edit(o, m);
  const Image strip = read_png(o.out + "/strip.png");
  EXPECT_EQ(strip.width, 5 * 10 + 2);
  EXPECT_EQ(strip.height, 12);
  const NpyArray f = load_npz(o.out + "/samples.npz").get("arr_0");
  ASSERT_EQ(f.shape[0], 5);
  const diffusion::DiffusionSchedule base(diffusion::linear_betas(40));
  diffusion::SamplerConfig sc;
  sc.kind = diffusion::SamplerConfig::Kind::ddim;
  sc.respacing = "ddim10";
  for (const auto& [seed, frame] : {std::pair<std::uint64_t, int>{3, 0}, {4, 4}}) {
    Generator g(seed);
    const std::vector<std::uint8_t> px =
        to_uint8_pixels(diffusion::ddim_decode(base, fn_of(m), randn({1, 8, 8, 3}, g), {}, sc));
    EXPECT_TRUE(std::equal(px.begin(), px.end(), f.bytes.begin() + frame * 192)) << "frame " << frame;
  }
  EXPECT_NEAR(r.info["fractions"][2].get<double>(), 0.5, 1e-15);
}

TEST(EditRun, Refusals) {
  testing::TempDir tmp("edit-refuse");
  const std::string img = flat_png(tmp.path, "img.png", 100), small = flat_png(tmp.path, "small.png", 100, 4);
  const ModelSource m = testing::tiny_model_source();
  EditOptions o = options("img2img", tmp.path + "/x");
  o.images = img;
  for (double s : {0.0, -0.5, 1.01}) {
    o.strength = s;
    testing::expect_value_error([&] { check_edit_options(o); }, "--strength must lie in (0, 1]");
  }
  o.strength = 0.05;  // t0 = 2 lies below the first ddim10 step (t = 3)
  testing::expect_value_error([&] { run_edit(o, m); }, "smallest usable strength is 0.1");
  o.strength = 0.5;
  o.images = small;
  testing::expect_value_error([&] { run_edit(o, m); }, "is 4x4 with 3 channel(s); the model's images are 8x8 with 3");
  o.images = img;
  o.class_label = 2;
  testing::expect_value_error([&] { run_edit(o, m); }, "guidance without class conditioning");
  const ModelSource cond = testing::tiny_model_source(3);
  o.class_label = -1;
  testing::expect_value_error([&] { run_edit(o, cond); }, "pass --class C");
  o.sampler = "heun";  // EDM runs only (test_edit_latent_edm.cpp)
  testing::expect_value_error([&] { run_edit(o, m); }, "heun and euler are for EDM runs");
  o.sampler = "auto";

  EditOptions i = options("interpolate", tmp.path + "/x");
  i.seeds = "1,2";
  i.frames = 1;
  testing::expect_value_error([&] { check_edit_options(i); }, "--frames must be at least 2");
  i.frames = 3;
  i.images = img + "," + img;
  testing::expect_value_error([&] { check_edit_options(i); }, "exactly one of --images");
  i.images.clear();
  i.seeds = "1";
  testing::expect_value_error([&] { check_edit_options(i); }, "exactly two");
  i.seeds = "1,x";
  testing::expect_value_error([&] { check_edit_options(i); }, "'x' is not a seed");

  EditOptions v = options("invert", tmp.path);  // the temp folder holds files
  v.images = img;
  testing::expect_value_error([&] { check_edit_options(v); }, "pass --overwrite");
  v.out = tmp.path + "/x";
  v.guidance_scale = 2;
  testing::expect_value_error([&] { check_edit_options(v); }, "applies to img2img only");
  EXPECT_FALSE(fs::exists(tmp.path + "/x"));
}

TEST(EditInputs, FormsAndErrors) {
  testing::TempDir tmp("edit-inputs");
  fs::create_directory(tmp.path + "/empty");
  testing::expect_value_error([&] { load_edit_images(tmp.path + "/empty", 8, 8, 3); }, "without .png files");
  const std::vector<std::int64_t> labels{1, 2};
  write_npz(tmp.path + "/bad.npz", {npy_view("arr_0", {2}, labels)});
  testing::expect_value_error([&] { load_edit_images(tmp.path + "/bad.npz", 8, 8, 3); }, "must be uint8 [N, H, W, C]");
  std::vector<std::uint8_t> px(2 * 4 * 4 * 1, 255);
  write_npz(tmp.path + "/grey.npz", {npy_view("arr_0", {2, 4, 4, 1}, px)});
  testing::expect_value_error([&] { load_edit_images(tmp.path + "/grey.npz", 8, 8, 3); },
                              "holds 4x4 with 1 channel(s) images; the model's images are 8x8 with 3");
  const EditImages g = load_edit_images(tmp.path + "/grey.npz", 4, 4, 1);
  EXPECT_EQ(g.images.shape(), (Shape{2, 4, 4, 1}));
  for (double v : g.images.to_double_vector()) EXPECT_EQ(v, 1.0);  // 255 / 127.5 - 1
  EXPECT_THROW(load_edit_images(tmp.path + "/missing.png", 8, 8, 3), IoError);
}

}  // namespace
}  // namespace ddpm::run
