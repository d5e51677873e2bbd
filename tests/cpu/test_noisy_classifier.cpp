// The noisy classifier (models/unet/encoder.h) and its folder and training loop
// (models/run/classifier_run.h): shapes, the parameter count worked out by hand, the zero
// head, config validation, the folder round trip, a short training run whose loss falls,
// and ddpm-classifier's command line.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>

#include <gtest/gtest.h>

#include "apps/common/cli.h"
#include "models/data/toy.h"
#include "models/run/classifier_run.h"
#include "support/gradcheck.h"
#include "support/temp_dir.h"
#include "support/tiny_encoder.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::expect_value_error;

TEST(NoisyClassifier, LogitsShapeAndParameterCountByHand) {
  unet::EncoderConfig c = testing::tiny_encoder_config(8, 3, 3);
  c.use_scale_shift_norm = false;
  c.resblock_updown = false;
  Generator g(0);
  unet::NoisyClassifier net(c, g, Device::cpu());
  // Counted from the architecture (emb = 4 * 8 = 32; conv k x k: k*k*in*out + out):
  auto conv = [](std::int64_t in, std::int64_t out, std::int64_t k) { return k * k * in * out + out; };
  auto lin = [](std::int64_t in, std::int64_t out) { return in * out + out; };
  auto gn = [](std::int64_t ch) { return 2 * ch; };
  auto resnet = [&](std::int64_t in, std::int64_t out) {
    return gn(in) + conv(in, out, 3) + lin(32, out) + gn(out) + conv(out, out, 3) + (in != out ? conv(in, out, 1) : 0);
  };
  const std::int64_t attention16 = gn(16) + 4 * lin(16, 16);
  const std::int64_t expected = conv(3, 8, 3) + lin(8, 32) + lin(32, 32)  // conv_in, time embedding
                                + resnet(8, 8) + conv(8, 8, 3)            // level 0 + strided-conv downsampler
                                + resnet(8, 16)                           // level 1
                                + 2 * resnet(16, 16) + attention16        // middle block
                                + gn(16) + lin(16, 3);                    // head
  EXPECT_EQ(net.num_parameters(), expected);
  EXPECT_EQ(expected, 19491);
  const Tensor x = randn({2, 8, 8, 3}, g);
  const Tensor logits = net.forward(x, {3.0, 17.5}, nn::Context{});
  EXPECT_EQ(logits.shape(), (Shape{2, 3}));
  // The zero-initialized head: a fresh classifier says "uniform" for everything.
  for (double v : logits.to_double_vector()) EXPECT_EQ(v, 0.0);
  bool has_head = false;
  for (const auto& [name, t] : net.named_parameters()) has_head = has_head || name == "out_proj.weight";
  EXPECT_TRUE(has_head);
}

TEST(NoisyClassifier, ScaleShiftAndResblockUpdownChangeTheBlocks) {
  const unet::EncoderConfig c = testing::tiny_encoder_config(8, 1, 4);  // scale-shift + resblock updown (defaults)
  auto net = testing::tiny_encoder(c, false);
  bool found_down_res = false;
  for (const auto& [name, t] : net->named_parameters()) {
    found_down_res = found_down_res || name == "down_blocks.0.downsamplers.0.conv1.weight";
    if (name == "down_blocks.0.resnets.0.time_emb_proj.weight") EXPECT_EQ(t.shape(), (Shape{16, 32}));  // 2C: AdaGN
  }
  EXPECT_TRUE(found_down_res);
  Generator g(1);
  const Tensor logits = net->forward(randn({3, 8, 8, 1}, g), {0, 10, 39}, nn::Context{});
  EXPECT_EQ(logits.shape(), (Shape{3, 4}));
  // The timestep matters: the same image at two timesteps gives different logits.
  const Tensor x = randn({1, 8, 8, 1}, g);
  EXPECT_NE(net->forward(x, {1}, nn::Context{}).to_double_vector(), net->forward(x, {30}, nn::Context{}).to_double_vector());
}

TEST(NoisyClassifier, ConfigValidationNamesTheField) {
  unet::EncoderConfig c = testing::tiny_encoder_config();
  c.norm_groups = 3;
  expect_value_error([&] { c.validate(); }, "not divisible by 3 groups");
  c = testing::tiny_encoder_config();
  c.attention_resolutions = {5};
  expect_value_error([&] { c.validate(); }, "attention resolution 5 is not a level size (8, 4)");
  c = testing::tiny_encoder_config();
  c.num_classes = 1;
  expect_value_error([&] { c.validate(); }, "num_classes >= 2");
  c = testing::tiny_encoder_config(6);
  c.channel_mult = {1, 2, 2};
  expect_value_error([&] { c.validate(); }, "image size 6 cannot be halved 2 times");
  c = testing::tiny_encoder_config();
  c.num_res_blocks = 0;
  expect_value_error([&] { c.validate(); }, "num_res_blocks must be at least 1");
  // JSON: a round trip, and unknown keys refused.
  nlohmann::json j = unet::encoder_config_to_json(testing::tiny_encoder_config());
  EXPECT_EQ(unet::encoder_config_to_json(unet::encoder_config_from_json(j)), j);
  j["colour"] = 1;
  EXPECT_THROW(unet::encoder_config_from_json(j), IoError);
}

TEST(NoisyClassifier, FolderRoundTripGivesTheSameLogits) {
  testing::TempDir tmp("noisy-cls");
  auto net = testing::tiny_encoder(testing::tiny_encoder_config(), false);
  const std::string dir = tmp.path + "/cls";
  run::DiffusionSettings cosine40;
  cosine40.diffusion_steps = 40;
  cosine40.noise_schedule = diffusion::NoiseSchedule::cosine;
  run::save_noisy_classifier(*net, cosine40, {{"note", "test"}}, dir, false);
  expect_value_error([&] { run::save_noisy_classifier(*net, cosine40, {}, dir, false); }, "pass --overwrite");
  const run::NoisyClassifierFolder f = run::load_noisy_classifier(dir, Device::cpu());
  EXPECT_EQ(f.diffusion.diffusion_steps, 40);
  EXPECT_EQ(f.diffusion.noise_schedule, diffusion::NoiseSchedule::cosine);
  Generator g(3);
  const Tensor x = randn({2, 8, 8, 3}, g);
  EXPECT_TRUE(testing::same_bits(f.model->forward(x, {1, 20}, nn::Context{}), net->forward(x, {1, 20}, nn::Context{})));
  EXPECT_THROW(run::load_noisy_classifier(tmp.path + "/none", Device::cpu()), IoError);
}

TEST(NoisyClassifier, TrainingOnToyShapesLowersTheLoss) {
  const Dataset data = make_toy_shapes(256, 1, 16);
  run::ClassifierTrainArgs a;
  a.steps = 80;
  a.batch_size = 16;
  a.lr = 1e-3;
  a.weight_decay = 0;
  a.model_channels = 8;
  a.channel_mult = "1,2";
  a.norm_groups = 4;
  const unet::EncoderConfig cfg = run::encoder_config_for(a, data);
  EXPECT_EQ(cfg.image_size, 16);
  EXPECT_EQ(cfg.num_classes, kToyShapeClasses);
  Generator g(0);
  unet::NoisyClassifier cls(cfg, g, Device::cpu());
  const diffusion::DiffusionSchedule schedule(diffusion::cosine_betas(40));
  const run::ClassifierTrainReport r = run::train_noisy_classifier(cls, data, schedule, a);
  ASSERT_EQ(r.losses.size(), 80u);
  EXPECT_NEAR(r.losses.front(), std::log(4.0), 1e-6);  // zero head: uniform predictions
  const double first = std::accumulate(r.losses.begin(), r.losses.begin() + 10, 0.0) / 10;
  const double last = std::accumulate(r.losses.end() - 10, r.losses.end(), 0.0) / 10;
  EXPECT_LT(last, first - 0.08) << "mean loss of the first and last 10 steps";
}

// --gradient-checkpointing (engine/recompute.h): the same training to float rounding.
TEST(NoisyClassifier, GradientCheckpointingTrainsTheSameClassifier) {
  const Dataset data = make_toy_shapes(64, 1, 16);
  run::ClassifierTrainArgs a;
  a.steps = 12;
  a.batch_size = 8;
  a.lr = 3e-3;
  a.model_channels = 8;
  a.channel_mult = "1,2";
  a.norm_groups = 4;
  a.dropout = 0.2;  // the recomputation must replay the masks
  const unet::EncoderConfig cfg = run::encoder_config_for(a, data);
  const diffusion::DiffusionSchedule schedule(diffusion::cosine_betas(40));
  auto train = [&](bool recompute) {
    Generator g(0);
    auto cls = std::make_unique<unet::NoisyClassifier>(cfg, g, Device::cpu());
    run::ClassifierTrainArgs b = a;
    b.gradient_checkpointing = recompute;
    const run::ClassifierTrainReport r = run::train_noisy_classifier(*cls, data, schedule, b);
    return std::make_pair(std::move(cls), r.losses);
  };
  const auto [plain, plain_losses] = train(false);
  const auto [again, again_losses] = train(true);
  ASSERT_EQ(plain_losses.size(), again_losses.size());
  for (std::size_t i = 0; i < plain_losses.size(); ++i) EXPECT_NEAR(plain_losses[i], again_losses[i], 1e-5) << i;
  Generator g(3);
  const Tensor x = randn({2, 16, 16, 1}, g);
  const std::vector<float> la = plain->forward(x, {1, 20}, nn::Context{}).to_vector();
  const std::vector<float> lb = again->forward(x, {1, 20}, nn::Context{}).to_vector();
  double scale = 0, worst = 0;
  for (std::size_t i = 0; i < la.size(); ++i) {
    scale = std::max(scale, static_cast<double>(std::fabs(la[i])));
    worst = std::max(worst, static_cast<double>(std::fabs(la[i] - lb[i])));
  }
  EXPECT_GT(scale, 1e-3);  // trained away from the zero head's uniform logits
  EXPECT_LE(worst, 1e-3 * scale);
}

// --- ddpm-classifier's command line, run in-process as apps/ddpm_classifier.cpp runs it ---

std::pair<int, std::string> classifier_cli(std::vector<std::string> args) {
  CLI::App app("ddpm-classifier", "ddpm-classifier");
  cli::CommonFlags common;
  cli::add_common_flags(app, common);
  run::ClassifierCommand command;
  run::add_classifier_subcommands(app, command);
  args.insert(args.begin(), "ddpm-classifier");
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  std::ostringstream out;
  ::testing::internal::CaptureStderr();
  const int rc = cli::run(app, static_cast<int>(argv.size()), argv.data(), [&] {
    run::run_classifier_command(command, cli::resolve_device(common), common.seed, out);
    return 0;
  });
  return {rc, ::testing::internal::GetCapturedStderr() + out.str()};
}

TEST(NoisyClassifierCli, TrainWritesTheFolderAndRefusesToOverwrite) {
  testing::TempDir tmp("noisy-cls-cli");
  const std::string out = tmp.path + "/cls";
  const std::vector<std::string> train{"train", "--data", "toy", "--out", out, "--steps", "2", "--batch-size", "4",
                                       "--model-channels", "8", "--channel-mult", "1,2", "--norm-groups", "4",
                                       "--diffusion-steps", "40", "--noise-schedule", "cosine"};
  auto r = classifier_cli(train);
  ASSERT_EQ(r.first, 0) << r.second;
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  std::ifstream f(out + "/classifier.json");
  const nlohmann::json info = nlohmann::json::parse(f);
  EXPECT_EQ(info["diffusion"]["diffusion_steps"], 40);
  EXPECT_EQ(info["diffusion"]["noise_schedule"], "cosine");
  EXPECT_EQ(info["model"]["image_size"], 16);
  r = classifier_cli(train);
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("pass --overwrite"), std::string::npos) << r.second;
  r = classifier_cli({"eval", "--classifier", out, "--data", "toy", "--limit", "8"});
  ASSERT_EQ(r.first, 0) << r.second;
  EXPECT_NE(r.second.find("[30, 40)"), std::string::npos) << r.second;  // the last quartile's row
  EXPECT_FALSE(info["diffusion"].contains("zero_terminal_snr"));  // written only when true
  EXPECT_FALSE(run::load_noisy_classifier(out, Device::cpu()).diffusion.zero_terminal_snr);
  // A zero-terminal-SNR classifier records it, and it is read back (ddpm-sample compares it).
  std::vector<std::string> zsnr = train;
  zsnr[4] = tmp.path + "/cls_zsnr";
  zsnr.push_back("--zero-terminal-snr");
  r = classifier_cli(zsnr);
  ASSERT_EQ(r.first, 0) << r.second;
  const run::NoisyClassifierFolder z = run::load_noisy_classifier(zsnr[4], Device::cpu());
  EXPECT_TRUE(z.diffusion.zero_terminal_snr);
  EXPECT_EQ(z.diffusion.diffusion_steps, 40);
  EXPECT_EQ(z.diffusion.noise_schedule, diffusion::NoiseSchedule::cosine);
  r = classifier_cli({"evaluate"});
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("unknown subcommand 'evaluate'"), std::string::npos) << r.second;
}

}  // namespace
}  // namespace ddpm
