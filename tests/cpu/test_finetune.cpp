// ddpm-train --init-from (models/run/finetune.h): the SHA-256 of the record, the flags a
// fine-tune refuses, the source kinds it refuses, the data checks, the weights it starts from
// (exactly the source's; AdamW's first step then moves each by at most lr), the text
// conditioning it carries over, and a resume that reads the run's own config.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/sha256.h"
#include "models/run/checkpoint.h"
#include "models/run/finetune.h"
#include "models/run/model_source.h"
#include "models/run/train_flags.h"
#include "models/run/train_run.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace fs = std::filesystem;
using namespace ddpm;
using ddpm::testing::expect_value_error;
using ddpm::testing::temp_run;
using run::TrainOptions;

namespace {

// A tiny class-conditional base run (4 steps), trained once for the suite.
const std::string& base_run() {
  static const std::string dir = [] {
    TrainOptions o = ddpm::testing::tiny_run(temp_run("finetune_base"));
    o.class_cond = true;
    o.steps = 4;
    o.save_every = 4;
    run::train_run(o);
    return o.out;
  }();
  return dir;
}

// Fine-tune options: data, optimiser and run settings only (what ddpm-train --init-from takes).
TrainOptions finetune_options(const std::string& src, const std::string& out) {
  TrainOptions o;
  o.init_from = src;
  o.data = "toy";
  o.toy_count = 8;
  o.seed = 7;  // other toy images than the base's
  o.batch_size = 4;
  o.lr = 1e-4;
  o.warmup_steps = 0;
  o.grad_clip = 0;
  o.ema_rate = 0.9;
  o.steps = 1;
  o.save_every = 1;
  o.sample_every = 0;
  o.log_every = 1;
  o.num_samples = 4;
  o.sample_steps = 5;
  o.out = out;
  o.log = nullptr;
  return o;
}

// The parameters of a model source, by name, as host float vectors.
std::map<std::string, std::vector<float>> parameters_of(const run::ModelSource& m) {
  std::map<std::string, std::vector<float>> out;
  const nn::Module& module = m.text ? static_cast<const nn::Module&>(*m.text) : static_cast<const nn::Module&>(*m.net);
  for (const auto& [name, t] : module.named_parameters()) out[name] = t.to_vector();
  return out;
}

double max_abs_difference(const std::map<std::string, std::vector<float>>& a,
                          const std::map<std::string, std::vector<float>>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, va] : a) {
    const std::vector<float>& vb = b.at(name);
    EXPECT_EQ(va.size(), vb.size()) << name;
    for (std::size_t i = 0; i < va.size(); ++i) worst = std::max(worst, double(std::fabs(va[i] - vb[i])));
  }
  return worst;
}

}  // namespace

// The examples of FIPS 180-2, appendix B (SHA-256 of "abc" and of the 448-bit message), and
// the SHA-256 of the empty string.
TEST(FineTune, Sha256OfTheStandardsExamples) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string path = temp_run("finetune_sha") + ".bin";
  write_file_atomic(path, "abc");
  EXPECT_EQ(sha256_file(path), sha256_hex("abc"));
  // FIPS 180-2 appendix B.3: a million 'a', 15,625 blocks, read from a file.
  write_file_atomic(path, std::string(1000000, 'a'));
  EXPECT_EQ(sha256_file(path), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(FineTune, NotesTheModelFlagsGiven) {
  CLI::App app{"test", "ddpm-train"};
  TrainOptions o;
  run::add_train_flags(app, o);
  const char* argv[] = {"ddpm-train", "--init-from", "r0", "--lr",     "1e-3", "--noise-schedule",
                        "cosine",     "--class-cond", "--dropout", "0.2",  "--out", "r"};
  app.parse(static_cast<int>(std::size(argv)), argv);
  run::note_init_from_flags(app, o);
  const auto& g = o.init_from_flags_given;
  EXPECT_EQ(o.init_from, "r0");
  EXPECT_NE(std::find(g.begin(), g.end(), std::string("--noise-schedule")), g.end());
  EXPECT_NE(std::find(g.begin(), g.end(), std::string("--class-cond")), g.end());
  EXPECT_NE(std::find(g.begin(), g.end(), std::string("--dropout")), g.end());
  EXPECT_EQ(std::find(g.begin(), g.end(), std::string("--lr")), g.end());
  // Each refused flag is one ddpm-train knows.
  for (const char* flag : run::kInitFromRefusedFlags) EXPECT_NE(app.get_option_no_throw(flag), nullptr) << flag;
}

TEST(FineTune, RefusesModelFlagsAndBadSources) {
  const std::string out = temp_run("finetune_refused");
  TrainOptions o = finetune_options(base_run(), out);
  o.init_from_flags_given = {"--predict"};
  expect_value_error([&] { run::prepare_finetune(o); }, "--predict does not apply with --init-from");
  o = finetune_options(out + ".missing", out);
  expect_value_error([&] { run::prepare_finetune(o); }, "does not exist");
  o = finetune_options("", out);
  o.init_weights = "raw";
  expect_value_error([&] { run::prepare_finetune(o); }, "--init-weights raw needs --init-from");
  o = finetune_options(base_run(), out);
  o.init_weights = "best";
  expect_value_error([&] { run::prepare_finetune(o); }, "--init-weights must be ema or raw");
  o.init_weights = "";
  o.resume = "latest";  // --out holds no fine-tune
  expect_value_error([&] { run::prepare_finetune(o); }, "--init-from starts a new run");
  EXPECT_FALSE(fs::exists(out));

  // Distilled runs, by their config.json section; a latent run (fine-tuned with its own
  // autoencoder, test_latent_video.cpp) whose autoencoder folder is missing is damaged.
  for (const char* section : {"autoencoder", "distillation"}) {
    const std::string copy = temp_run(std::string("finetune_") + section);
    fs::copy(base_run(), copy, fs::copy_options::recursive);
    nlohmann::json cfg = run::read_run_config(copy);
    cfg[section] = nlohmann::json::object();
    run::write_run_config(copy, cfg);
    if (std::string(section) == "autoencoder") {
      EXPECT_NE(ddpm::testing::io_error_message([&] { run::open_finetune_source(copy, ""); }).find("is missing"),
                std::string::npos);
    } else {
      expect_value_error([&] { run::open_finetune_source(copy, ""); }, section);
    }
  }
  // An EDM run.
  TrainOptions edm = ddpm::testing::tiny_run(temp_run("finetune_edm"));
  edm.objective = "edm";
  edm.steps = 1;
  run::train_run(edm);
  expect_value_error([&] { run::open_finetune_source(edm.out, ""); }, "is an EDM model");
}

TEST(FineTune, DataMustMatchTheSource) {
  const run::FineTuneSource s = run::open_finetune_source(base_run(), "");
  TrainOptions o = finetune_options(base_run(), "unused");
  Dataset d;
  d.name = "d";
  d.n = 1;
  d.height = d.width = 32;
  d.channels = 1;
  d.labels = {0};
  d.num_classes = s.model.num_classes;
  expect_value_error([&] { run::finetune_unet_config(s, o, d); }, "has 32x32x1 images, but the --init-from model takes 16x16x1");
  d.height = d.width = 16;
  d.channels = 3;
  expect_value_error([&] { run::finetune_unet_config(s, o, d); }, "16x16x3");
  d.channels = 1;
  d.num_classes = s.model.num_classes + 1;
  expect_value_error([&] { run::finetune_unet_config(s, o, d); }, "but the class-conditional --init-from model has");
  d.num_classes = s.model.num_classes;
  o.dropout = 0.3;
  EXPECT_EQ(run::finetune_unet_config(s, o, d).dropout, 0.3);
}

// The loaded weights are the source's EMA (or raw) weights bit for bit.
TEST(FineTune, LoadsTheSourceWeightsExactly) {
  for (const char* which : {"ema", "raw"}) {
    const run::FineTuneSource s = run::open_finetune_source(base_run(), which);
    EXPECT_EQ(s.record.at("weights"), which);
    Generator gen(99);
    unet::UNet net(s.model, gen, Device::cpu());
    run::load_finetune_weights(s, net);
    const run::ModelSource src = run::open_model(base_run(), Device::cpu(), std::string(which) == "ema");
    std::map<std::string, std::vector<float>> loaded;
    for (const auto& [name, t] : net.named_parameters()) loaded[name] = t.to_vector();
    EXPECT_EQ(max_abs_difference(loaded, parameters_of(src)), 0.0) << which;
  }
}

// A one-step fine-tune starts from the source's EMA weights: AdamW's first update is
// lr * m_hat / (sqrt(v_hat) + eps) with m_hat = g and v_hat = g^2 (Loshchilov & Hutter 2019,
// alg. 2; Kingma & Ba 2015 sec. 2.1: |step| <= lr), so no weight moves more than lr, while a
// fresh initialisation differs from the source by far more.
TEST(FineTune, FirstStepStartsFromTheSourceWeights) {
  TrainOptions o = finetune_options(base_run(), temp_run("finetune_first_step"));
  run::train_run(o);
  const auto source = parameters_of(run::open_model(base_run(), Device::cpu(), true));
  const auto after = parameters_of(run::open_model(run::checkpoint_dir(o.out, 1), Device::cpu(), false));
  const auto ema = parameters_of(run::open_model(run::checkpoint_dir(o.out, 1), Device::cpu(), true));
  const double moved = max_abs_difference(after, source);
  EXPECT_GT(moved, 0.0);
  EXPECT_LE(moved, o.lr * (1 + 1e-3) + 1e-6);
  EXPECT_LE(max_abs_difference(ema, source), o.lr * (1 + 1e-3) + 1e-6);

  TrainOptions scratch = ddpm::testing::tiny_run(temp_run("finetune_scratch"));
  scratch.class_cond = true;
  scratch.seed = 3;  // another draw of the weights than the base's
  scratch.steps = 1;
  scratch.save_every = 1;
  run::train_run(scratch);
  EXPECT_GT(max_abs_difference(parameters_of(run::open_model(scratch.out, Device::cpu(), false)), source),
            100 * o.lr);

  const nlohmann::json cfg = run::read_run_config(o.out);
  EXPECT_EQ(cfg.at("model"), run::read_run_config(base_run()).at("model"));
  EXPECT_EQ(cfg.at("init_from").at("source"), fs::absolute(base_run()).lexically_normal().string());
  EXPECT_EQ(cfg.at("init_from").at("files").at(0).at("sha256"),
            sha256_file(run::resolve_checkpoint(base_run(), "latest") + "/" + run::kEmaFile));
}

// A fine-tune resumes from its own config.json: SRC is not needed, and another --init-from is
// refused.
TEST(FineTune, ResumeReadsTheRunsOwnConfig) {
  const std::string src = temp_run("finetune_moving_base");
  fs::copy(base_run(), src, fs::copy_options::recursive);
  TrainOptions o = finetune_options(src, temp_run("finetune_resumed"));
  run::train_run(o);
  fs::remove_all(src);
  TrainOptions resumed = finetune_options("", o.out);
  resumed.resume = "latest";
  resumed.steps = 2;
  const run::TrainResult r = run::train_run(resumed);
  EXPECT_EQ(r.steps_done, 2);
  resumed.init_from = base_run();
  expect_value_error([&] { run::prepare_finetune(resumed); }, "is not the source this run was fine-tuned from");
  resumed.init_from = "";
  resumed.init_from_flags_given = {"--num-res-blocks"};
  expect_value_error([&] { run::prepare_finetune(resumed); }, "--num-res-blocks does not apply with --init-from");
}

// A text model's fine-tune keeps its text encoder and tokenizer (the source's vocabulary).
TEST(FineTune, CarriesTextConditioningOver) {
  TrainOptions base = ddpm::testing::tiny_text_run(temp_run("finetune_text_base"));
  base.steps = 2;
  base.save_every = 2;
  run::train_run(base);
  TrainOptions o = finetune_options(base.out, temp_run("finetune_text"));
  run::train_run(o);
  const nlohmann::json a = run::read_run_config(base.out), b = run::read_run_config(o.out);
  EXPECT_EQ(b.at("text_encoder"), a.at("text_encoder"));
  EXPECT_EQ(b.at("model"), a.at("model"));
  EXPECT_EQ(read_file(o.out + "/" + run::kRunTokenizerFile), read_file(base.out + "/" + run::kRunTokenizerFile));
  const auto source = parameters_of(run::open_model(base.out, Device::cpu(), true));
  const auto after = parameters_of(run::open_model(run::checkpoint_dir(o.out, 1), Device::cpu(), false));
  EXPECT_LE(max_abs_difference(after, source), o.lr * (1 + 1e-3) + 1e-6);
}
