// Tests for models/run/model_source: every kind of source opens to the same network, the
// EMA choice, the diffusers export round trip, the diffusion settings, and bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/run/model_source.h"
#include "models/unet/model_io.h"
#include "support/tiny_unet.h"
#include "support/temp_dir.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

unet::UNetConfig tiny_config() {
  unet::UNetConfig cfg = testing::tiny_unet_config();
  cfg.attention_resolutions = {4};
  return cfg;
}

// A network with every parameter non-zero (a fresh UNet outputs exactly zero).
std::unique_ptr<unet::UNet> random_net(const unet::UNetConfig& cfg, std::uint64_t seed) {
  Generator g(seed);
  auto net = std::make_unique<unet::UNet>(cfg, g, Device::cpu());
  for (auto& [name, t] : net->named_parameters()) {
    std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
  return net;
}

std::string fresh_dir(const std::string& name) { return testing::fresh_temp_dir("model_source_" + name); }

// The run layout of models/run/checkpoint.h, built by hand: config.json,
// checkpoints/step_000010/{model,ema}.safetensors, checkpoints/latest.
void write_run(const std::string& run, const unet::UNet& raw, const unet::UNet& ema, const DiffusionSettings& d) {
  nlohmann::json config = {{"model", unet::config_to_json(raw.config())},
                           {"diffusion", diffusion_to_json(d)},
                           {"train", {{"lr", 1e-4}}}};
  write_file_atomic(run + "/config.json", config.dump(2));
  const std::string ckpt = run + "/checkpoints/step_000010";
  fs::create_directories(ckpt);
  save_safetensors(ckpt + "/model.safetensors", unet::export_state_dict(raw));
  save_safetensors(ckpt + "/ema.safetensors", unet::export_state_dict(ema));
  write_file_atomic(run + "/checkpoints/latest", "step_000010\n");
}

Tensor run_net(const unet::UNet& net) {
  Generator g(7);
  Tensor x = randn({2, 8, 8, 3}, g);
  return net.forward(x, {3, 30}, {}, nn::Context{});
}

void expect_same_outputs(const unet::UNet& a, const unet::UNet& b) {
  std::vector<float> ya = run_net(a).to_vector(), yb = run_net(b).to_vector();
  ASSERT_EQ(ya.size(), yb.size());
  for (std::size_t i = 0; i < ya.size(); ++i) ASSERT_EQ(ya[i], yb[i]) << i;
}

DiffusionSettings cosine_settings() {
  DiffusionSettings d;
  d.diffusion_steps = 40;
  d.noise_schedule = diffusion::NoiseSchedule::cosine;
  d.predict = diffusion::ModelMeanType::v;
  return d;
}

TEST(ModelSource, RunFolderLoadsEmaByDefaultAndRawWithNoEma) {
  auto raw = random_net(tiny_config(), 1), ema = random_net(tiny_config(), 2);
  const std::string run = fresh_dir("run");
  write_run(run, *raw, *ema, cosine_settings());

  ModelSource src = open_model(run, Device::cpu());
  EXPECT_EQ(src.kind, "run folder");
  EXPECT_TRUE(src.ema);
  EXPECT_EQ(src.diffusion.diffusion_steps, 40);
  EXPECT_EQ(src.diffusion.noise_schedule, diffusion::NoiseSchedule::cosine);
  EXPECT_EQ(src.diffusion.predict, diffusion::ModelMeanType::v);
  expect_same_outputs(*src.net, *ema);

  ModelSource no_ema = open_model(run + "/", Device::cpu(), /*use_ema=*/false);
  EXPECT_FALSE(no_ema.ema);
  expect_same_outputs(*no_ema.net, *raw);
}

TEST(ModelSource, CheckpointFolderFindsTheRunConfig) {
  auto raw = random_net(tiny_config(), 1), ema = random_net(tiny_config(), 2);
  const std::string run = fresh_dir("ckpt");
  write_run(run, *raw, *ema, cosine_settings());
  ModelSource src = open_model(run + "/checkpoints/step_000010", Device::cpu());
  EXPECT_EQ(src.kind, "checkpoint folder");
  EXPECT_EQ(src.diffusion.diffusion_steps, 40);
  expect_same_outputs(*src.net, *ema);
  // Without EMA weights the default is refused with a pointer to --no-ema.
  fs::remove(run + "/checkpoints/step_000010/ema.safetensors");
  try {
    open_model(run + "/checkpoints/step_000010", Device::cpu());
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("--no-ema"), std::string::npos) << e.what();
  }
  expect_same_outputs(*open_model(run + "/checkpoints/step_000010", Device::cpu(), false).net, *raw);
}

TEST(ModelSource, ModelFileWithBareConfigBeside) {
  auto net = random_net(tiny_config(), 3);
  const std::string dir = fresh_dir("file");
  save_safetensors(dir + "/weights.safetensors", unet::export_state_dict(*net));
  write_file_atomic(dir + "/config.json", unet::config_to_json(net->config()).dump());
  ModelSource src = open_model(dir + "/weights.safetensors", Device::cpu());
  EXPECT_EQ(src.kind, "model file");
  EXPECT_EQ(src.diffusion.diffusion_steps, 1000);  // defaults for a bare UNet config
  EXPECT_EQ(src.diffusion.noise_schedule, diffusion::NoiseSchedule::linear);
  expect_same_outputs(*src.net, *net);
}

TEST(ModelSource, DiffusersExportRoundTrip) {
  unet::UNetConfig cfg = tiny_config();
  cfg.learn_sigma = true;
  auto raw = random_net(cfg, 4), ema = random_net(cfg, 5);
  const std::string run = fresh_dir("export_run");
  DiffusionSettings d = cosine_settings();
  d.learn_sigma = true;
  write_run(run, *raw, *ema, d);
  ModelSource src = open_model(run, Device::cpu());

  const std::string out = fresh_dir("export_out");  // an existing empty folder is fine
  export_diffusers(src, out);
  EXPECT_TRUE(fs::exists(out + "/config.json"));
  EXPECT_TRUE(fs::exists(out + "/diffusion_pytorch_model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/scheduler_config.json"));
  // Directly through model_io, and through open_model (which also restores the settings).
  expect_same_outputs(*unet::load_diffusers_folder(out, Device::cpu()), *ema);
  ModelSource back = open_model(out, Device::cpu());
  EXPECT_EQ(back.kind, "diffusers folder");
  EXPECT_EQ(back.diffusion.diffusion_steps, 40);
  EXPECT_EQ(back.diffusion.noise_schedule, diffusion::NoiseSchedule::cosine);
  EXPECT_EQ(back.diffusion.predict, diffusion::ModelMeanType::v);
  EXPECT_TRUE(back.diffusion.learn_sigma);
  expect_same_outputs(*back.net, *ema);

  // A second export refuses to replace it, unless asked.
  EXPECT_THROW(export_diffusers(src, out), ValueError);
  ModelSource raw_src = open_model(run, Device::cpu(), false);
  export_diffusers(raw_src, out, /*overwrite=*/true);
  expect_same_outputs(*open_model(out, Device::cpu()).net, *raw);
}

TEST(ModelSource, SchedulerConfigConversion) {
  DiffusionSettings d;
  d.diffusion_steps = 500;
  nlohmann::json j = diffusion_to_diffusers_scheduler(d);
  EXPECT_EQ(j["beta_schedule"], "linear");
  EXPECT_DOUBLE_EQ(j["beta_end"].get<double>(), 0.04);
  DiffusionSettings back = diffusion_from_diffusers_scheduler(j, false);
  EXPECT_EQ(back.diffusion_steps, 500);
  EXPECT_EQ(back.predict, diffusion::ModelMeanType::eps);
  j["beta_schedule"] = "scaled_linear";
  EXPECT_THROW(diffusion_from_diffusers_scheduler(j, false), ValueError);
  j["beta_schedule"] = "linear";
  j["beta_end"] = 0.012;  // endpoints we do not build
  EXPECT_THROW(diffusion_from_diffusers_scheduler(j, false), ValueError);
  j = diffusion_to_diffusers_scheduler(d);
  j["prediction_type"] = "flow";
  EXPECT_THROW(diffusion_from_diffusers_scheduler(j, false), ValueError);
}

TEST(ModelSource, DiffusionSettingsKeys) {
  DiffusionSettings d = cosine_settings();
  DiffusionSettings back = diffusion_from_json(diffusion_to_json(d), false);
  EXPECT_EQ(back.diffusion_steps, 40);
  EXPECT_EQ(back.noise_schedule, d.noise_schedule);
  EXPECT_EQ(back.predict, d.predict);
  nlohmann::json j = {{"diffusion_steps", 100}, {"noise_schedule", "linear"}, {"loss", "hybrid"}};
  EXPECT_EQ(diffusion_from_json(j, true).learn_sigma, true);  // default: the model's; extra keys ignored
  EXPECT_THROW(diffusion_from_json({{"noise_schedule", "linear"}}, false), ValueError);
  EXPECT_THROW(diffusion_from_json({{"diffusion_steps", 100}}, false), ValueError);
  EXPECT_THROW(diffusion_from_json({{"diffusion_steps", 100}, {"noise_schedule", "quadratic"}}, false), ValueError);
  EXPECT_THROW(diffusion_from_json({{"diffusion_steps", 100}, {"noise_schedule", "linear"}, {"learn_sigma", true}}, false),
               ValueError);
}

TEST(ModelSource, BadInputGivesOneClearError) {
  EXPECT_THROW(open_model(testing::temp_path("model_source_nothing_here"), Device::cpu()), IoError);
  const std::string empty = fresh_dir("empty");
  EXPECT_THROW(open_model(empty, Device::cpu()), IoError);

  // A truncated weights file: the safetensors loader's IoError names the file.
  auto net = random_net(tiny_config(), 6);
  const std::string dir = fresh_dir("truncated");
  save_safetensors(dir + "/m.safetensors", unet::export_state_dict(*net));
  write_file_atomic(dir + "/config.json", unet::config_to_json(net->config()).dump());
  std::string bytes = read_file(dir + "/m.safetensors");
  write_file_atomic(dir + "/m.safetensors", bytes.substr(0, bytes.size() / 2));
  try {
    open_model(dir + "/m.safetensors", Device::cpu());
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("m.safetensors"), std::string::npos) << e.what();
  }

  // Weights that do not match the config: every mismatched name is listed.
  unet::UNetConfig wider = tiny_config();
  wider.model_channels = 16;
  write_file_atomic(dir + "/config.json", unet::config_to_json(wider).dump());
  save_safetensors(dir + "/m.safetensors", unet::export_state_dict(*net));
  try {
    open_model(dir + "/m.safetensors", Device::cpu());
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("conv_in.weight"), std::string::npos) << e.what();
  }

  // A model file without a config, and a config that is not JSON.
  fs::remove(dir + "/config.json");
  EXPECT_THROW(open_model(dir + "/m.safetensors", Device::cpu()), IoError);
  write_file_atomic(dir + "/config.json", "{not json");
  EXPECT_THROW(open_model(dir + "/m.safetensors", Device::cpu()), IoError);

  // A run without a complete checkpoint.
  const std::string run = fresh_dir("run_without_ckpt");
  write_file_atomic(run + "/config.json", "{}");
  fs::create_directories(run + "/checkpoints");
  EXPECT_THROW(open_model(run, Device::cpu()), IoError);
}

}  // namespace
}  // namespace ddpm::run
