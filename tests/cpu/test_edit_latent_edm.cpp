// Tests for ddpm-edit (models/run/edit_run.h) on the two kinds of run it used to refuse: a
// latent diffusion run (the tiny UNet on 8x8x3 latents of a tiny untrained autoencoder,
// f = 2, so 16x16x3 pixels) and an EDM-trained run (the tiny UNet under EDM
// preconditioning). The nets are untrained, so the tests check shapes, determinism and, by a
// second code path (encode, the same diffusion functions, decode by hand), the bytes written;
// the accuracy of the sigma-space ODE itself is tested on an exact denoiser in
// test_sigma_edit.cpp, and here once more through the autoencoder.
#include <algorithm>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/diffusion/ddim_inversion.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/interpolation.h"
#include "models/diffusion/sdedit.h"
#include "models/diffusion/sigma_edit.h"
#include "models/nn/module.h"
#include "models/run/edit_inputs.h"
#include "models/run/edit_run.h"
#include "models/run/image_sets.h"
#include "models/run/latent_run.h"
#include "support/temp_dir.h"
#include "support/tiny_model.h"
#include "support/value_error.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

// A PNG of a fixed pseudo-random pattern, size x size x 3.
std::string pattern_png(const std::string& dir, const std::string& name, std::uint64_t seed, int size) {
  Generator g(seed);
  const std::vector<float> z = randn({size, size, 3}, g).to_vector();
  std::vector<std::uint8_t> px(z.size());
  for (std::size_t k = 0; k < z.size(); ++k) px[k] = static_cast<std::uint8_t>(std::clamp(128.0 + 60.0 * z[k], 0.0, 255.0));
  const std::string path = dir + "/" + name;
  write_png(path, px.data(), size, size, 3);
  return path;
}

// A latent run folder as find_run_autoencoder sees it: config.json with an "autoencoder"
// section and RUN/autoencoder (3 -> 3 channels, f = 2, every weight perturbed).
std::string latent_run_folder(const std::string& dir) {
  autoencoder::AutoencoderConfig c;
  c.in_channels = 3;
  c.base_channels = 4;
  c.channel_mult = {1, 2};
  c.num_res_blocks = 1;
  c.z_channels = 3;
  c.norm_groups = 2;
  c.scale_factor = 0.7;
  Generator g(3);
  autoencoder::Autoencoder ae(c, g, Device::cpu());
  for (const auto& [name, t] : ae.named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
  fs::create_directories(dir);
  autoencoder::save_autoencoder(ae, {}, dir + "/autoencoder", false);
  write_file_atomic(dir + "/config.json", nlohmann::json({{"model", nlohmann::json::object()},
                                                          {"autoencoder", {{"folder", "autoencoder"}}}})
                                              .dump());
  return dir;
}

diffusion::DenoiseFn fn_of(const ModelSource& m) {
  return [&m](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return m.net->forward(x, t, y, nn::Context{});
  };
}

Tensor latents_of(const std::string& npz) {
  const NpzFile file = load_npz(npz);
  const NpyArray& a = file.get("latents");
  std::vector<float> v(static_cast<std::size_t>(a.numel()));
  std::memcpy(v.data(), a.bytes.data(), a.bytes.size());
  return Tensor::from_vector(v, Shape(a.shape.begin(), a.shape.end()));
}

std::vector<std::uint8_t> written(const std::string& out) { return load_npz(out + "/samples.npz").get("arr_0").bytes; }

EditOptions options(const std::string& command, const std::string& checkpoint, const std::string& out) {
  EditOptions o;
  o.command = command;
  o.checkpoint = checkpoint;
  o.sampling_steps = 5;
  o.out = out;
  o.seed = 7;
  return o;
}

TEST(EditLatent, EveryCommandDecodesToPixelsAndMatchesAHandMadePath) {
  testing::TempDir tmp("edit-latent");
  const std::string run = latent_run_folder(tmp.path + "/run");
  fs::create_directory(tmp.path + "/in");
  const std::string a = pattern_png(tmp.path + "/in", "a.png", 1, 16), b = pattern_png(tmp.path + "/in", "b.png", 2, 16);
  const ModelSource m = testing::tiny_model_source();  // 8x8x3: the latents' shape
  const LatentCodec codec(run + "/autoencoder", Device::cpu());
  const EditImages in = load_edit_images(tmp.path + "/in", 16, 16, 3);
  const Tensor codes = codec.encode_mean(in.images);  // [2, 8, 8, 3]
  ASSERT_EQ(codes.shape(), (Shape{2, 8, 8, 3}));
  const diffusion::DiffusionSchedule base(diffusion::linear_betas(40));
  diffusion::SamplerConfig sc;
  sc.kind = diffusion::SamplerConfig::Kind::ddim;
  sc.respacing = "ddim5";

  // invert: latents [2, 8, 8, 3] of the diffusion, reconstructions in pixels.
  EditOptions inv = options("invert", run, tmp.path + "/inv");
  inv.images = tmp.path + "/in";
  const EditResult r = run_edit(inv, m);
  EXPECT_EQ(r.info["autoencoder"], run + "/autoencoder");
  EXPECT_EQ(r.info["latent_shape"], nlohmann::json({8, 8, 3}));
  EXPECT_EQ(r.info["image_shape"], nlohmann::json({16, 16, 3}));
  const Tensor lat = latents_of(inv.out + "/latents.npz");
  ASSERT_EQ(lat.shape(), (Shape{2, 8, 8, 3}));
  const Tensor lat2 = diffusion::ddim_invert(base, fn_of(m), codes, {}, sc);
  EXPECT_EQ(lat.to_vector(), lat2.to_vector());  // the mean: deterministic, no posterior draw
  const Tensor rec_code = diffusion::ddim_decode(base, fn_of(m), lat2, {}, sc);
  const Tensor rec = codec.decode(rec_code);
  EXPECT_EQ(written(inv.out), to_uint8_pixels(rec));
  const Image shown = read_png(inv.out + "/images/000001.png");
  EXPECT_EQ(shown.width, 16);
  EXPECT_EQ(shown.height, 16);
  const double px_mse = diffusion::reconstruction_error(in.images, rec).mse;
  EXPECT_NEAR(r.info["reconstruction"]["mse"].get<double>(), px_mse, 1e-9 * px_mse);
  const double lat_mse = diffusion::reconstruction_error(codes, rec_code).mse;
  EXPECT_NEAR(r.info["latent_reconstruction"]["mse"].get<double>(), lat_mse, 1e-9 * lat_mse);
  const double ae_mse = diffusion::reconstruction_error(in.images, codec.decode(codes)).mse;
  EXPECT_NEAR(r.info["autoencoder_reconstruction"]["mse"].get<double>(), ae_mse, 1e-9 * ae_mse);
  EXPECT_EQ(r.info["clip_x0"], false);

  // img2img: SDEdit on the latents, decoded; x_0 not clipped (latents leave [-1, 1]).
  EditOptions i2i = options("img2img", run, tmp.path + "/i2i");
  i2i.images = a;
  i2i.strength = 0.6;
  const EditResult ri = run_edit(i2i, m);
  EXPECT_EQ(ri.info["clip_x0"], false);
  EXPECT_EQ(ri.info["sampler"], "ddim");
  Generator gen(7);
  sc.clip_x0 = false;
  const Tensor edited = diffusion::sdedit(base, fn_of(m), diffusion::batch_rows(codes, 0, 1), 0.6, {}, sc, gen);
  EXPECT_EQ(written(i2i.out), to_uint8_pixels(codec.decode(edited)));

  // interpolate from the two images: the end frames decode the two inversions.
  EditOptions itp = options("interpolate", run, tmp.path + "/itp");
  itp.images = a + "," + b;
  itp.frames = 3;
  run_edit(itp, m);
  const std::vector<std::uint8_t> frames = written(itp.out);
  ASSERT_EQ(frames.size(), 3u * 16 * 16 * 3);
  const Tensor ea = diffusion::batch_rows(lat2, 0, 1), eb = diffusion::batch_rows(lat2, 1, 1);
  const Tensor path = diffusion::concat_rows(diffusion::concat_rows(ea, diffusion::slerp(ea, eb, 0.5)), eb);
  EXPECT_EQ(frames, to_uint8_pixels(codec.decode(diffusion::ddim_decode(base, fn_of(m), path, {}, sc))));

  // The images must have the PIXEL size: a 8x8 input names both shapes.
  EditOptions bad = inv;
  bad.out = tmp.path + "/x";
  bad.images = pattern_png(tmp.path, "small.png", 3, 8);
  testing::expect_value_error([&] { run_edit(bad, m); }, "the model's images are 16x16 with 3");
  EXPECT_FALSE(fs::exists(bad.out));
}

// With the exact denoiser of Gaussian latents, inversion and decoding in latent space give back
// the codes, so the pixel round trip is the autoencoder's own reconstruction D(E(x)).
TEST(EditLatent, ExactDenoiserRoundTripIsTheAutoencodersReconstruction) {
  testing::TempDir tmp("edit-latent-exact");
  const std::string run = latent_run_folder(tmp.path + "/run");
  const LatentCodec codec(run + "/autoencoder", Device::cpu());
  pattern_png(tmp.path, "a.png", 4, 16);
  const EditImages in = load_edit_images(tmp.path + "/a.png", 16, 16, 3);
  const Tensor codes = codec.encode_mean(in.images);
  const diffusion::SigmaDenoiser exact = [](const Tensor& x, double sigma) {  // N(0, 1) latents
    return diffusion::SigmaDenoised{scale(x, 1.0 / (1.0 + sigma * sigma)), -1.0};
  };
  diffusion::SamplerConfig sc;
  sc.dtype = DType::f64;
  const std::vector<double> levels = diffusion::karras_sigmas(32, 0.002, 80.0);
  const Tensor back =
      diffusion::sigma_ode_decode(exact, diffusion::sigma_ode_invert(exact, codes, levels, sc), levels, sc);
  const double via_diffusion = diffusion::reconstruction_error(in.images, codec.decode(back)).mse;
  const double autoencoder_alone = diffusion::reconstruction_error(in.images, codec.decode(codes)).mse;
  EXPECT_NEAR(via_diffusion, autoencoder_alone, 1e-3 * autoencoder_alone);
}

ModelSource tiny_edm_source() {
  ModelSource m = testing::tiny_model_source();
  m.diffusion.edm = diffusion::EdmConfig{};
  return m;
}

// D(x; sigma) of the tiny EDM network; clamped when clip (img2img on a pixel run follows
// ddpm-sample's default --clip-x0 true; inversion and decoding never clip).
diffusion::SigmaDenoiser edm_denoiser(const ModelSource& m, const diffusion::DenoiseFn& fn, bool clip = false) {
  return [&m, &fn, clip](const Tensor& x, double sigma) {
    diffusion::SamplerConfig sc;
    sc.clip_x0 = clip;
    return diffusion::SigmaDenoised{diffusion::edm_denoise(fn, *m.diffusion.edm, sc, x, sigma, {}), -1.0};
  };
}

TEST(EditEdm, EveryCommandRunsInSigmaAndMatchesAHandMadePath) {
  testing::TempDir tmp("edit-edm");
  const ModelSource m = tiny_edm_source();
  const diffusion::DenoiseFn fn = fn_of(m);
  const std::string a = pattern_png(tmp.path, "a.png", 1, 8), b = pattern_png(tmp.path, "b.png", 2, 8);
  const std::vector<double> levels = diffusion::karras_sigmas(5, diffusion::kEdmSigmaMin, diffusion::kEdmSigmaMax);
  diffusion::SamplerConfig sc;

  EditOptions inv = options("invert", "tiny-edm", tmp.path + "/inv");
  inv.images = a;
  const EditResult r = run_edit(inv, m);
  EXPECT_EQ(r.info["sampler"], "heun");
  EXPECT_EQ(r.info["sigmas"].size(), 6u);
  EXPECT_EQ(r.info["network_calls_per_image"], 2 * 9);
  const NpzFile npz = load_npz(inv.out + "/latents.npz");
  EXPECT_EQ(npz.get("sigmas").shape, (std::vector<std::int64_t>{6}));
  const Tensor lat = latents_of(inv.out + "/latents.npz");
  const Tensor x = load_edit_images(a, 8, 8, 3).images;
  const Tensor lat2 = diffusion::sigma_ode_invert(edm_denoiser(m, fn), x, levels, sc);
  EXPECT_EQ(lat.to_vector(), lat2.to_vector());
  const Tensor rec = diffusion::sigma_ode_decode(edm_denoiser(m, fn), lat2, levels, sc);
  EXPECT_EQ(written(inv.out), to_uint8_pixels(rec));

  EditOptions i2i = options("img2img", "tiny-edm", tmp.path + "/i2i");
  i2i.images = a;
  i2i.strength = 0.5;  // ceil(2.5) = 3 of the 5 levels
  i2i.sampler = "euler";
  const EditResult ri = run_edit(i2i, m);
  EXPECT_EQ(ri.info["start_index"], 2);
  EXPECT_EQ(ri.info["start_sigma"].get<double>(), levels[2]);
  EXPECT_EQ(ri.info["network_calls_per_result"], 3);
  EXPECT_EQ(ri.info["clip_x0"], true);
  Generator gen(7);
  const Tensor edited =
      diffusion::sigma_sdedit(edm_denoiser(m, fn, true), x, 0.5, levels, sc, gen, Device::cpu(), diffusion::KarrasSolver::euler);
  EXPECT_EQ(written(i2i.out), to_uint8_pixels(edited));

  // interpolate from seeds: the ends are sigma_max z, decoded by Heun.
  EditOptions itp = options("interpolate", "tiny-edm", tmp.path + "/itp");
  itp.seeds = "3,4";
  itp.frames = 3;
  run_edit(itp, m);
  const std::vector<std::uint8_t> frames = written(itp.out);
  Generator g3(3);
  const Tensor end = diffusion::sigma_ode_decode(edm_denoiser(m, fn), scale(randn({1, 8, 8, 3}, g3), 80.0), levels, sc);
  const std::vector<std::uint8_t> px = to_uint8_pixels(end);
  EXPECT_TRUE(std::equal(px.begin(), px.end(), frames.begin())) << "frame 0 decodes seed 3's sigma_max z";
  EditOptions itp2 = itp;
  itp2.seeds.clear();
  itp2.images = a + "," + b;
  itp2.out = tmp.path + "/itp2";
  run_edit(itp2, m);
  const std::vector<std::uint8_t> f2 = written(itp2.out), r0 = to_uint8_pixels(rec);
  EXPECT_TRUE(std::equal(r0.begin(), r0.end(), f2.begin())) << "frame 0 is image a's reconstruction";

  // A DDPM sampler does not apply; nothing is written.
  i2i.sampler = "ddim";
  i2i.out = tmp.path + "/x";
  testing::expect_value_error([&] { run_edit(i2i, m); }, "trained with the EDM objective");
  EXPECT_FALSE(fs::exists(i2i.out));
}

}  // namespace
}  // namespace ddpm::run
