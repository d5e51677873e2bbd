// tests/cpu/test_profiler.cpp: the op profiler (engine/profiler.h) and the library side of
// ddpm-profile (models/run/profile_run.h) on the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "engine/error.h"
#include "engine/ops/conv.h"
#include "engine/ops/linalg.h"
#include "engine/ops/reduce.h"
#include "engine/profiler.h"
#include "engine/rng.h"
#include "models/run/profile_run.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

const Device cpu = Device::cpu();

TEST(Profiler, NestedScopesAreAttributedToTheOutermost) {
  Profiler::start(cpu);
  {
    OpScope outer("outer", 10.0, 20.0, cpu);
    {
      OpScope inner("inner", 1.0, 2.0, cpu);
      OpScope innermost("innermost", 1.0, 2.0, cpu);
    }
    OpScope inner_again("inner", 1.0, 2.0, cpu);
  }
  { OpScope alone("inner", 3.0, 4.0, cpu); }
  ProfileResult r = Profiler::stop();
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.records[0].name, "outer");
  EXPECT_EQ(r.records[0].flops, 10.0);
  EXPECT_EQ(r.records[0].bytes, 20.0);
  EXPECT_EQ(r.records[1].name, "inner");
  EXPECT_EQ(r.records[1].flops, 3.0);
  EXPECT_GE(r.records[0].ms, 0.0);
  EXPECT_LE(r.op_ms(), r.total_ms);
  EXPECT_FALSE(r.counts_launches);
  std::vector<OpSummary> s = r.summarize();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].calls + s[1].calls, 2);
}

TEST(Profiler, RecordsNothingWhenOff) {
  EXPECT_FALSE(Profiler::enabled());
  Generator gen(1);
  Tensor x = randn({1, 4, 4, 2}, gen, cpu), w = randn({3, 3, 3, 2}, gen, cpu);
  Tensor y = conv2d(x, w, Tensor(), 1, 1);  // not in a region
  Profiler::start(cpu);
  ProfileResult r = Profiler::stop();
  EXPECT_TRUE(r.records.empty());
  EXPECT_FALSE(Profiler::enabled());
}

TEST(Profiler, RegionsDoNotNestAndStopNeedsStart) {
  EXPECT_THROW(Profiler::stop(), ValueError);
  Profiler::start(cpu);
  EXPECT_THROW(Profiler::start(cpu), ValueError);
  Profiler::stop();
}

TEST(Profiler, ConvEstimateFollowsTheFormula) {
  Generator gen(2);
  Tensor x = randn({2, 8, 8, 3}, gen, cpu), w = randn({4, 3, 3, 3}, gen, cpu), b = randn({4}, gen, cpu);
  Profiler::start(cpu);
  Tensor y = conv2d(x, w, b, 2, 1);  // Ho = Wo = 4
  ProfileResult r = Profiler::stop();
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].name, "conv2d");
  // 2 N Ho Wo Cout kh kw Cin; bytes: x, W and y once each, 4 bytes per f32.
  EXPECT_DOUBLE_EQ(r.records[0].flops, 2.0 * 2 * 4 * 4 * 4 * 3 * 3 * 3);
  EXPECT_DOUBLE_EQ(r.records[0].bytes, 4.0 * (2 * 8 * 8 * 3 + 4 * 3 * 3 * 3 + 2 * 4 * 4 * 4));
}

TEST(Profiler, LinearEstimateFollowsTheFormula) {
  Generator gen(3);
  Tensor x = randn({5, 7}, gen, cpu, DType::f64), w = randn({3, 7}, gen, cpu, DType::f64),
         b = randn({3}, gen, cpu, DType::f64);
  Profiler::start(cpu);
  Tensor y = linear(x, w, b);
  ProfileResult r = Profiler::stop();
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].name, "linear");
  // 2 M N K for the product plus one add per output for the bias; 8 bytes per f64.
  EXPECT_DOUBLE_EQ(r.records[0].flops, 2.0 * 5 * 3 * 7 + 15);
  EXPECT_DOUBLE_EQ(r.records[0].bytes, 8.0 * (35 + 21 + 3 + 15));
}

TEST(Profiler, BackwardTimeStaysWithTheOpThatCalledInnerOps) {
  Generator gen(4);
  Tensor x = randn({6, 5}, gen, cpu).set_requires_grad(true);
  Tensor w = randn({4, 5}, gen, cpu).set_requires_grad(true);
  Tensor loss = sum(linear(x, w));
  Profiler::start(cpu);
  loss.backward();
  ProfileResult r = Profiler::stop();
  std::set<std::string> names;
  for (const OpRecord& rec : r.records) names.insert(rec.name);
  // linear.backward runs two matmuls; they are part of its record, not records of their own.
  EXPECT_TRUE(names.count("linear.backward"));
  EXPECT_FALSE(names.count("matmul"));
  EXPECT_TRUE(x.grad().defined());
}

run::ProfileOptions tiny_options() {
  run::ProfileOptions o;
  o.model.image_size = 8;
  o.model.model_channels = 16;
  o.model.channel_mult = {1, 2};
  o.model.num_res_blocks = 1;
  o.model.attention_resolutions = {4};
  o.model.norm_groups = 8;
  o.batch_size = 2;
  o.diffusion_steps = 50;
  o.warmup_steps = 0;
  o.device = cpu;
  return o;
}

bool has_row(const run::StepProfile& s, const std::string& name) {
  for (const OpSummary& op : s.ops)
    if (op.name == name) return op.ms > 0.0 && op.calls > 0;
  return false;
}

TEST(ProfileRun, TinyUNetTablesHaveTheMainOpsAndSharesAddUp) {
  run::ProfileReport r = run::profile_model(tiny_options());
  for (const char* op : {"conv2d", "group_norm", "attention", "linear", "conv2d.backward", "attention.backward"})
    EXPECT_TRUE(has_row(r.train, op)) << op;
  for (const char* op : {"conv2d", "group_norm", "attention", "linear"}) EXPECT_TRUE(has_row(r.sample, op)) << op;
  EXPECT_FALSE(has_row(r.sample, "conv2d.backward"));
  for (const run::StepProfile* s : {&r.train, &r.sample}) {
    double share = 100.0 * s->outside_ms() / s->result.total_ms;
    for (const OpSummary& op : s->ops) share += 100.0 * op.ms / s->result.total_ms;
    EXPECT_NEAR(share, 100.0, 1e-6);
    EXPECT_GT(s->result.total_ms, 0.0);
    EXPECT_TRUE(std::is_sorted(s->ops.begin(), s->ops.end(),
                               [](const OpSummary& a, const OpSummary& b) { return a.ms > b.ms; }));
  }
  std::string table = run::format_report(r);
  EXPECT_NE(table.find("conv2d"), std::string::npos);
  EXPECT_NE(table.find("(outside ops)"), std::string::npos);
  std::string json = run::report_json(r);
  EXPECT_NE(json.find("\"train\": {"), std::string::npos);
  EXPECT_NE(json.find("\"op\": \"group_norm\""), std::string::npos);
}

std::int64_t calls_of(const run::StepProfile& s, const std::string& name) {
  for (const OpSummary& op : s.ops)
    if (op.name == name) return op.calls;
  return 0;
}

// --text-cond: the text encoder runs before the UNet in both steps, and every spatial
// transformer adds a cross-attention to its self-attention.
TEST(ProfileRun, TextConditionedModelShowsTheEncoderAndTheCrossAttention) {
  const run::ProfileReport plain = run::profile_model(tiny_options());
  run::ProfileOptions o = tiny_options();
  o.text_cond = true;
  o.text.vocab_size = run::kProfileVocabSize;
  o.text.context_length = 5;
  o.text.width = 8;
  o.text.layers = 1;
  o.text.heads = 2;
  o.model.context_dim = 8;
  const run::ProfileReport r = run::profile_model(o);
  // Attention at 4x4: one block down, one in the middle, two up (num_res_blocks + 1).
  const std::int64_t blocks = calls_of(plain.sample, "attention");
  EXPECT_EQ(blocks, 4);
  for (const run::StepProfile* s : {&r.train, &r.sample}) {
    SCOPED_TRACE(s->name);
    EXPECT_EQ(calls_of(*s, "attention"), blocks + o.text.layers);  // self-attention, and the encoder's
    EXPECT_EQ(calls_of(*s, "cross_attention"), blocks);            // a row of its own
    // norm1..3 per transformer block, layer_norm1, 2 per encoder layer and the final one.
    EXPECT_EQ(calls_of(*s, "layer_norm"), 3 * blocks + 2 * o.text.layers + 1);
    EXPECT_EQ(calls_of(*s, "gelu"), blocks + o.text.layers);  // GEGLU and the encoder's MLP
    EXPECT_EQ(calls_of(*s, "embedding"), 1);  // the token lookup (position rows are added whole)
  }
  for (const char* op : {"layer_norm.backward", "gelu.backward", "attention.backward", "cross_attention.backward",
                         "embedding.backward"})
    EXPECT_TRUE(has_row(r.train, op)) << op;
  // Both networks' parameters: the UNet's and the encoder's (V x 8 token embedding, ...).
  EXPECT_GT(r.num_parameters, plain.num_parameters + run::kProfileVocabSize * 8);
  EXPECT_NE(run::format_report(r).find("cross-attention (transformer depth 1) to a text encoder of width 8"),
            std::string::npos);
  EXPECT_NE(run::report_json(r).find("\"text_encoder\": {\"vocab_size\": 1000, \"context_length\": 5"),
            std::string::npos);
  EXPECT_EQ(run::report_json(plain).find("text_encoder"), std::string::npos);
}

// --frames F: clips [B, F, H, W, C]; every temporal block transposes to per-pixel sequences
// of F frames and back, and attends over them, beside the spatial attention of the image model.
TEST(ProfileRun, VideoModelShowsTheTransposesAndTheTemporalAttention) {
  const run::ProfileReport plain = run::profile_model(tiny_options());
  run::ProfileOptions o = tiny_options();
  o.model.num_frames = 3;
  const run::ProfileReport r = run::profile_model(o);
  // Temporal blocks (unet.h): after each resnet of the down levels (2 levels x 1), of the up
  // levels (2 x (1 + 1)) and after the middle block's attention: 7.
  const std::int64_t temporal = 2 * 1 + 2 * 2 + 1;
  for (const run::StepProfile* s : {&r.train, &r.sample}) {
    SCOPED_TRACE(s->name);
    EXPECT_TRUE(has_row(*s, "transpose"));
    EXPECT_EQ(calls_of(*s, "transpose"), 2 * temporal);  // into [N, H*W, F, C] and back
    EXPECT_EQ(calls_of(*s, "attention"), calls_of(plain.sample, "attention") + temporal);
    EXPECT_EQ(calls_of(plain.train, "transpose"), 0);
  }
  EXPECT_TRUE(has_row(r.train, "transpose.backward"));
  EXPECT_GT(calls_of(r.train, "attention"), calls_of(plain.train, "attention"));
  EXPECT_NE(run::format_report(r).find("video: 3 frames per clip"), std::string::npos);
  EXPECT_EQ(run::format_report(plain).find("video:"), std::string::npos);
  EXPECT_NE(run::report_json(r).find("\"num_frames\": 3}"), std::string::npos);
  EXPECT_NE(run::report_json(plain).find("\"num_frames\": 0}"), std::string::npos);

  // The flag: 0 or at least 2.
  run::ProfileFlags f;
  f.frames = 4;
  EXPECT_EQ(run::resolve_profile_options(f, cpu, 0).model.num_frames, 4);
  f.frames = 1;
  ddpm::testing::expect_value_error([&] { run::resolve_profile_options(f, cpu, 0); },
                                    "--frames must be 0 (an image model) or at least 2");
}

// --checkpoint RUN: the run's own network (config, weights), batch size and T are profiled;
// a first-frame video run also gets its condition channels; model flags are refused by name.
TEST(ProfileRun, CheckpointProfilesTheRunsOwnNetwork) {
  run::TrainOptions o = ddpm::testing::tiny_run(ddpm::testing::temp_run("profile_video"));
  o.data = "moving-toy";
  o.frames = 3;
  o.canvas = 16;
  o.item_size = 8;
  o.first_frame_condition = true;
  o.batch_size = 2;
  o.steps = 1;
  o.save_every = 1;
  o.num_samples = 1;
  o.diffusion_steps = 40;
  run::train_run(o);

  run::ProfileFlags f;
  f.checkpoint = o.out;
  f.warmup = 0;
  const run::ProfileOptions resolved = run::resolve_profile_options(f, cpu, 0);
  EXPECT_EQ(resolved.batch_size, 2);  // the run's, from its config.json
  const run::ProfileReport r = run::profile_model(resolved);
  const unet::UNetConfig& m = r.options.model;
  EXPECT_EQ(m.model_channels, 8);
  EXPECT_EQ(m.norm_groups, 4);
  EXPECT_EQ(m.num_frames, 3);
  EXPECT_TRUE(m.first_frame_condition);
  EXPECT_EQ(r.options.diffusion_steps, 40);
  EXPECT_EQ(calls_of(r.train, "transpose"), 2 * (2 * 1 + 2 * 2 + 1));  // its temporal blocks ran
  EXPECT_TRUE(has_row(r.sample, "conv2d"));
  EXPECT_NE(run::format_report(r).find("model: " + o.out), std::string::npos);
  EXPECT_NE(run::report_json(r).find("\"checkpoint\": "), std::string::npos);

  f.batch_size = 3;  // --batch-size still chooses
  EXPECT_EQ(run::resolve_profile_options(f, cpu, 0).batch_size, 3);
  f.model_flags_given = {"--num-channels"};
  ddpm::testing::expect_value_error([&] { run::resolve_profile_options(f, cpu, 0); },
                                    "--num-channels shapes the profiled network, but --checkpoint");
  f.model_flags_given.clear();
  f.checkpoint = o.out + "/no-such-folder";
  f.warmup = 0;
  EXPECT_ANY_THROW(run::profile_model(run::resolve_profile_options(f, cpu, 0)));
}

// The flag parse records the model flags given (what --checkpoint refuses), and --norm-groups
// reaches the config.
TEST(ProfileRun, NoteProfileFlagsSeesTheModelFlagsAndNormGroupsReachesTheConfig) {
  run::ProfileFlags f;
  CLI::App app{"test"};
  run::add_profile_flags(app, f);
  const char* argv[] = {"test", "--norm-groups", "8", "--num-channels", "16", "--warmup", "0"};
  app.parse(7, const_cast<char**>(argv));
  run::note_profile_flags(app, f);
  EXPECT_EQ(f.model_flags_given, (std::vector<std::string>{"--num-channels", "--norm-groups"}));
  EXPECT_EQ(run::resolve_profile_options(f, cpu, 0).model.norm_groups, 8);
  f.norm_groups = 0;
  ddpm::testing::expect_value_error([&] { run::resolve_profile_options(f, cpu, 0); },
                                    "--norm-groups must be positive");
  f.norm_groups = 12;  // 12 does not divide 16
  EXPECT_THROW(run::resolve_profile_options(f, cpu, 0), ValueError);
}

TEST(ProfileRun, TextCondFlagsBuildTheModelAndRejectBadValues) {
  run::ProfileFlags f;
  CLI::App app{"test"};
  run::add_profile_flags(app, f);
  const char* argv[] = {"ddpm-profile", "--text-cond", "--text-width", "32", "--context-length", "9",
                        "--transformer-depth", "2"};
  app.parse(8, const_cast<char**>(argv));
  const run::ProfileOptions o = run::resolve_profile_options(f, cpu, 0);
  EXPECT_TRUE(o.text_cond);
  EXPECT_EQ(o.model.context_dim, 32);
  EXPECT_EQ(o.model.transformer_depth, 2);
  EXPECT_EQ(o.text.width, 32);
  EXPECT_EQ(o.text.context_length, 9);
  EXPECT_EQ(o.text.vocab_size, run::kProfileVocabSize);
  EXPECT_EQ(run::resolve_profile_options(run::ProfileFlags{}, cpu, 0).model.context_dim, 0);

  auto expect_refused = [](const run::ProfileFlags& bad, const std::string& words) {
    try {
      run::resolve_profile_options(bad, cpu, 0);
      ADD_FAILURE() << "accepted; expected an error naming " << words;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  run::ProfileFlags bad = f;
  bad.class_cond = true;
  expect_refused(bad, "--class-cond and --text-cond");
  bad = f;
  bad.text.heads = 5;
  expect_refused(bad, "--text-heads 5");
  bad = f;
  bad.attention_resolutions = "";
  expect_refused(bad, "--attention-resolutions");
  bad = f;
  bad.text.context_length = 2;
  expect_refused(bad, "--context-length");
  bad = f;
  bad.text.transformer_depth = 0;
  expect_refused(bad, "--transformer-depth");
}

TEST(ProfileRun, FlagsTakeDeviceDefaultsAndRejectBadValues) {
  run::ProfileFlags f;
  CLI::App app{"test"};
  run::add_profile_flags(app, f);
  const char* argv[] = {"ddpm-profile", "--channel-mult", "1,2,4", "--num-heads", "2", "--learn-sigma", "--json"};
  app.parse(7, const_cast<char**>(argv));
  run::ProfileOptions o = run::resolve_profile_options(f, cpu, 5);
  EXPECT_EQ(o.model.channel_mult, (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(o.model.model_channels, 32);  // the CPU default
  EXPECT_EQ(o.batch_size, 4);
  EXPECT_EQ(o.model.num_heads, 2);
  EXPECT_TRUE(o.model.learn_sigma);
  EXPECT_TRUE(f.json);
  EXPECT_EQ(o.seed, 5u);
  run::ProfileOptions on_cuda = run::resolve_profile_options(run::ProfileFlags{}, Device::cuda(), 0);
  EXPECT_EQ(on_cuda.model.model_channels, 128);  // the DDPM CIFAR-10 network
  EXPECT_EQ(on_cuda.model.channel_mult, (std::vector<int>{1, 2, 2, 2}));
  EXPECT_EQ(on_cuda.batch_size, 128);

  run::ProfileFlags bad;
  bad.channel_mult = "1,x";
  EXPECT_THROW(run::resolve_profile_options(bad, cpu, 0), ValueError);
  bad = run::ProfileFlags{};
  bad.batch_size = 0;
  EXPECT_THROW(run::resolve_profile_options(bad, cpu, 0), ValueError);
  bad = run::ProfileFlags{};
  bad.image_size = 30;  // three levels need a multiple of 4
  bad.channel_mult = "1,2,2";
  EXPECT_THROW(run::resolve_profile_options(bad, cpu, 0), ValueError);
}

}  // namespace
}  // namespace ddpm
