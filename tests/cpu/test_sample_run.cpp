// Tests for models/run/sample_run (ddpm-sample): the output folder (grid, individual PNGs,
// npz, steps strip, info), determinism for a seed, labels of class-conditional models,
// the flag parser, and the usage errors.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "engine/io/safetensors.h"
#include "engine/rng.h"
#include "models/run/sample_run.h"
#include "models/unet/model_io.h"
#include "support/tiny_model.h"
#include "support/temp_dir.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

ModelSource tiny_model(int num_classes = 0) { return testing::tiny_model_source(num_classes); }

std::string out_dir(const std::string& name) { return testing::temp_path("sample_run_" + name); }

SampleOptions options(const std::string& out) {
  SampleOptions o;
  o.checkpoint = "tiny";
  o.num_samples = 5;
  o.batch_size = 3;
  o.sampling_steps = 4;
  o.out = out;
  o.seed = 42;
  return o;
}

// The npz's arr_0 header (shape) and the pixels, found in the stored archive.
std::string npy_header(const std::string& npz, const std::string& member) {
  std::size_t at = npz.find(member + ".npy\x93NUMPY");
  EXPECT_NE(at, std::string::npos) << member;
  return npz.substr(at + member.size() + 4 + 10, 118);
}

TEST(SampleRun, WritesGridImagesNpzStepsAndInfo) {
  ModelSource m = tiny_model();
  SampleOptions o = options(out_dir("outputs"));
  o.show_steps = true;
  std::ostringstream log;
  SampleResult r = run_sample(o, m, &log);
  EXPECT_EQ(r.shape, (Shape{5, 8, 8, 3}));
  EXPECT_EQ(r.pixels.size(), 5u * 8 * 8 * 3);
  EXPECT_TRUE(r.labels.empty());

  // grid: 3 per row (ceil(sqrt(5))), 2 rows, 2 pixels of padding.
  Image grid = read_png(o.out + "/grid.png");
  EXPECT_EQ(grid.width, 3 * 10 + 2);
  EXPECT_EQ(grid.height, 2 * 10 + 2);
  int pngs = 0;
  for (const auto& e : fs::directory_iterator(o.out + "/images")) pngs += e.path().extension() == ".png";
  EXPECT_EQ(pngs, 5);
  Image third = read_png(o.out + "/images/000002.png");
  ASSERT_EQ(third.pixels.size(), 8u * 8 * 3);
  EXPECT_EQ(std::memcmp(third.pixels.data(), r.pixels.data() + 2 * 192, 192), 0);

  const std::string npz = read_file(o.out + "/samples.npz");
  const std::string header = npy_header(npz, "arr_0");
  EXPECT_NE(header.find("'descr': '|u1'"), std::string::npos) << header;
  EXPECT_NE(header.find("'shape': (5, 8, 8, 3)"), std::string::npos) << header;
  EXPECT_EQ(npz.find("arr_1.npy"), std::string::npos);  // no labels for an unconditional model
  EXPECT_NE(npz.find(std::string(reinterpret_cast<const char*>(r.pixels.data()), r.pixels.size())), std::string::npos);

  // steps.png: 4 steps (all of them), 3 samples shown (the first batch), 2 rows each.
  Image steps = read_png(o.out + "/steps.png");
  EXPECT_EQ(steps.width, 4 * 10 + 2);
  EXPECT_EQ(steps.height, 6 * 10 + 2);

  nlohmann::json info = nlohmann::json::parse(read_file(o.out + "/sample_info.json"));
  EXPECT_EQ(info["respacing"], "4");
  EXPECT_EQ(info["variance"], "fixed_small");  // respaced DDPM without learned sigma
  EXPECT_EQ(info["seed"], 42);
  EXPECT_NE(log.str().find("sampled 5 / 5"), std::string::npos);
}

TEST(SampleRun, DeterministicForASeed) {
  ModelSource m = tiny_model();
  SampleOptions o = options(out_dir("seed_a"));
  o.sampler = "ddim";
  o.sampling_steps = 5;  // ddim5: 40 / 5 = 8
  o.eta = 0.5;
  SampleResult a = run_sample(o, m);
  o.out = out_dir("seed_b");
  SampleResult b = run_sample(o, m);
  EXPECT_EQ(a.pixels, b.pixels);
  o.out = out_dir("seed_c");
  o.seed = 43;
  SampleResult c = run_sample(o, m);
  EXPECT_NE(a.pixels, c.pixels);
  // Pixels span more than one value (the images are not a constant).
  EXPECT_NE(*std::min_element(a.pixels.begin(), a.pixels.end()), *std::max_element(a.pixels.begin(), a.pixels.end()));
}

TEST(SampleRun, ClassConditionalLabelsAndGuidance) {
  ModelSource m = tiny_model(/*num_classes=*/3);
  SampleOptions o = options(out_dir("classes"));
  SampleResult r = run_sample(o, m);
  EXPECT_EQ(r.labels, (std::vector<std::int64_t>{0, 1, 2, 0, 1}));
  const std::string npz = read_file(o.out + "/samples.npz");
  EXPECT_NE(npy_header(npz, "arr_1").find("'shape': (5,)"), std::string::npos);
  EXPECT_NE(npy_header(npz, "arr_1").find("'descr': '<i8'"), std::string::npos);

  o.out = out_dir("guided");
  o.class_label = 2;
  o.guidance_scale = 3.0;
  SampleResult g = run_sample(o, m);
  EXPECT_EQ(g.labels, (std::vector<std::int64_t>(5, 2)));
  o.class_label = 3;  // out of range
  o.out = out_dir("guided_bad");
  EXPECT_THROW(run_sample(o, m), ValueError);
}

TEST(SampleRun, UsageErrors) {
  ModelSource m = tiny_model();
  auto message = [&](const SampleOptions& o) { return testing::value_error_message([&] { run_sample(o, m); }); };
  SampleOptions o = options(out_dir("errors"));
  SampleOptions bad = o;
  bad.class_label = 1;
  EXPECT_NE(message(bad).find("guidance without class conditioning"), std::string::npos) << message(bad);
  bad = o;
  bad.guidance_scale = 2;
  EXPECT_NE(message(bad).find("guidance without class conditioning"), std::string::npos);
  bad = o;
  bad.sampler = "ddim";
  bad.sampling_steps = 7;  // does not divide 40
  EXPECT_NE(message(bad).find("--sampling-steps 7"), std::string::npos) << message(bad);
  bad = o;
  bad.sampling_steps = 41;
  EXPECT_NE(message(bad).find("--sampling-steps 41"), std::string::npos) << message(bad);
  bad = o;
  bad.eta = 0.5;  // DDPM
  EXPECT_NE(message(bad).find("--eta"), std::string::npos);
  bad = o;
  bad.num_samples = 0;
  EXPECT_NE(message(bad).find("--num-samples"), std::string::npos);
  bad = o;
  bad.variance = "fixed_large";  // with respacing
  EXPECT_NE(message(bad).find("fixed_large"), std::string::npos);
  bad = o;
  bad.checkpoint = "";
  EXPECT_NE(message(bad).find("--checkpoint"), std::string::npos);

  // An existing non-empty --out is kept unless --overwrite.
  fs::create_directories(o.out);
  write_file_atomic(o.out + "/keep.txt", "precious");
  EXPECT_NE(message(o).find("--overwrite"), std::string::npos);
  EXPECT_EQ(read_file(o.out + "/keep.txt"), "precious");
  o.overwrite = true;
  run_sample(o, m);
  EXPECT_FALSE(fs::exists(o.out + "/keep.txt"));
  EXPECT_TRUE(fs::exists(o.out + "/grid.png"));
}

TEST(SampleRun, FromARunFolderAndMissingCheckpoint) {
  ModelSource m = tiny_model();
  const std::string run = out_dir("run");
  fs::create_directories(run + "/checkpoints/step_5");
  nlohmann::json config = {{"model", unet::config_to_json(m.net->config())}, {"diffusion", diffusion_to_json(m.diffusion)}};
  write_file_atomic(run + "/config.json", config.dump());
  save_safetensors(run + "/checkpoints/step_5/model.safetensors", unet::export_state_dict(*m.net));
  save_safetensors(run + "/checkpoints/step_5/ema.safetensors", unet::export_state_dict(*m.net));
  write_file_atomic(run + "/checkpoints/latest", "step_5");
  SampleOptions o = options(out_dir("from_run"));
  o.checkpoint = run;
  SampleResult a = run_sample(o);
  o.out = out_dir("from_model");
  SampleResult b = run_sample(o, m);
  EXPECT_EQ(a.pixels, b.pixels);
  o.checkpoint = run + "/nothing";
  o.out = out_dir("from_nothing");
  EXPECT_THROW(run_sample(o), IoError);
  EXPECT_FALSE(fs::exists(o.out));  // nothing written on failure
}

TEST(SampleRun, PixelMapping) {
  Tensor x = Tensor::from_vector(std::vector<float>{-2.f, -1.f, 0.f, 0.5f, 1.f, 3.f}, {6});
  EXPECT_EQ(to_uint8_pixels(x), (std::vector<std::uint8_t>{0, 0, 128, 191, 255, 255}));
}

TEST(SampleRun, FlagParsing) {
  SampleOptions o;
  CLI::App app("ddpm-sample");
  add_sample_flags(app, o);
  std::vector<std::string> args{"ddpm-sample", "--checkpoint", "run", "--out", "dir", "--num-samples", "64",
                                "--sampler",   "ddim",         "--sampling-steps", "50", "--eta", "0.3",
                                "--class",     "4",            "--guidance-scale", "2.5", "--no-ema", "--show-steps",
                                "--clip-x0",   "false"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(o.checkpoint, "run");
  EXPECT_EQ(o.num_samples, 64);
  EXPECT_EQ(o.sampler, "ddim");
  EXPECT_EQ(o.sampling_steps, 50);
  EXPECT_DOUBLE_EQ(o.eta, 0.3);
  EXPECT_EQ(o.class_label, 4);
  EXPECT_DOUBLE_EQ(o.guidance_scale, 2.5);
  EXPECT_FALSE(o.use_ema);
  EXPECT_TRUE(o.show_steps);
  EXPECT_FALSE(o.overwrite);
  EXPECT_EQ(o.clip_x0, "false");

  auto fails = [](std::vector<std::string> a) {
    SampleOptions oo;
    CLI::App app2("ddpm-sample");
    add_sample_flags(app2, oo);
    std::vector<char*> v;
    for (auto& s : a) v.push_back(s.data());
    try {
      app2.parse(static_cast<int>(v.size()), v.data());
    } catch (const CLI::ParseError&) {
      return true;
    }
    return false;
  };
  EXPECT_TRUE(fails({"x", "--out", "d"}));  // --checkpoint is required
  EXPECT_TRUE(fails({"x", "--checkpoint", "c", "--out", "d", "--sampler", "dpm-solver"}));  // euler is a sampler since EDM training
  EXPECT_FALSE(fails({"x", "--checkpoint", "c", "--out", "d", "--sampler", "euler"}));
  EXPECT_TRUE(fails({"x", "--checkpoint", "c", "--out", "d", "--num-samples", "ten"}));
  EXPECT_TRUE(fails({"x", "--checkpoint", "c", "--out", "d", "--bogus"}));
  EXPECT_TRUE(fails({"x", "--checkpoint", "c", "--out", "d", "--clip-x0", "maybe"}));
}

}  // namespace
}  // namespace ddpm::run
