// Autoguidance of a LATENT diffusion model (models/run/autoguide_run.h): both networks denoise
// the same latents and only the guided result is decoded, so the guide must have been trained
// on the same autoencoder. The natural guide is an earlier checkpoint of the same run.
//
// The independent computations: w = 1 draws exactly the model's own samples and w = 0 exactly
// the guide's own (each sampled by ddpm-sample's ordinary latent path, which opens and decodes
// it alone), pixel for pixel; and the autoencoder check refuses a pixel/latent mix and two
// autoencoders whose files differ, while accepting a byte-identical copy.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "models/run/autoguide_run.h"
#include "models/run/sample_run.h"
#include "support/temp_dir.h"
#include "support/tiny_autoencoder.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace fs = std::filesystem;

namespace ddpm::run {
namespace {

// A tiny latent run of six steps with checkpoints at steps 3 and 6, on `autoencoder`.
std::string latent_run(const std::string& name, const std::string& autoencoder) {
  TrainOptions o = testing::tiny_run(testing::temp_run(name));
  o.autoencoder = autoencoder;
  o.attention_resolutions = "";  // a 4x4 latent UNet
  o.steps = 6;
  o.save_every = 3;
  train_run(o);
  return o.out;
}

SampleOptions options(const std::string& checkpoint, const std::string& out) {
  SampleOptions o;
  o.checkpoint = checkpoint;
  o.num_samples = 3;
  o.batch_size = 3;
  o.sampler = "ddim";
  o.sampling_steps = 5;
  o.device = Device::cpu();
  o.seed = 5;
  o.out = testing::temp_path("autoguide_latent_" + out);
  return o;
}

TEST(AutoguideLatent, ScaleOneIsTheModelAndScaleZeroTheEarlierCheckpointPixelForPixel) {
  const std::string ae = testing::tiny_autoencoder("autoguide_latent_ae");
  const std::string run = latent_run("autoguide_latent", ae);
  const std::string guide = (fs::path(run) / "checkpoints" / "step_3").string();
  ASSERT_TRUE(fs::is_directory(guide));

  const SampleResult plain = run_sample(options(run, "plain"));
  const SampleResult of_guide = run_sample(options(guide, "guide"));
  ASSERT_NE(plain.pixels, of_guide.pixels) << "the two checkpoints must differ for this test to mean anything";

  SampleOptions a = options(run, "w1");
  a.autoguide = guide;
  EXPECT_EQ(run_sample(a).pixels, plain.pixels);
  a.out = testing::temp_path("autoguide_latent_w0");
  a.guidance_scale = 0.0;
  EXPECT_EQ(run_sample(a).pixels, of_guide.pixels);
  a.out = testing::temp_path("autoguide_latent_w2");
  a.guidance_scale = 2.0;
  const SampleResult w2 = run_sample(a);
  EXPECT_NE(w2.pixels, plain.pixels);
  EXPECT_NE(w2.pixels, of_guide.pixels);
}

TEST(AutoguideLatent, TheGuideMustShareTheAutoencoder) {
  const std::string ae = testing::tiny_autoencoder("autoguide_latent_ae_a");
  const std::string other = testing::tiny_autoencoder("autoguide_latent_ae_b", /*seed=*/1);
  const std::string copy = testing::temp_path("autoguide_latent_ae_copy");
  fs::remove_all(copy);
  fs::copy(ae, copy, fs::copy_options::recursive);

  check_autoguide_autoencoder("", "", "g");  // two pixel models
  check_autoguide_autoencoder(ae, copy, "g");  // byte-identical folders: the same latents
  EXPECT_NE(testing::value_error_message([&] { check_autoguide_autoencoder(ae, "", "g"); }).find("diffuses pixels"),
            std::string::npos);
  EXPECT_NE(testing::value_error_message([&] { check_autoguide_autoencoder("", ae, "g"); })
                .find("is a latent diffusion model"),
            std::string::npos);
  EXPECT_NE(testing::value_error_message([&] { check_autoguide_autoencoder(ae, other, "g"); }).find("differ"),
            std::string::npos);

  // End to end: a latent run on another autoencoder is refused as a guide, naming both folders.
  const std::string run = latent_run("autoguide_latent_a", ae);
  const std::string foreign = latent_run("autoguide_latent_b", other);
  SampleOptions o = options(run, "foreign");
  o.autoguide = foreign;
  const std::string message = testing::value_error_message([&] { run_sample(o); });
  EXPECT_NE(message.find("differ"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(o.out)) << "a refused run writes nothing";
}

}  // namespace
}  // namespace ddpm::run
