// models/eval/condition_gap: the own / rolled / null errors of a conditional network, checked
// against a direct computation through the model (q_sample and the v target written out
// here), the exact zero gap of a network whose class embedding is zero, `ddpm-eval
// condition-gap` end to end on a tiny text run, its flags, and its refusals.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "apps/common/cli.h"
#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/rng.h"
#include "models/data/toy.h"
#include "models/diffusion/schedule.h"
#include "models/eval/classifier.h"
#include "models/eval/condition_gap.h"
#include "models/eval/eval_flags.h"
#include "models/eval/eval_run.h"
#include "models/unet/model_io.h"
#include "support/temp_dir.h"
#include "support/tiny_model.h"
#include "support/tiny_run.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::eval {
namespace {

namespace fs = std::filesystem;
using diffusion::DenoiseFn;
using diffusion::DiffusionSchedule;

// A perturbed tiny UNet on 16x16x1 toy shapes with the toy data's 4 classes (a fresh UNet
// outputs exactly 0, which would hide everything measured here).
std::unique_ptr<unet::UNet> tiny_class_net(int num_classes = 4) {
  unet::UNetConfig cfg = testing::tiny_unet_config(16, 1);
  cfg.num_classes = num_classes;
  Generator g(21);
  auto net = std::make_unique<unet::UNet>(cfg, g, Device::cpu());
  testing::perturb_weights(*net, g);
  return net;
}

DenoiseFn as_fn(const unet::UNet& net) {
  return [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };
}

TEST(ConditionGap, EqualsADirectComputationThroughTheModel) {
  const auto net = tiny_class_net();
  const DiffusionSchedule s(diffusion::linear_betas(40));
  const Dataset ds = make_toy_shapes(5, 3);
  ConditionGapOptions o;
  o.mean_type = diffusion::ModelMeanType::v;  // the target mixes x_0 and eps
  o.num_classes = 4;
  o.timesteps = {3, 30};
  o.roll = 3;
  o.batch_size = 3;  // batches of 3 and 2
  o.seed = 9;
  const ConditionGapReport r = evaluate_condition_gap(s, as_fn(*net), ds, ds.labels, o);
  ASSERT_EQ(r.n, 5);
  ASSERT_EQ(r.rows.size(), 2u);

  // The same draws in the documented order: per t, per batch, one randn of the batch's shape.
  NoGradGuard no_grad;
  Generator gen(9);
  double gap_sum = 0;
  for (std::size_t k = 0; k < o.timesteps.size(); ++k) {
    const std::int64_t t = o.timesteps[k];
    const double ab = s.alphas_cumprod[t];
    double se[3] = {0, 0, 0}, change = 0, count = 0;
    for (std::int64_t b = 0; b < 5; b += 3) {
      const std::int64_t m = std::min<std::int64_t>(3, 5 - b);
      const Tensor x0 = image_batch(ds, b, m, Device::cpu());
      const Tensor eps = randn(x0.shape(), gen);
      const std::vector<float> xv = x0.to_vector(), ev = eps.to_vector();
      std::vector<float> xt(xv.size()), v(xv.size());
      for (std::size_t i = 0; i < xv.size(); ++i) {
        xt[i] = static_cast<float>(std::sqrt(ab) * xv[i] + std::sqrt(1 - ab) * ev[i]);  // DDPM eq. 4
        v[i] = static_cast<float>(std::sqrt(ab) * ev[i] - std::sqrt(1 - ab) * xv[i]);   // Salimans & Ho's v
      }
      const Tensor xt_t = Tensor::from_vector(xt, x0.shape());
      std::vector<std::int64_t> own, rolled, null(static_cast<std::size_t>(m), 4);
      for (std::int64_t i = b; i < b + m; ++i) {
        own.push_back(ds.labels[i]);
        rolled.push_back(ds.labels[(i + 3) % 5]);
      }
      const std::vector<double> tt(static_cast<std::size_t>(m), static_cast<double>(t));
      const std::vector<float> outs[3] = {net->forward(xt_t, tt, own, nn::Context{}).to_vector(),
                                          net->forward(xt_t, tt, rolled, nn::Context{}).to_vector(),
                                          net->forward(xt_t, tt, null, nn::Context{}).to_vector()};
      for (std::size_t i = 0; i < v.size(); ++i) {
        for (int c = 0; c < 3; ++c) se[c] += (outs[c][i] - double(v[i])) * (outs[c][i] - double(v[i]));
        change += (outs[0][i] - double(outs[1][i])) * (outs[0][i] - double(outs[1][i]));
      }
      count += static_cast<double>(v.size());
    }
    const ConditionGapRow& row = r.rows[k];
    EXPECT_EQ(row.t, t);
    EXPECT_NEAR(row.mse_own, se[0] / count, 1e-5 * se[0] / count) << "t=" << t;
    EXPECT_NEAR(row.mse_rolled, se[1] / count, 1e-5 * se[1] / count) << "t=" << t;
    EXPECT_NEAR(row.mse_null, se[2] / count, 1e-5 * se[2] / count) << "t=" << t;
    EXPECT_NEAR(row.output_change, change / count, 1e-4 * change / count) << "t=" << t;
    const double gap = (se[1] - se[0]) / se[0];
    EXPECT_NEAR(row.gap, gap, 1e-4 * std::fabs(gap) + 1e-9) << "t=" << t;
    EXPECT_GT(row.output_change, 0.0) << "the perturbed class embedding moves the output";
    gap_sum += gap;
  }
  EXPECT_NEAR(r.mean_gap, gap_sum / 2, 1e-4 * std::fabs(gap_sum) + 1e-9);
  // Rolled by 3 over the 5 toy labels: the report counts the images whose condition changed.
  std::int64_t differs = 0;
  for (std::int64_t i = 0; i < 5; ++i) differs += ds.labels[i] != ds.labels[(i + 3) % 5];
  EXPECT_EQ(r.rolled_differs, differs);
}

TEST(ConditionGap, IsExactlyZeroWhenTheClassEmbeddingIsZeroAndNotOtherwise) {
  const auto net = tiny_class_net();
  int zeroed = 0;
  for (auto& [name, p] : net->named_parameters())
    if (name.rfind("class_embedding", 0) == 0) {
      p.zero_();
      ++zeroed;
    }
  ASSERT_GT(zeroed, 0) << "the UNet names its class embedding class_embedding.*";
  const DiffusionSchedule s(diffusion::linear_betas(40));
  const Dataset ds = make_toy_shapes(6, 4);
  ConditionGapOptions o;
  o.num_classes = 4;
  o.timesteps = {5, 25};
  o.batch_size = 4;
  o.roll = 1;
  const ConditionGapReport blind = evaluate_condition_gap(s, as_fn(*net), ds, ds.labels, o);
  ASSERT_GT(blind.rolled_differs, 0) << "the toy labels must differ for the test to mean anything";
  for (const ConditionGapRow& row : blind.rows) {
    EXPECT_GT(row.mse_own, 0.0);
    EXPECT_EQ(row.mse_own, row.mse_rolled) << "t=" << row.t;
    EXPECT_EQ(row.mse_own, row.mse_null) << "t=" << row.t;
    EXPECT_EQ(row.output_change, 0.0) << "t=" << row.t;
    EXPECT_EQ(row.gap, 0.0) << "t=" << row.t;
  }
  EXPECT_EQ(blind.mean_gap, 0.0);

  // Give the embedding values again: the condition now reaches the output.
  Generator g(2);
  for (auto& [name, p] : net->named_parameters())
    if (name.rfind("class_embedding", 0) == 0) p.copy_from(randn(p.shape(), g));
  const ConditionGapReport seeing = evaluate_condition_gap(s, as_fn(*net), ds, ds.labels, o);
  for (std::size_t k = 0; k < seeing.rows.size(); ++k) {
    EXPECT_GT(seeing.rows[k].output_change, 0.0) << "t=" << seeing.rows[k].t;
    EXPECT_NE(seeing.rows[k].gap, 0.0) << "t=" << seeing.rows[k].t;
    EXPECT_NE(seeing.rows[k].mse_null, seeing.rows[k].mse_own) << "t=" << seeing.rows[k].t;
  }
}

TEST(ConditionGap, RefusesBadOptions) {
  const auto net = tiny_class_net();
  const DiffusionSchedule s(diffusion::linear_betas(40));
  const Dataset ds = make_toy_shapes(4, 5);
  ConditionGapOptions o;
  o.num_classes = 4;
  o.timesteps = {5};
  o.roll = 8;  // 0 modulo 4 images
  testing::expect_value_error([&] { evaluate_condition_gap(s, as_fn(*net), ds, ds.labels, o); }, "--roll 8");
  o.roll = -4;
  testing::expect_value_error([&] { evaluate_condition_gap(s, as_fn(*net), ds, ds.labels, o); }, "0 modulo");
  o.roll = 1;
  o.timesteps = {40};
  testing::expect_value_error([&] { evaluate_condition_gap(s, as_fn(*net), ds, ds.labels, o); }, "--timesteps 40");
  o.timesteps = {5};
  o.num_classes = 0;
  testing::expect_value_error([&] { evaluate_condition_gap(s, as_fn(*net), ds, ds.labels, o); }, "unconditional");
  o.num_classes = 2;  // the toy labels go up to 3
  std::vector<std::int64_t> labels = {0, 1, 3, 0};
  testing::expect_value_error([&] { evaluate_condition_gap(s, as_fn(*net), ds, labels, o); }, "has condition 3");
  labels.pop_back();
  o.num_classes = 4;
  testing::expect_value_error([&] { evaluate_condition_gap(s, as_fn(*net), ds, labels, o); }, "3 conditions");
}

// RUN/config.json + checkpoints/step_1/{model,ema}.safetensors for a tiny UNet, T = 30.
std::string write_run(const std::string& name, int num_classes) {
  const fs::path run = testing::temp_path(name);
  fs::remove_all(run);
  fs::create_directories(run / "checkpoints" / "step_1");
  unet::UNetConfig cfg = testing::tiny_unet_config(16, 1);
  cfg.num_classes = num_classes;
  Generator gen(3);
  unet::UNet net(cfg, gen, Device::cpu());
  nlohmann::json config;
  config["model"] = unet::config_to_json(cfg);
  config["diffusion"] = {{"diffusion_steps", 30}, {"noise_schedule", "linear"}};
  std::ofstream(run / "config.json") << config.dump();
  for (const char* f : {"model.safetensors", "ema.safetensors"})
    save_safetensors((run / "checkpoints" / "step_1" / f).string(), unet::export_state_dict(net));
  std::ofstream(run / "checkpoints" / "latest") << "step_1\n";
  return run.string();
}

TEST(ConditionGapRun, RefusesWhatItCannotMeasureAndWritesNothing) {
  ConditionGapArgs a;
  a.data = "toy";
  a.limit = 4;
  a.timesteps = "5,20";
  a.checkpoint = write_run("condgap_uncond", 0);
  std::ostringstream out;
  testing::expect_value_error([&] { run_condition_gap(a, out); }, "is unconditional");
  a.checkpoint = write_run("condgap_class", 4);
  a.roll = 4;
  testing::expect_value_error([&] { run_condition_gap(a, out); }, "0 modulo the 4 images");
  a.roll = 7;
  a.timesteps = "5,x";
  testing::expect_value_error([&] { run_condition_gap(a, out); }, "\"x\" is not a whole number");
  a.timesteps = "5,30";
  testing::expect_value_error([&] { run_condition_gap(a, out); }, "--timesteps 30 is outside the model's 0..29");
  a.timesteps = "5";
  a.json = testing::temp_path("condgap_existing.json");
  std::ofstream(a.json) << "keep\n";
  testing::expect_value_error([&] { run_condition_gap(a, out); }, "exists; pass --overwrite");
  std::ifstream in(a.json);
  std::string kept;
  std::getline(in, kept);
  EXPECT_EQ(kept, "keep");
  // An EDM run: its network is not an eps, x_0 or v prediction.
  run::TrainOptions edm = testing::tiny_run(testing::temp_run("condgap_edm"));
  edm.objective = "edm";
  edm.class_cond = true;
  edm.steps = 1;
  edm.save_every = 1;
  run::train_run(edm);
  a.checkpoint = edm.out;
  a.json.clear();
  testing::expect_value_error([&] { run_condition_gap(a, out); }, "EDM objective");
}

TEST(ConditionGapRun, RunsATinyClassRunAndWritesItsJson) {
  ConditionGapArgs a;
  a.checkpoint = write_run("condgap_class_ok", 4);
  a.data = "toy";
  a.split = "train";
  a.limit = 5;
  a.batch_size = 2;
  a.timesteps = "2,17";
  a.json = testing::temp_path("condgap_class_ok.json");
  fs::remove(a.json);
  std::ostringstream out;
  const ConditionGapReport r = run_condition_gap(a, out);
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.n, 5);
  EXPECT_NE(out.str().find("class labels (4 classes)"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("condition gap"), std::string::npos) << out.str();
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(a.json));
  ASSERT_EQ(j.at("rows").size(), 2u);
  EXPECT_EQ(j.at("rows")[1].at("t"), 17);
  EXPECT_DOUBLE_EQ(j.at("rows")[1].at("mse_own").get<double>(), r.rows[1].mse_own);
  EXPECT_DOUBLE_EQ(j.at("mean_gap").get<double>(), r.mean_gap);
}

TEST(ConditionGapRun, RunsATinyTextRunOnItsGeneratedCaptions) {
  run::TrainOptions o = testing::tiny_text_run(testing::temp_run("condgap_text"));
  run::train_run(o);
  ConditionGapArgs a;
  a.checkpoint = o.out;
  a.data = "toy";
  a.split = "train";
  a.limit = 6;
  a.batch_size = 4;
  a.timesteps = "5,25,45";
  a.roll = 2;
  std::ostringstream out;
  const ConditionGapReport r = run_condition_gap(a, out);
  EXPECT_EQ(r.n, 6);
  ASSERT_EQ(r.rows.size(), 3u);
  for (const ConditionGapRow& row : r.rows) {
    EXPECT_TRUE(std::isfinite(row.mse_own) && row.mse_own > 0) << out.str();
    EXPECT_TRUE(std::isfinite(row.mse_rolled) && std::isfinite(row.mse_null)) << out.str();
    EXPECT_GE(row.output_change, 0.0);
  }
  EXPECT_NE(out.str().find("generated captions"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("null = the empty caption"), std::string::npos) << out.str();
}

TEST(ConditionGapFlags, ParsesTheSubcommand) {
  CLI::App app{"test", "ddpm-eval"};
  cli::CommonFlags common;
  EvalCommand c;
  cli::add_common_flags(app, common);
  add_eval_subcommands(app, c);
  std::vector<std::string> args = {"ddpm-eval", "condition-gap", "--checkpoint", "r", "--split", "train",
                                   "--limit", "32", "--timesteps", "10,20", "--roll", "3", "--json", "g.json",
                                   "--no-ema", "--seed", "4"};
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  ASSERT_EQ(c.mode(), EvalMode::condition_gap);
  EXPECT_EQ(c.condition_gap.checkpoint, "r");
  EXPECT_EQ(c.condition_gap.split, "train");
  EXPECT_EQ(c.condition_gap.limit, 32);
  EXPECT_EQ(c.condition_gap.timesteps, "10,20");
  EXPECT_EQ(c.condition_gap.roll, 3);
  EXPECT_EQ(c.condition_gap.json, "g.json");
  EXPECT_FALSE(c.condition_gap.ema);
  EXPECT_EQ(common.seed, 4u);
}

}  // namespace
}  // namespace ddpm::eval
