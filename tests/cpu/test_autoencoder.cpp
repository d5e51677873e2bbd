// The KL autoencoder of latent diffusion (models/autoencoder/) and the latent runs built on
// it (models/run/autoencoder_run.h, latent_run.h): the loss's gradients against central
// finite differences in f64, the KL and reconstruction terms against an independent
// computation, shapes for f = 2 and 4, the config file, the folder round trip, a short
// training run, the latent scale factor, and a latent ddpm-train run that resumes
// bit-identically and samples in pixel space.
#include <cmath>
#include <filesystem>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/ops/elementwise.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/eval/classifier.h"
#include "models/run/autoencoder_run.h"
#include "models/run/checkpoint.h"
#include "models/run/data_spec.h"
#include "models/run/latent_run.h"
#include "models/run/sample_run.h"
#include "support/gradcheck.h"
#include "support/temp_dir.h"
#include "support/tiny_encoder.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using autoencoder::Autoencoder;
using autoencoder::AutoencoderConfig;
using testing::expect_value_error;

AutoencoderConfig tiny_config(int in_channels = 1, std::vector<int> mult = {1, 2}, int z = 2) {
  AutoencoderConfig c;
  c.in_channels = in_channels;
  c.base_channels = 4;
  c.channel_mult = std::move(mult);
  c.num_res_blocks = 1;
  c.z_channels = z;
  c.norm_groups = 2;
  return c;
}

// A fresh autoencoder with every parameter perturbed (the attention's output projection
// starts at zero, which would hide its gradient), optionally in f64.
std::unique_ptr<Autoencoder> tiny_autoencoder(const AutoencoderConfig& c, bool f64, std::uint64_t seed = 3) {
  Generator g(seed);
  auto ae = std::make_unique<Autoencoder>(c, g, Device::cpu());
  for (const auto& [name, t] : ae->named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
  if (f64) testing::parameters_to_f64(*ae);
  return ae;
}

TEST(Autoencoder, LossGradientsMatchFiniteDifferences) {
  for (const auto rec : {autoencoder::ReconstructionLoss::l1, autoencoder::ReconstructionLoss::l2}) {
    SCOPED_TRACE(rec == autoencoder::ReconstructionLoss::l1 ? "l1" : "l2");
    AutoencoderConfig c = tiny_config();
    c.base_channels = 2;  // 2 and 4 channels: every parameter is checked, in a few seconds
    auto ae = tiny_autoencoder(c, /*f64=*/true);
    const Tensor x = testing::param(testing::random_tensor({2, 4, 4, 1}, 11, DType::f64, 0.7));
    const Tensor eps = testing::random_tensor({2, 2, 2, 2}, 12);
    // A large KL weight so the KL term's gradient is visible next to the reconstruction's.
    auto loss = [&](const std::vector<Tensor>& in) { return autoencoder::autoencoder_loss(*ae, in[0], eps, rec, 0.3).total; };
    std::vector<Tensor> inputs{x};
    for (const auto& [name, p] : ae->named_parameters()) {
      Tensor leaf = p;
      leaf.set_requires_grad(true);
      inputs.push_back(leaf);
    }
    EXPECT_TRUE(testing::gradcheck(loss, inputs, 1e-6, 1e-6, 1e-4));
  }
}

TEST(Autoencoder, LossTermsMatchAnIndependentComputation) {
  auto ae = tiny_autoencoder(tiny_config(3, {1, 2}, 3), /*f64=*/true);
  const Tensor x = testing::random_tensor({3, 4, 4, 3}, 21, DType::f64, 0.5);
  const Tensor eps = testing::random_tensor({3, 2, 2, 3}, 22);
  const double w = 0.01;
  const auto terms = autoencoder::autoencoder_loss(*ae, x, eps, autoencoder::ReconstructionLoss::l1, w);
  // The moments straight from the network, split and clamped by hand.
  const std::vector<double> m = ae->encode_moments(x).to_double_vector(), e = eps.to_double_vector();
  const int zc = 3, B = 3;
  const std::size_t latent = m.size() / 2;  // elements of the mean (= of the latent)
  std::vector<double> z(latent);
  double kl = 0;
  for (std::size_t i = 0; i < latent; ++i) {
    const std::size_t pixel = i / zc, c = i % zc;
    const double mu = m[pixel * 2 * zc + c], lv = std::min(20.0, std::max(-30.0, m[pixel * 2 * zc + zc + c]));
    kl += 0.5 * (mu * mu + std::exp(lv) - 1.0 - lv);  // KL(N(mu, e^lv) || N(0, 1)), per dimension
    z[i] = mu + std::exp(0.5 * lv) * e[i];
  }
  kl /= B;
  const std::vector<double> xr = ae->decode(Tensor::from_vector(z, {3, 2, 2, 3})).to_double_vector();
  const std::vector<double> xv = x.to_double_vector();
  double l1 = 0;
  for (std::size_t i = 0; i < xv.size(); ++i) l1 += std::fabs(xr[i] - xv[i]);
  l1 /= B;
  EXPECT_NEAR(terms.kl.item(), kl, 1e-10 * std::max(1.0, kl));
  EXPECT_NEAR(terms.reconstruction.item(), l1, 1e-10 * std::max(1.0, l1));
  EXPECT_NEAR(terms.total.item(), l1 + w * kl, 1e-9 * std::max(1.0, l1));
  // The posterior of N(0, 1) itself has zero KL.
  autoencoder::DiagonalGaussian standard{Tensor::zeros({2, 2, 2, 3}, DType::f64), Tensor::zeros({2, 2, 2, 3}, DType::f64)};
  EXPECT_EQ(standard.kl().item(), 0.0);
}

TEST(Autoencoder, ShapesForFactorsTwoAndFourAndOddChannels) {
  struct Case {
    int in_channels, z;
    std::vector<int> mult;
    int size, f;
  };
  for (const Case& k : {Case{1, 3, {1, 2}, 8, 2}, Case{3, 5, {1, 2, 1}, 16, 4}, Case{3, 1, {1}, 6, 1}}) {
    const AutoencoderConfig c = tiny_config(k.in_channels, k.mult, k.z);
    EXPECT_EQ(c.downsampling_factor(), k.f);
    Generator g(1);
    Autoencoder ae(c, g, Device::cpu());
    const Tensor x = randn({2, k.size, k.size, k.in_channels}, g);
    const autoencoder::DiagonalGaussian q = ae.encode(x);
    const Shape latent{2, k.size / k.f, k.size / k.f, k.z};
    EXPECT_EQ(q.mean.shape(), latent);
    EXPECT_EQ(q.logvar.shape(), latent);
    EXPECT_EQ(ae.decode(q.mean).shape(), x.shape());
  }
  Generator g(2);
  Autoencoder ae(tiny_config(1, {1, 2, 2}), g, Device::cpu());
  expect_value_error([&] { ae.encode(randn({1, 6, 6, 1}, g)); }, "divisible by the downsampling factor 4");
  expect_value_error([&] { ae.decode(randn({1, 2, 2, 3}, g)); }, "must be [N, h, w, 2]");
}

TEST(Autoencoder, LogVarianceIsClamped) {
  // quant_conv's bias pushes the log-variance channels far out (+100, -100): they come back
  // clamped to LDM's [-30, 20], and the KL stays finite.
  Generator g(4);
  Autoencoder ae(tiny_config(), g, Device::cpu());  // z_channels = 2: moments [mean0, mean1, lv0, lv1]
  for (const auto& [name, t] : ae.named_parameters())
    if (name == "quant_conv.bias") {
      t.data<float>()[2] = 100.0f;
      t.data<float>()[3] = -100.0f;
    }
  const autoencoder::DiagonalGaussian q = ae.encode(randn({1, 4, 4, 1}, g));
  const std::vector<double> lv = q.logvar.to_double_vector();
  for (std::size_t i = 0; i < lv.size(); ++i) EXPECT_EQ(lv[i], i % 2 == 0 ? 20.0 : -30.0) << i;
  EXPECT_TRUE(std::isfinite(q.kl().item()));
}

TEST(Autoencoder, ConfigJsonRoundTripAndStrictKeys) {
  AutoencoderConfig c = tiny_config(3, {1, 2, 4}, 5);
  c.scale_factor = 0.18215;
  c.norm_eps = 1e-5;
  const nlohmann::json j = autoencoder::autoencoder_config_to_json(c);
  EXPECT_EQ(j.at("downsampling_factor"), 4);
  const AutoencoderConfig back = autoencoder::autoencoder_config_from_json(j);
  EXPECT_EQ(autoencoder::autoencoder_config_to_json(back), j);
  EXPECT_EQ(back.scale_factor, 0.18215);

  nlohmann::json extra = j;
  extra["z_chanels"] = 4;
  EXPECT_THROW(autoencoder::autoencoder_config_from_json(extra), IoError);
  nlohmann::json missing = j;
  missing.erase("z_channels");
  EXPECT_THROW(autoencoder::autoencoder_config_from_json(missing), IoError);
  nlohmann::json wrong_f = j;
  wrong_f["downsampling_factor"] = 8;
  EXPECT_THROW(autoencoder::autoencoder_config_from_json(wrong_f), IoError);
  nlohmann::json groups = j;
  groups["norm_groups"] = 3;
  expect_value_error([&] { autoencoder::autoencoder_config_from_json(groups); }, "not divisible by 3 groups");
}

TEST(Autoencoder, SaveLoadRoundTripIsBitIdentical) {
  testing::TempDir tmp;
  AutoencoderConfig c = tiny_config(3, {1, 2}, 3);
  c.scale_factor = 0.5;
  auto ae = tiny_autoencoder(c, false);
  const std::string dir = tmp.path + "/ae";
  autoencoder::save_autoencoder(*ae, {{"note", "test"}}, dir, false);
  EXPECT_TRUE(autoencoder::is_autoencoder_folder(dir));
  expect_value_error([&] { autoencoder::save_autoencoder(*ae, {}, dir, false); }, "pass --overwrite");
  const autoencoder::AutoencoderFolder f = autoencoder::load_autoencoder(dir, Device::cpu());
  EXPECT_EQ(f.model->config().scale_factor, 0.5);
  EXPECT_EQ(f.info.at("train").at("note"), "test");
  Generator g(7);
  const Tensor x = randn({2, 8, 8, 3}, g);
  EXPECT_TRUE(testing::same_bits(f.model->encode_moments(x), ae->encode_moments(x)));
  const Tensor z = randn({2, 4, 4, 3}, g);
  EXPECT_TRUE(testing::same_bits(f.model->decode(z), ae->decode(z)));
  // A folder of another kind is named.
  write_file_atomic(tmp.path + "/config.json", "{\"architecture\": \"noisy-classifier\"}");
  EXPECT_THROW(autoencoder::load_autoencoder(tmp.path, Device::cpu()), IoError);
}

run::AutoencoderTrainArgs tiny_args() {
  run::AutoencoderTrainArgs a;
  a.data = "toy";
  a.steps = 40;
  a.batch_size = 8;
  a.lr = 1e-3;
  a.base_channels = 8;
  a.channel_mult = "1,2";
  a.norm_groups = 4;
  a.z_channels = 3;
  a.log_every = 0;
  return a;
}

Dataset toy_data(std::int64_t n = 64) {
  run::DataOptions dopt;
  dopt.toy_count = n;
  return run::load_data(run::parse_data_spec("toy"), dopt);
}

TEST(Autoencoder, ShortTrainingReducesTheReconstructionLoss) {
  const run::AutoencoderTrainArgs a = tiny_args();
  const Dataset data = toy_data();
  Generator init(0);
  Autoencoder ae(run::autoencoder_config_for(a, data), init, Device::cpu());
  const run::AutoencoderTrainReport r = run::train_autoencoder(ae, data, a);
  ASSERT_EQ(r.reconstruction.size(), 40u);
  auto window_mean = [&](std::size_t from) {
    double s = 0;
    for (std::size_t i = from; i < from + 5; ++i) s += r.reconstruction[i];
    return s / 5;
  };
  EXPECT_LT(window_mean(35), 0.6 * window_mean(0));
  // The reported PSNR comes from the same uint8 pixels the MSE uses.
  const run::AutoencoderEvalReport ev = run::evaluate_reconstruction(ae, take(data, 10), 4);
  EXPECT_NEAR(ev.psnr, 10 * std::log10(255.0 * 255.0 / ev.mse), 1e-9);
}

// ddpm-autoencoder train on clips (the per-frame autoencoder of a latent video run): the
// clips' first frames are its images, their geometry from --canvas / --item-size, recorded in
// config.json; the clip flags with still-image data are refused before anything is written.
TEST(Autoencoder, TrainsOnTheFirstFramesOfMovingClips) {
  const testing::TempDir tmp;
  run::AutoencoderTrainArgs a = tiny_args();
  a.data = "moving-toy";
  a.canvas = 16;
  a.item_size = 8;
  a.steps = 2;
  a.scale_images = 8;
  a.out = tmp.path + "/ae";
  std::ostringstream log;
  run::run_autoencoder_train(a, log);
  EXPECT_NE(log.str().find("16x16x1 -> 8x8x3"), std::string::npos) << log.str();
  const autoencoder::AutoencoderFolder f = autoencoder::load_autoencoder(a.out, Device::cpu());
  const nlohmann::json clips = f.info.at("train").at("clips");
  EXPECT_EQ(clips.at("canvas"), 16);
  EXPECT_EQ(clips.at("item_size"), 8);
  EXPECT_EQ(clips.at("frames_used"), "first");
  // The grid's top row is the images it trained on: the clips' first frames (the first tile
  // starts after make_grid's 2-pixel padding).
  run::DataOptions dopt;
  dopt.frames = 1;
  dopt.canvas = 16;
  dopt.item_size = 8;
  const Dataset first = run::load_data(run::parse_data_spec("moving-toy"), dopt);
  const Image grid = read_png(a.out + "/reconstructions.png");
  ASSERT_GE(grid.width, 16);
  int differ = 0, lit = 0;
  for (int i = 0; i < 256; ++i) lit += first.image(0)[i] > 0;
  EXPECT_GT(lit, 8) << "the first frame is black: the comparison below would prove little";
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x)
      differ += grid.pixels[static_cast<std::size_t>(((y + 2) * grid.width + x + 2) * grid.channels)] !=
                first.image(0)[y * 16 + x];
  EXPECT_EQ(differ, 0);
  // --canvas names itself when --data holds still images; no folder is made.
  run::AutoencoderTrainArgs bad = tiny_args();
  bad.canvas = 20;
  bad.out = tmp.path + "/refused";
  testing::expect_value_error([&] { run::run_autoencoder_train(bad, log); }, "--canvas 20 shapes the clips");
  EXPECT_FALSE(std::filesystem::exists(bad.out));
}

TEST(Autoencoder, LatentScaleFactorIsOneOverTheStd) {
  auto ae = tiny_autoencoder(tiny_config(1, {1, 2}, 2), false);
  const Dataset data = toy_data(10);
  // Batches of 4, 4, 2 draw their noise in Philox blocks; one batch of all 10 images with
  // the same seed reads the same stream (every batch's element count is a multiple of 4).
  const double s = run::measure_latent_scale(*ae, data, 10, 4, 99);
  NoGradGuard no_grad;
  Generator gen(99);
  const autoencoder::DiagonalGaussian q = ae->encode(eval::image_batch(data, 0, 10, Device::cpu()));
  const std::vector<double> z = q.sample(randn(q.mean.shape(), gen)).to_double_vector();
  double mean = 0;
  for (double v : z) mean += v;
  mean /= static_cast<double>(z.size());
  double ss = 0;  // two-pass variance, unbiased like torch.std
  for (double v : z) ss += (v - mean) * (v - mean);
  const double expected = 1.0 / std::sqrt(ss / static_cast<double>(z.size() - 1));
  EXPECT_NEAR(s, expected, 1e-9 * expected);
}

TEST(Autoencoder, LatentCodecScalesAndUnscales) {
  testing::TempDir tmp;
  AutoencoderConfig c = tiny_config(1, {1, 2}, 2);
  c.scale_factor = 0.25;
  auto ae = tiny_autoencoder(c, false);
  autoencoder::save_autoencoder(*ae, {}, tmp.path + "/ae", false);
  const run::LatentCodec codec(tmp.path + "/ae", Device::cpu());
  Generator g(5);
  const Tensor x = randn({2, 4, 4, 1}, g);
  Generator draw(8), draw_copy(8);  // the same stream twice
  const Tensor zs = codec.encode(x, draw);
  const autoencoder::DiagonalGaussian q = ae->encode(x);
  const Tensor expected = scale(q.sample(randn(q.mean.shape(), draw_copy)), 0.25);
  EXPECT_TRUE(testing::all_close(zs, expected, 1e-6, 1e-6));
  EXPECT_FALSE(zs.requires_grad());
  EXPECT_TRUE(testing::all_close(codec.decode(zs), ae->decode(scale(zs, 4.0)), 1e-5, 1e-5));
}

// A tiny latent ddpm-train run: autoencoder f = 2 on the 16x16 toy shapes -> 8x8x3 latents.
run::TrainOptions latent_run(const std::string& out, const std::string& ae_dir) {
  run::TrainOptions o = testing::tiny_run(out);
  o.autoencoder = ae_dir;
  return o;
}

std::string trained_autoencoder(const std::string& dir) {
  run::AutoencoderTrainArgs a = tiny_args();
  a.steps = 3;
  a.scale_images = 16;
  a.out = dir;
  std::ostringstream log;
  run::run_autoencoder_train(a, log);
  return dir;
}

TEST(LatentDiffusion, TrainResumesBitIdenticallyAndSamplesPixels) {
  testing::TempDir tmp;
  const std::string ae = trained_autoencoder(tmp.path + "/ae");
  run::TrainOptions straight = latent_run(testing::temp_run("latent_straight"), ae);
  run::train_run(straight);
  const nlohmann::json cfg = run::read_run_config(straight.out);
  EXPECT_EQ(cfg.at("model").at("in_channels"), 3);  // z_channels
  EXPECT_EQ(cfg.at("model").at("image_size"), 8);   // 16 / f
  EXPECT_EQ(cfg.at("autoencoder").at("folder"), "autoencoder");
  EXPECT_TRUE(autoencoder::is_autoencoder_folder(straight.out + "/autoencoder"));
  EXPECT_TRUE(fs::exists(straight.out + "/samples/step_6.png"));

  run::TrainOptions first = latent_run(testing::temp_run("latent_resumed"), ae);
  first.steps = 3;
  run::train_run(first);
  run::TrainOptions second = first;
  second.steps = 6;
  second.resume = "latest";
  run::train_run(second);
  const std::string a = run::checkpoint_dir(straight.out, 6), b = run::checkpoint_dir(second.out, 6);
  for (const char* f : {"model.safetensors", "ema.safetensors", "optimizer.safetensors"})
    testing::expect_same_tensors(a + "/" + f, b + "/" + f);

  // ddpm-sample decodes to pixel space.
  run::SampleOptions so;
  so.checkpoint = straight.out;
  so.num_samples = 3;
  so.sampler = "ddim";
  so.sampling_steps = 5;
  so.out = tmp.path + "/samples";
  const run::SampleResult r = run::run_sample(so);
  EXPECT_EQ(r.shape, (Shape{3, 16, 16, 1}));
  EXPECT_EQ(r.pixels.size(), 3u * 16 * 16);
  const nlohmann::json info = nlohmann::json::parse(read_file(so.out + "/sample_info.json"));
  EXPECT_EQ(info.at("latent_shape"), nlohmann::json({8, 8, 3}));
  EXPECT_EQ(info.at("clip_x0"), false);

  // Pixel-only features are refused.
  run::SampleOptions inpaint = so;
  inpaint.sampler = "ddpm";
  inpaint.out = tmp.path + "/inpaint";
  inpaint.inpaint_image = tmp.path + "/x.png";
  inpaint.inpaint_mask = tmp.path + "/m.png";
  expect_value_error([&] { run::run_sample(inpaint); }, "latent diffusion model");
  run::SampleOptions guided = so;
  guided.out = tmp.path + "/guided";
  guided.classifier = tmp.path + "/cls";
  expect_value_error([&] { run::run_sample(guided); }, "trained on noisy pixels");
  expect_value_error([&] { run::refuse_latent_model(run::checkpoint_dir(straight.out, 6), "bpd"); },
                     "latent diffusion model");
  EXPECT_NO_THROW(run::refuse_latent_model(tmp.path + "/ae", "bpd"));
}

TEST(LatentDiffusion, RefusesVlbLossesAndMismatchedData) {
  testing::TempDir tmp;
  run::TrainOptions o = latent_run(tmp.path + "/run", tmp.path + "/ae");
  o.loss = "hybrid";
  o.learn_sigma = true;
  expect_value_error([&] { run::validate_options(o); }, "--loss hybrid does not apply with --autoencoder");
  // An RGB autoencoder for the 1-channel toy data.
  AutoencoderConfig c = tiny_config(3, {1, 2}, 2);
  autoencoder::save_autoencoder(*tiny_autoencoder(c, false), {}, tmp.path + "/ae", false);
  run::TrainOptions rgb = latent_run(tmp.path + "/run", tmp.path + "/ae");
  expect_value_error([&] { run::train_run(rgb); }, "takes 3-channel images");
  EXPECT_FALSE(fs::exists(tmp.path + "/run/config.json"));
}

}  // namespace
}  // namespace ddpm
