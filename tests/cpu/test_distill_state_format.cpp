// tests/cpu/test_distill_state_format.cpp: the "options" of OUT.distill-state/state.json as
// this format has recorded them since it exists (distill_state.h; each method's option table
// in distill_state.cpp and consistency_state.cpp). The objects are spelt out here key by key,
// not built by the code under test, so a renamed key, a dropped option or a changed recorded
// form (--guided's canonical "S_MIN,S_MAX") fails here before it strands a saved run:
//   - a state carrying them is resumed, every value taken back into the options struct (each
//     differs from the struct's default, so each one taken is seen);
//   - a run with those options records the same object, key for key and byte for byte;
//   - a flag spelt out with its saved value passes, one with another value is refused by name;
//   - a missing or ill-typed key is an IoError naming the file and the key.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/consistency_run.h"
#include "models/run/consistency_state.h"
#include "models/run/distill_run.h"
#include "models/run/distill_state.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

nlohmann::json saved_progressive_options() {
  return {{"teacher", "runs/teacher"}, {"teacher_steps", 16},   {"rounds", 3},           {"steps_per_round", 7},
          {"batch_size", 5},           {"lr", 0.003},           {"warmup_steps", 11},    {"grad_clip", 0.5},
          {"ema_rate", 0.99},          {"data", "toy"},         {"label_dropout", 0.25}, {"gap_samples", 9},
          {"log_every", 2},            {"seed", 42},            {"overwrite", true},     {"guided", "1.0,3.0"},
          {"guided_steps", 4}};
}

nlohmann::json saved_consistency_options() {
  return {{"method", "consistency"}, {"teacher", "runs/teacher"}, {"levels", 10},      {"steps", 40},
          {"batch_size", 5},         {"lr", 0.003},               {"warmup_steps", 7}, {"grad_clip", 0.5},
          {"ema_rate", 0.99},        {"target_ema", 0.9},         {"loss", "l2"},      {"data", "toy"},
          {"label_dropout", 0.25},   {"gap_samples", 9},          {"log_every", 3},    {"seed", 42},
          {"overwrite", true},       {"guided", "1.0,3.0"}};
}

// The state of OUT with its "options" changed (`bad` null: the key removed, else its value
// replaced) makes `resume` throw an IoError naming state.json and the key.
void expect_damaged_option(const std::string& out, const std::string& key, const nlohmann::json& bad,
                           const std::function<void()>& resume) {
  const std::string path = run::distill_state_dir(out) + "/" + run::kDistillStateJson;
  const std::string good = read_file(path);
  nlohmann::json js = nlohmann::json::parse(good);
  if (bad.is_null())
    js["options"].erase(key);
  else
    js["options"][key] = bad;
  write_file_atomic(path, js.dump());
  testing::expect_has(testing::io_error_message(resume),
                      path + " is damaged: \"options\".\"" + key + "\" is missing or of the wrong type");
  write_file_atomic(path, good);
}

run::DistillOptions progressive_resume(const std::string& out) {
  run::DistillOptions o;
  o.out = out;
  o.resume = true;
  return o;
}

run::ConsistencyOptions consistency_resume(const std::string& out) {
  run::ConsistencyOptions o;
  o.out = out;
  o.resume = true;
  return o;
}

TEST(DistillStateFormat, ProgressiveOptionsAreTakenBack) {
  const std::string out = testing::temp_path("distill_state_format_progressive");
  run::DistillState st;
  st.options = saved_progressive_options();
  st.round = 0;  // stage 1 of the guided run
  st.step = 1;
  st.losses = {0.5};
  st.record = {{"rounds", nlohmann::json::array()}};
  run::save_distill_state(out, st);

  run::DistillOptions o = progressive_resume(out);
  EXPECT_EQ(run::resume_distill_state(o).round, 0);
  EXPECT_EQ(o.teacher, "runs/teacher");
  EXPECT_EQ(o.teacher_steps, 16);
  EXPECT_EQ(o.rounds, 3);
  EXPECT_EQ(o.steps_per_round, 7);
  EXPECT_EQ(o.batch_size, 5);
  EXPECT_EQ(o.lr, 0.003);
  EXPECT_EQ(o.warmup_steps, 11);
  EXPECT_EQ(o.grad_clip, 0.5);
  EXPECT_EQ(o.ema_rate, 0.99);
  EXPECT_EQ(o.data, "toy");
  EXPECT_EQ(o.label_dropout, 0.25);
  EXPECT_EQ(o.gap_samples, 9);
  EXPECT_EQ(o.log_every, 2);
  EXPECT_EQ(o.seed, 42u);
  EXPECT_TRUE(o.overwrite);
  EXPECT_EQ(o.guided, "1.0,3.0");
  EXPECT_EQ(o.guided_steps, 4);
  EXPECT_EQ(run::distill_options_json(o).dump(), saved_progressive_options().dump());

  // --guided spelt another way for the same range is the saved value; --guided-steps and
  // --teacher-steps with other values are refused by name.
  o = progressive_resume(out);
  o.guided = "1, 3";
  o.guided_steps = 4;
  o.flags_given = {"--guided", "--guided-steps"};
  (void)run::resume_distill_state(o);
  EXPECT_EQ(o.guided, "1.0,3.0");
  o = progressive_resume(out);
  o.guided_steps = 5;
  o.flags_given = {"--guided-steps"};
  testing::expect_value_error([&] { (void)run::resume_distill_state(o); }, "--guided-steps 5 differs from the 4");
  o = progressive_resume(out);
  o.teacher_steps = 8;
  o.flags_given = {"--teacher-steps"};
  testing::expect_value_error([&] { (void)run::resume_distill_state(o); }, "--teacher-steps 8 differs from the 16");

  const auto resume = [&out] {
    run::DistillOptions r = progressive_resume(out);
    (void)run::resume_distill_state(r);
  };
  expect_damaged_option(out, "guided_steps", nullptr, resume);
  expect_damaged_option(out, "rounds", "3", resume);
}

TEST(DistillStateFormat, ConsistencyOptionsAreTakenBack) {
  const std::string out = testing::temp_path("distill_state_format_consistency");
  run::DistillState st;
  st.method = run::kConsistencyMethod;
  st.options = saved_consistency_options();
  st.step = 2;
  st.losses = {0.5, 0.25};
  run::save_distill_state(out, st);

  run::ConsistencyOptions o = consistency_resume(out);
  (void)run::resume_consistency_state(o);
  EXPECT_EQ(o.teacher, "runs/teacher");
  EXPECT_EQ(o.levels, 10);
  EXPECT_EQ(o.steps, 40);
  EXPECT_EQ(o.batch_size, 5);
  EXPECT_EQ(o.lr, 0.003);
  EXPECT_EQ(o.warmup_steps, 7);
  EXPECT_EQ(o.grad_clip, 0.5);
  EXPECT_EQ(o.ema_rate, 0.99);
  EXPECT_EQ(o.target_ema, 0.9);
  EXPECT_EQ(o.loss, "l2");
  EXPECT_EQ(o.data, "toy");
  EXPECT_EQ(o.label_dropout, 0.25);
  EXPECT_EQ(o.gap_samples, 9);
  EXPECT_EQ(o.log_every, 3);
  EXPECT_EQ(o.seed, 42u);
  EXPECT_TRUE(o.overwrite);
  EXPECT_EQ(o.guided, "1.0,3.0");
  EXPECT_EQ(run::consistency_options_json(o).dump(), saved_consistency_options().dump());

  o = consistency_resume(out);
  o.levels = 10;
  o.flags_given = {"--consistency-levels"};
  (void)run::resume_consistency_state(o);
  o = consistency_resume(out);
  o.loss = "pseudo-huber";
  o.flags_given = {"--consistency-loss"};
  testing::expect_value_error([&] { (void)run::resume_consistency_state(o); },
                              "--consistency-loss \"pseudo-huber\" differs from the \"l2\"");

  const auto resume = [&out] {
    run::ConsistencyOptions r = consistency_resume(out);
    (void)run::resume_consistency_state(r);
  };
  expect_damaged_option(out, "target_ema", nullptr, resume);
  expect_damaged_option(out, "seed", "42", resume);
  expect_damaged_option(out, "guided", 3, resume);

  // A state saved before --guided existed resumes as an unguided run.
  const std::string old_out = testing::temp_path("distill_state_format_consistency_unguided");
  st.options.erase("guided");
  run::save_distill_state(old_out, st);
  run::ConsistencyOptions u = consistency_resume(old_out);
  (void)run::resume_consistency_state(u);
  EXPECT_EQ(u.guided, "");
  EXPECT_EQ(u.levels, 10);
}

}  // namespace
}  // namespace ddpm
