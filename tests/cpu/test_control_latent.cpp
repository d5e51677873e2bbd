// ControlNet on a latent diffusion base (models/unet/controlnet.h hint_downsampling_factor,
// models/run/control_run.h): the hint stays at IMAGE resolution and the hint embedding's
// stride-2 pairs bring it to the latent size; training encodes x_0 with the frozen
// autoencoder while the hint comes from the pixels; sampling decodes as latent runs do.
// Also: old control configs (no factor) still read as factor 1 and are written unchanged; the
// control run records the base's autoencoder, and sampling and eval refuse a base whose
// autoencoder differs from it (a moved copy of the same one is fine).
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/io/png.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/run/autoencoder_run.h"
#include "models/run/checkpoint.h"
#include "models/run/control_eval.h"
#include "models/run/control_run.h"
#include "models/run/latent_run.h"
#include "models/run/sample_run.h"
#include "models/unet/model_io.h"
#include "support/tiny_control.h"
#include "support/tiny_unet.h"

namespace ddpm::run {
namespace {

TEST(ControlLatentConfig, TheFactorIsWrittenOnlyWhenNotOneAndOldConfigsReadAsOne) {
  unet::ControlNetConfig c;
  c.base = testing::tiny_unet_config(4, 3);
  const nlohmann::json pixel = unet::controlnet_config_to_json(c);
  EXPECT_FALSE(pixel.contains("hint_downsampling_factor"));  // an old run's config.json, unchanged
  EXPECT_EQ(unet::controlnet_config_from_json(pixel).hint_downsampling_factor, 1);
  c.hint_downsampling_factor = 4;
  c.conditioning_embedding_out_channels = {16, 32, 64};
  const nlohmann::json latent = unet::controlnet_config_to_json(c);
  EXPECT_EQ(latent.at("hint_downsampling_factor"), 4);
  EXPECT_EQ(unet::controlnet_config_from_json(latent).hint_downsampling_factor, 4);
  nlohmann::json bad = latent;
  bad["hint_downsampling_factor"] = 3;  // not a power of two
  EXPECT_THROW(unet::controlnet_config_from_json(bad), ValueError);
  bad["hint_downsampling_factor"] = 8;  // three stride-2 pairs need four widths
  EXPECT_THROW(unet::controlnet_config_from_json(bad), ValueError);
  bad = latent;
  bad["hint_stride"] = 2;  // still strict about unknown keys
  EXPECT_THROW(unet::controlnet_config_from_json(bad), IoError);
}

TEST(ControlLatentConfig, StrideTwoPairsBringAnImageSizedHintToTheLatentSize) {
  // A UNet on 4x4 latents, hints of 16x16 pixels: f = 4, two stride-2 pairs.
  Generator g(3);
  unet::UNetConfig bc = testing::tiny_unet_config(4, 3);
  unet::UNet base(bc, g, Device::cpu());
  for (const auto& [name, t] : base.named_parameters()) {  // a "trained" base: conv_out not zero
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
  unet::ControlNetConfig cc;
  cc.base = bc;
  cc.hint_downsampling_factor = 4;
  cc.conditioning_embedding_out_channels = {16, 32, 64};
  unet::ControlNet cn(cc, g, Device::cpu());
  cn.copy_encoder_from(base);
  // The stride-2 convs are the second of each pair (diffusers' layout): blocks.1 and blocks.3.
  const std::vector<std::pair<std::string, Tensor>> params = cn.named_parameters();
  auto weight = [&](const std::string& name) {
    for (const auto& [n, t] : params)
      if (n == name) return t;
    ADD_FAILURE() << "no parameter " << name;
    return Tensor();
  };
  EXPECT_EQ(weight("controlnet_cond_embedding.blocks.3.weight").dim(3), 32);  // 32 -> 64 (KRSC: C last)
  const Tensor x = randn({2, 4, 4, 3}, g), hint = randn({2, 16, 16, 1}, g);
  const std::vector<double> t = {3, 40};
  const Tensor plain = base.forward(x, t, {}, nn::Context{});
  EXPECT_EQ(unet::controlled_forward(base, cn, x, t, {}, hint, nn::Context{}).to_vector(), plain.to_vector());
  // With the zero conv_out made non-zero the hint reaches the residuals, at the latent size.
  for (const auto& [n, p] : params)
    if (n.rfind("controlnet_", 0) == 0)
      for (std::int64_t i = 0; i < p.numel(); ++i) p.data<float>()[i] += 0.05f;
  const unet::ControlResiduals r = cn.forward(x, t, {}, hint, nn::Context{});
  EXPECT_EQ(r.down.front().shape(), (Shape{2, 4, 4, 8}));
  EXPECT_NE(unet::controlled_forward(base, cn, x, t, {}, hint, nn::Context{}).to_vector(), plain.to_vector());
  EXPECT_THROW(cn.forward(x, t, {}, randn({2, 4, 4, 1}, g), nn::Context{}), ValueError);  // a latent-sized hint
}

const std::string& latent_base() {
  static const std::string dir = [] {
    const std::string ae = testing::temp_run("control_latent_ae");
    AutoencoderTrainArgs a;
    a.data = "toy";
    a.steps = 2;
    a.batch_size = 4;
    a.lr = 1e-3;
    a.base_channels = 8;
    a.channel_mult = "1,2,2";  // f = 4: 16x16 toy images -> 4x4x3 latents
    a.norm_groups = 4;
    a.z_channels = 3;
    a.scale_images = 16;
    a.log_every = 0;
    a.out = ae;
    std::ostringstream log;
    run_autoencoder_train(a, log);
    return testing::train_tiny_base("control_latent_base", [&ae](TrainOptions& o) {
      o.autoencoder = ae;
      o.attention_resolutions = "";
    });
  }();
  return dir;
}

ControlTrainArgs latent_control(const std::string& out) { return testing::tiny_control_args(latent_base(), out); }

TEST(ControlLatent, TrainsOnPixelHintsResumesBitIdenticallyAndSamplesDecodedImages) {
  const std::string full = testing::temp_run("control_latent_full"), split = testing::temp_run("control_latent_split");
  testing::expect_control_resume_bit_identical(latent_control, full, split);
  const nlohmann::json cfg = read_run_config(full);
  EXPECT_EQ(cfg.at("controlnet").at("hint_downsampling_factor"), 4);
  EXPECT_EQ(cfg.at("controlnet").at("conditioning_embedding_out_channels"), nlohmann::json({16, 32, 64}));
  EXPECT_EQ(cfg.at("controlnet").at("base_model").at("image_size"), 4);  // the latent UNet

  SampleOptions s;
  s.checkpoint = latent_base();
  s.sampler = "ddim";
  s.sampling_steps = 5;
  s.num_samples = 3;
  s.batch_size = 2;
  s.seed = 4;
  s.out = testing::temp_run("control_latent_plain");
  const SampleResult plain = run_sample(s);
  ASSERT_EQ(plain.shape, (Shape{3, 16, 16, 1}));  // decoded pixels
  SampleOptions c = s;
  c.control = full;
  c.control_from = "toy";  // 16x16 pixel images: their hints are 16x16
  c.num_samples_given = true;
  c.control_scale = 0.0;
  c.out = testing::temp_run("control_latent_zero");
  EXPECT_EQ(run_sample(c).pixels, plain.pixels);
  c.control_scale = 1.0;
  c.out = testing::temp_run("control_latent_on");
  EXPECT_NE(run_sample(c).pixels, plain.pixels);
  const Image hints = read_png(c.out + "/control.png");
  EXPECT_GT(hints.width, 16);  // pixel-sized hint tiles (two per row, 16 + padding each)

  ControlEvalArgs e;
  e.control = full;
  e.limit = 2;
  e.sampling_steps = 5;
  std::ostringstream text;
  const ControlEvalReport rep = run_control_eval(e, text);
  EXPECT_EQ(rep.height, 16);
  EXPECT_EQ(rep.baseline_pixels.size(), 2u * 16 * 16);

  // A pixel-space control run does not fit the latent base (nor the other way round).
  ControlTrainArgs bad = latent_control(testing::temp_run("control_latent_bad"));
  bad.pad_to_32 = true;  // 32x32 images: not f times the latent size
  EXPECT_THROW(train_control_run(bad), ValueError);
}

TEST(ControlLatent, SamplingAndEvalRefuseABaseWhoseAutoencoderIsNotTheRecordedOne) {
  namespace fs = std::filesystem;
  ControlTrainArgs t = latent_control(testing::temp_run("control_latent_ae_ctrl"));
  t.steps = 2;
  train_control_run(t);
  const std::string recorded_folder = fs::absolute(latent_base() + "/autoencoder").lexically_normal().string();
  const nlohmann::json rec = read_run_config(t.out).at("base").at("autoencoder");
  EXPECT_EQ(rec.at("folder"), recorded_folder);
  // Its config is the one the base run records for its autoencoder (latent_run.h).
  EXPECT_EQ(rec.at("model"), read_run_config(latent_base()).at("autoencoder").at("model"));
  EXPECT_EQ(rec.at("weights_crc32").get<std::string>().size(), 8u);

  // A moved copy of the base (the same autoencoder bytes in another folder) still fits.
  const std::string moved = testing::temp_run("control_latent_moved");
  fs::copy(latent_base(), moved, fs::copy_options::recursive);
  SampleOptions s;
  s.checkpoint = moved;
  s.sampler = "ddim";
  s.sampling_steps = 2;
  s.num_samples = 2;
  s.control = t.out;
  s.control_from = "toy";
  s.out = testing::temp_run("control_latent_moved_out");
  EXPECT_NO_THROW(run_sample(s));

  // The same base with one autoencoder weight nudged: same configs everywhere, other latents.
  const std::string tampered = testing::temp_run("control_latent_tampered");
  fs::copy(latent_base(), tampered, fs::copy_options::recursive);
  const std::string ae_dir = tampered + "/autoencoder";
  {
    autoencoder::AutoencoderFolder ae = autoencoder::load_autoencoder(ae_dir, Device::cpu());
    Tensor w = ae.model->named_parameters().front().second;
    w.data<float>()[0] += 0.5f;
    autoencoder::save_autoencoder(*ae.model, ae.info.value("train", nlohmann::json::object()), ae_dir,
                                  /*overwrite=*/true);
  }
  s.checkpoint = tampered;
  s.out = testing::temp_run("control_latent_tampered_out");
  try {
    run_sample(s);
    ADD_FAILURE() << "a base with another autoencoder was accepted";
  } catch (const ValueError& err) {
    const std::string what = err.what();
    EXPECT_NE(what.find(recorded_folder), std::string::npos) << what;  // both folders named
    EXPECT_NE(what.find(fs::absolute(ae_dir).lexically_normal().string()), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(s.out));  // nothing written
  ControlEvalArgs e;
  e.control = t.out;
  e.checkpoint = tampered;
  e.limit = 2;
  e.sampling_steps = 2;
  std::ostringstream text;
  EXPECT_THROW(run_control_eval(e, text), ValueError);

  // The pixel-space side: a control run that records an autoencoder does not fit a pixel
  // model, whatever else matches (checked on the recorded base alone).
  ControlRun control = open_control_run(t.out, Device::cpu());
  EXPECT_THROW(check_control_autoencoder(control, nullptr, "a pixel model"), ValueError);
  control.config["base"].erase("autoencoder");  // a run from before the record: by its factor
  const LatentCodec codec(ae_dir, Device::cpu());
  EXPECT_NO_THROW(check_control_autoencoder(control, &codec, tampered));
}

}  // namespace
}  // namespace ddpm::run
