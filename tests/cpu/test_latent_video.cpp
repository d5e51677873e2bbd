// Latent video diffusion (models/run/latent_run.h "Latent video"; Blattmann et al. 2023): a
// video UNet diffusing the per-frame latents of a frozen autoencoder. What is checked:
//   - LatentCodec on clips [N, F, H, W, C] is the codec of each frame on its own (means and
//     decodes frame by frame; the posterior sample is that of the N F frames as one batch);
//   - ddpm-train --data moving-toy --autoencoder trains a latent video UNet (the latent's size
//     and channels, F frames), copies the autoencoder into the run, and resumes bit for bit
//     with joint stills (encoded after the clips);
//   - ddpm-sample on it writes F pixel frames that are the decode of the sampled latents,
//     also when reconstruction guidance continues the clips on latents (--segments);
//   - a first-frame-conditioned latent run continues with --segments and takes its first
//     frames from a latent image run on the same autoencoder (--first-frame-from), whose
//     latents are used as sampled; a pixel image run, or another autoencoder's, is refused;
//   - --init-from a latent image run on clips (Video LDM): the video model built by the
//     production path equals the image model frame by frame at step 0, the run diffuses with
//     the source's autoencoder (and resumes with the run's copy, bit for bit), and
//     --autoencoder, LoRA and clips of another pixel size are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/ops/concat.h"
#include "engine/rng.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/run/checkpoint.h"
#include "models/run/finetune.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "models/run/train_run.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/temp_dir.h"
#include "support/tiny_autoencoder.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace fs = std::filesystem;
using namespace ddpm;
using ddpm::testing::expect_value_error;
using ddpm::testing::random_tensor;
using ddpm::testing::temp_run;
using run::TrainOptions;

namespace {

constexpr int kFrames = 3;

// The tiny autoencoder (16x16x1 -> 4x4x3, f = 4) and another of the same shape.
const std::string& tiny_ae() {
  static const std::string dir = ddpm::testing::tiny_autoencoder("lvid_ae");
  return dir;
}
const std::string& other_ae() {
  static const std::string dir = ddpm::testing::tiny_autoencoder("lvid_ae_other", 1);
  return dir;
}

// A latent video run on 16x16 moving-toy clips: a 4x4x3 latent UNet of F frames.
TrainOptions latent_video(const std::string& out) {
  TrainOptions o = ddpm::testing::tiny_run(out);
  o.data = "moving-toy";
  o.toy_count = 8;
  o.frames = kFrames;
  o.canvas = 16;
  o.item_size = 8;
  o.autoencoder = tiny_ae();
  o.attention_resolutions = "";
  o.batch_size = 2;
  o.steps = 2;
  o.save_every = 2;
  o.num_samples = 2;
  o.sample_steps = 2;
  return o;
}

// A latent image run (16x16 toy shapes) on `ae`, one step.
std::string latent_image_run(const std::string& name, const std::string& ae) {
  TrainOptions o = ddpm::testing::tiny_run(temp_run(name));
  o.autoencoder = ae;
  o.attention_resolutions = "";
  o.steps = 1;
  o.save_every = 1;
  run::train_run(o);
  return o.out;
}

const std::string& video_run() {
  static const std::string dir = [] {
    TrainOptions o = latent_video(temp_run("lvid_video"));
    run::train_run(o);
    return o.out;
  }();
  return dir;
}

Tensor frame(const Tensor& clips, std::int64_t i, std::int64_t j) {  // clips[i, j] as [1, ...]
  const Tensor f = slice(slice(clips, 0, i, 1), 1, j, 1);
  return f.reshape({1, f.dim(2), f.dim(3), f.dim(4)});
}

run::SampleOptions tiny_sample(const std::string& checkpoint, const std::string& out) {
  run::SampleOptions s;
  s.checkpoint = checkpoint;
  s.num_samples = 2;
  s.batch_size = 2;
  s.sampler = "ddim";
  s.sampling_steps = 2;
  s.seed = 3;
  s.out = out;
  return s;
}

}  // namespace

TEST(LatentVideo, ClipCodecIsTheFramesCodec) {
  const run::LatentCodec codec(tiny_ae(), Device::cpu());
  const Tensor x = random_tensor({2, kFrames, 16, 16, 1}, 11, DType::f32, 0.6);
  const Tensor mean = codec.encode_mean(x);
  ASSERT_EQ(mean.shape(), (Shape{2, kFrames, 4, 4, 3}));
  const Tensor decoded = codec.decode(mean);
  ASSERT_EQ(decoded.shape(), (Shape{2, kFrames, 16, 16, 1}));
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t j = 0; j < kFrames; ++j) {
      EXPECT_TRUE(ddpm::testing::all_close(frame(mean, i, j), codec.encode_mean(frame(x, i, j)), 1e-6, 1e-5))
          << "clip " << i << " frame " << j;
      EXPECT_TRUE(ddpm::testing::all_close(frame(decoded, i, j), codec.decode(frame(mean, i, j)), 1e-6, 1e-5))
          << "clip " << i << " frame " << j;
    }
  // The posterior sample: the frames as one batch of N F images, the same draws.
  Generator g1(9), g2(9);
  const Tensor z = codec.encode(x, g1);
  const Tensor z_frames = codec.encode(x.reshape({2 * kFrames, 16, 16, 1}), g2);
  ASSERT_EQ(z.shape(), (Shape{2, kFrames, 4, 4, 3}));
  EXPECT_TRUE(ddpm::testing::same_bits(z.reshape(z_frames.shape()), z_frames));
  EXPECT_FALSE(ddpm::testing::all_close(z, mean, 1e-4, 1e-4));  // a draw, not the mean
}

TEST(LatentVideo, TrainsOnLatentClipsAndSamplesDecodedFrames) {
  const nlohmann::json cfg = run::read_run_config(video_run());
  EXPECT_EQ(cfg.at("model").at("image_size"), 4);  // the latent's, not 16
  EXPECT_EQ(cfg.at("model").at("in_channels"), 3);
  EXPECT_EQ(cfg.at("model").at("num_frames"), kFrames);
  EXPECT_EQ(cfg.at("autoencoder").at("folder"), run::kRunAutoencoderFolder);
  const std::string copy = video_run() + "/" + run::kRunAutoencoderFolder;
  ASSERT_TRUE(autoencoder::is_autoencoder_folder(copy));
  EXPECT_TRUE(run::same_autoencoder(copy, tiny_ae()));
  EXPECT_FALSE(run::same_autoencoder(copy, other_ae()));
  EXPECT_EQ(run::find_run_autoencoder(video_run()), copy);

  const std::string out = ddpm::testing::temp_path("lvid_samples");
  const run::SampleResult r = run::run_sample(tiny_sample(video_run(), out));
  EXPECT_EQ(r.shape, (Shape{2, kFrames, 16, 16, 1}));  // F pixel frames per clip
  ASSERT_EQ(r.latents.shape(), (Shape{2, kFrames, 4, 4, 3}));
  // The written frames are the decode of the sampled latents, frame by frame.
  const run::LatentCodec codec(copy, Device::cpu());
  EXPECT_EQ(run::to_uint8_pixels(codec.decode(r.latents)), r.pixels);
  for (const char* f : {"grid.gif", "filmstrip.png", "videos/000001.gif", "samples.npz", "sample_info.json"})
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
  const nlohmann::json info = nlohmann::json::parse(ddpm::read_file(out + "/sample_info.json"));
  EXPECT_EQ(info.at("latent_shape"), (nlohmann::json{4, 4, 3}));
  EXPECT_EQ(info.at("video").at("frames"), kFrames);

  // Reconstruction guidance continues the unconditional model's clips on latents.
  run::SampleOptions g = tiny_sample(video_run(), ddpm::testing::temp_path("lvid_guided"));
  g.segments = 2;
  g.overlap = 1;
  g.reconstruction_guidance = 1;
  const run::SampleResult rg = run::run_sample(g);
  EXPECT_EQ(rg.shape, (Shape{2, 2 * kFrames - 1, 16, 16, 1}));
  ASSERT_EQ(rg.latents.shape(), (Shape{2, 2 * kFrames - 1, 4, 4, 3}));
  EXPECT_EQ(run::to_uint8_pixels(codec.decode(rg.latents)), rg.pixels);
}

TEST(LatentVideo, ResumesBitForBitWithJointStills) {
  TrainOptions straight = latent_video(temp_run("lvid_straight"));
  straight.joint_images = 2;  // encoded after the clips, from the trainer's generator
  straight.steps = 4;
  run::train_run(straight);
  TrainOptions first = latent_video(temp_run("lvid_resumed"));
  first.joint_images = 2;
  first.steps = 2;
  run::train_run(first);
  TrainOptions resumed = first;
  resumed.steps = 4;
  resumed.resume = "latest";
  EXPECT_EQ(run::train_run(resumed).steps_done, 4);  // the step reached
  for (const char* f : {run::kModelFile, run::kEmaFile})
    ddpm::testing::expect_same_tensors(run::checkpoint_dir(straight.out, 4) + "/" + f,
                                       run::checkpoint_dir(resumed.out, 4) + "/" + f);
}

TEST(LatentVideo, FirstFramesFromALatentImageRunOnTheSameAutoencoder) {
  TrainOptions v = latent_video(temp_run("lvid_ffc"));
  v.first_frame_condition = true;
  v.condition_frames = 2;
  v.steps = 1;
  v.save_every = 1;
  run::train_run(v);  // the condition is made of the clips' latents
  // Its grid animates the encoded first frames of the data (posterior means), decoded.
  EXPECT_TRUE(fs::exists(v.out + "/samples/step_1.gif"));
  const std::string image = latent_image_run("lvid_image", tiny_ae());

  run::SampleOptions s = tiny_sample(v.out, ddpm::testing::temp_path("lvid_pipeline"));
  s.first_frame_from = image;
  s.segments = 2;  // overlap K' = 2: 3 + (3 - 2) frames
  std::ostringstream log;
  const run::SampleResult r = run::run_sample(s, &log);
  EXPECT_EQ(r.shape, (Shape{2, kFrames + 1, 16, 16, 1}));
  ASSERT_EQ(r.latents.shape(), (Shape{2, kFrames + 1, 4, 4, 3}));
  EXPECT_NE(log.str().find("(the image stage's latents)"), std::string::npos) << log.str();
  EXPECT_TRUE(fs::exists(fs::path(s.out) / "first_frames" / "samples.npz"));
  EXPECT_TRUE(fs::exists(fs::path(s.out) / "videos" / "000000.gif"));

  // --first-frame with the written images: encoded (their posterior means).
  run::SampleOptions p = tiny_sample(v.out, ddpm::testing::temp_path("lvid_first_frame"));
  p.first_frame = s.out + "/first_frames/samples.npz";
  std::ostringstream log2;
  EXPECT_EQ(run::run_sample(p, &log2).shape, (Shape{2, kFrames, 16, 16, 1}));
  EXPECT_NE(log2.str().find("(encoded)"), std::string::npos) << log2.str();
}

TEST(LatentVideo, FirstFrameFromRefusesAnotherSpaceOrAutoencoder) {
  TrainOptions v = latent_video(temp_run("lvid_ffc_refusals"));
  v.first_frame_condition = true;
  v.steps = 1;
  v.save_every = 1;
  run::train_run(v);
  TrainOptions pixel = ddpm::testing::tiny_run(temp_run("lvid_pixel_image"));
  pixel.steps = 1;
  pixel.save_every = 1;
  run::train_run(pixel);
  const std::string other = latent_image_run("lvid_other_image", other_ae());

  run::SampleOptions s = tiny_sample(v.out, ddpm::testing::temp_path("lvid_refused"));
  s.first_frame_from = pixel.out;
  expect_value_error([&] { run::run_sample(s); }, "is a pixel-space image model");
  s.first_frame_from = other;
  expect_value_error([&] { run::run_sample(s); }, "those of another");
  EXPECT_FALSE(fs::exists(s.out));  // nothing written
}

// Video LDM: the video model made from a latent image run is that run frame by frame at step 0.
TEST(LatentVideo, FineTuneFromALatentImageRunStartsAsItFrameByFrame) {
  const std::string image = latent_image_run("lvid_ft_image", tiny_ae());
  run::FineTuneSource s = run::open_finetune_source(image, "");
  EXPECT_EQ(s.autoencoder, run::find_run_autoencoder(image));
  EXPECT_EQ(s.latent_factor, 4);
  EXPECT_EQ(s.pixel_channels, 1);
  // Every weight non-zero (a one-step run's conv_out is still near zero).
  std::uint64_t seed = 900;
  for (auto& [name, w] : s.weights) w = random_tensor(w.shape(), seed++, DType::f32, 0.3);
  Generator g0(1);
  unet::UNet image_net(s.model, g0, Device::cpu());
  run::load_finetune_weights(s, image_net);

  TrainOptions fo;
  fo.init_from = image;
  fo.dropout = 0;
  Dataset clips;  // 16x16x1 pixel clips: the autoencoder's size, not the latent's
  clips.name = "clips";
  clips.n = 1;
  clips.frames = kFrames;
  clips.height = clips.width = 16;
  clips.channels = 1;
  const unet::UNetConfig target = run::finetune_unet_config(s, fo, clips);
  EXPECT_EQ(target.image_size, 4);
  EXPECT_EQ(target.in_channels, 3);
  EXPECT_EQ(target.num_frames, kFrames);
  Generator g(77);
  unet::UNet video(target, g, Device::cpu());
  run::load_finetune_weights(s, video, target);

  const Tensor z = random_tensor({2, kFrames, 4, 4, 3}, 31, DType::f32);
  const Tensor per_frame = image_net.forward(z.reshape({2 * kFrames, 4, 4, 3}), std::vector<double>{5, 5, 5, 40, 40, 40},
                                                std::vector<std::int64_t>{}, nn::Context{});
  double peak = 0;
  for (double v : per_frame.to_double_vector()) peak = std::max(peak, std::fabs(v));
  ASSERT_GT(peak, 1e-2);
  const Tensor y = video.forward(z, std::vector<double>{5, 40}, std::vector<std::int64_t>{}, nn::Context{});
  EXPECT_TRUE(ddpm::testing::all_close(y.reshape(per_frame.shape()), per_frame, 1e-5, 1e-4));

  // Clips of another pixel size do not fit the source's autoencoder.
  clips.height = clips.width = 32;
  expect_value_error([&] { run::finetune_unet_config(s, fo, clips); }, "the pixels of its autoencoder");
}

TEST(LatentVideo, FineTuneRunDiffusesWithTheSourcesAutoencoder) {
  const std::string image = latent_image_run("lvid_ft_run_image", tiny_ae());
  TrainOptions f;
  f.init_from = image;
  f.data = "moving-toy";
  f.toy_count = 8;
  f.frames = kFrames;
  f.canvas = 16;
  f.item_size = 8;
  f.train_only = "temporal";
  f.batch_size = 2;
  f.steps = 1;
  f.save_every = 1;
  f.sample_every = 0;
  f.num_samples = 2;
  f.sample_steps = 2;
  f.out = temp_run("lvid_ft_run");
  f.log = nullptr;
  run::train_run(f);
  const nlohmann::json cfg = run::read_run_config(f.out);
  EXPECT_EQ(cfg.at("model").at("num_frames"), kFrames);
  EXPECT_EQ(cfg.at("model").at("image_size"), 4);
  EXPECT_TRUE(cfg.contains("autoencoder"));
  EXPECT_TRUE(run::same_autoencoder(f.out + "/" + run::kRunAutoencoderFolder, tiny_ae()));
  EXPECT_EQ(cfg.at("run").at("autoencoder_source"), run::find_run_autoencoder(image));

  // A resume (no --init-from, no --autoencoder: the run's own copy) matches a run that never stopped.
  TrainOptions straight = f;
  straight.out = temp_run("lvid_ft_straight");
  straight.steps = 2;
  run::train_run(straight);
  TrainOptions resumed = f;
  resumed.init_from.clear();
  resumed.steps = 2;
  resumed.resume = "latest";
  EXPECT_EQ(run::train_run(resumed).steps_done, 2);
  for (const char* file : {run::kModelFile, run::kEmaFile})
    ddpm::testing::expect_same_tensors(run::checkpoint_dir(straight.out, 2) + "/" + file,
                                       run::checkpoint_dir(resumed.out, 2) + "/" + file);

  TrainOptions given = f;
  given.out = temp_run("lvid_ft_refused");
  given.autoencoder = tiny_ae();  // the source's autoencoder is not a choice
  expect_value_error([&] { run::train_run(given); }, "--autoencoder");
  TrainOptions lora = f;
  lora.out = temp_run("lvid_ft_lora");
  lora.train_only.clear();
  lora.frames = 1;
  lora.lora_rank = 2;
  expect_value_error([&] { run::train_run(lora); }, "LoRA runs of latent models are not supported");
  EXPECT_FALSE(fs::exists(given.out + "/config.json"));
  EXPECT_FALSE(fs::exists(lora.out + "/config.json"));
}
