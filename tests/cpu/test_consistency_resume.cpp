// tests/cpu/test_consistency_resume.cpp: the saved state and --resume of ddpm-distill --method
// consistency (consistency_run.h "Resume", consistency_state.h, distill_state.h with "method":
// "consistency"). The teacher is a tiny class-conditional v-prediction run with UNet dropout
// and random flips, and the target network follows the student at mu = 0.5, so every draw a
// step makes (data order, flips, levels, label dropout, eps, the student's dropout) and every
// network that carries over (student, EMA, AdamW moments, theta^-) is part of what a resume
// must reproduce:
//   - a run stopped by SIGTERM after step 2, resumed with nothing but --out, stopped again
//     after step 4 and resumed to the end publishes the folder of an uninterrupted run BIT for
//     bit (ema.safetensors; config.json but its "seconds"), with the same per-step losses and
//     gap_before; the state is gone at the end, and --resume of the finished run says so;
//   - a crash (an exception) after a periodic state resumes to the same bits;
//   - --overwrite: the old OUT stays whole until the resumed run publishes;
//   - refusals: a changed flag (naming both values), a new run over a saved state, --resume
//     without a state, a progressive state resumed as consistency and the other way round;
//   - a latent teacher (each step draws the autoencoder's posterior samples from the draw
//     generator) resumes to the same bits, and the published folder carries the autoencoder;
//   - a progressive state.json written before "method" existed still reads as progressive.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/consistency_run.h"
#include "models/run/consistency_state.h"
#include "models/run/distill_run.h"
#include "models/run/distill_state.h"
#include "models/run/latent_run.h"
#include "support/tiny_autoencoder.h"
#include "support/stop_at_log.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

// One teacher for the file (support/tiny_run.h: T = 32, v-prediction, 4 classes).
const std::string& teacher() {
  static const std::string dir = testing::tiny_class_v_teacher("consistency_resume_teacher");
  return dir;
}

// Six steps of batch 4 on 4 levels, a log line every step, no periodic state.
run::ConsistencyOptions tiny_cm(const std::string& out) {
  run::ConsistencyOptions c;
  c.teacher = teacher();
  c.levels = 4;
  c.steps = 6;
  c.batch_size = 4;
  c.lr = 2e-3;
  c.warmup_steps = 2;
  c.ema_rate = 0.9;
  c.target_ema = 0.5;  // theta^- differs from the student: it must be saved
  c.gap_samples = 4;
  c.log_every = 1;
  c.checkpoint_every = 0;
  c.out = out;
  return c;
}

// --resume --out OUT and nothing else: every other option must come from the saved state.
run::ConsistencyOptions resume_of(const std::string& out) {
  run::ConsistencyOptions c;
  c.out = out;
  c.resume = true;
  return c;
}

const run::ConsistencyResult& uninterrupted() {
  static const run::ConsistencyResult r = run::consistency_run(tiny_cm(testing::temp_path("consistency_resume_whole")));
  return r;
}

// config.json without the run's wall-clock seconds, the one figure a resumed run cannot share.
nlohmann::json config_without_seconds(const std::string& folder) {
  nlohmann::json j = nlohmann::json::parse(read_file(folder + "/config.json"));
  j["distillation"]["consistency"].erase("seconds");
  return j;
}

// The folder `out` is the uninterrupted run's, bit for bit, and the state is gone.
void expect_same_folder(const std::string& out) {
  const std::string whole = uninterrupted().folder;
  ASSERT_FALSE(whole.empty());
  EXPECT_TRUE(read_file(whole + "/ema.safetensors") == read_file(out + "/ema.safetensors"))
      << "the resumed student's file differs from the uninterrupted run's";
  testing::expect_same_tensors(whole + "/ema.safetensors", out + "/ema.safetensors");
  EXPECT_EQ(config_without_seconds(whole), config_without_seconds(out));
  EXPECT_FALSE(fs::exists(run::distill_state_dir(out))) << "the state outlived the published run";
}

TEST(ConsistencyResume, StoppedTwiceResumesBitIdentical) {
  ASSERT_EQ(uninterrupted().steps_done, 6);
  const std::string out = testing::temp_path("consistency_resume_stopped");
  // SIGTERM after step 2: OUT not written, the state beside it.
  run::ConsistencyOptions c = tiny_cm(out);
  bool raised = false;
  c.log = testing::sigterm_at("", "  step 2/6", &raised);
  run::ConsistencyResult r = run::consistency_run(c);
  ASSERT_TRUE(raised);
  EXPECT_EQ(r.stopped_by_signal, SIGTERM);
  EXPECT_FALSE(fs::exists(out));
  const run::DistillState s2 = run::load_distill_state(out);
  EXPECT_EQ(s2.method, run::kConsistencyMethod);
  EXPECT_EQ(s2.step, 2);
  EXPECT_EQ(s2.losses.size(), 2u);
  EXPECT_EQ(s2.options["target_ema"], 0.5);
  EXPECT_EQ(run::saved_distill_method(out), std::optional<std::string>(run::kConsistencyMethod));

  // Resumed with nothing but --out, stopped again after step 4.
  run::ConsistencyOptions again = resume_of(out);
  std::string said;
  raised = false;
  const auto stop = testing::sigterm_at("ddpm-distill: resumed", "  step 4/6", &raised);
  again.log = [&](const std::string& l) {
    said += l + "\n";
    stop(l);
  };
  r = run::consistency_run(again);
  ASSERT_TRUE(raised);
  EXPECT_NE(said.find("resumed after step 2/6"), std::string::npos) << said;
  EXPECT_EQ(r.stopped_by_signal, SIGTERM);
  EXPECT_EQ(run::load_distill_state(out).step, 4);

  // Resumed to the end: the uninterrupted run's folder and losses.
  r = run::consistency_run(resume_of(out));
  EXPECT_EQ(r.stopped_by_signal, 0);
  EXPECT_EQ(r.steps_done, 6);
  EXPECT_EQ(r.losses, uninterrupted().losses);
  EXPECT_EQ(r.gap_before, uninterrupted().gap_before);
  EXPECT_EQ(r.gap_after, uninterrupted().gap_after);
  EXPECT_EQ(r.final_loss, uninterrupted().final_loss);
  expect_same_folder(out);

  // --resume of the published run: said, nothing changed.
  const std::string before = read_file(out + "/ema.safetensors");
  said.clear();
  run::ConsistencyOptions done = resume_of(out);
  done.log = [&said](const std::string& l) { said += l; };
  r = run::consistency_run(done);
  EXPECT_EQ(r.steps_done, 6);
  EXPECT_EQ(r.folder, out);
  EXPECT_NE(said.find("is complete (a consistency model of 6 steps)"), std::string::npos) << said;
  EXPECT_TRUE(read_file(out + "/ema.safetensors") == before) << "--resume of a published run rewrote it";
}

// A crash (an exception from the log) after the periodic state of step 2 (--checkpoint-every
// 2): the state is step 2's, and the resumed run ends with the same bits.
TEST(ConsistencyResume, CrashAfterAPeriodicStateResumes) {
  ASSERT_EQ(uninterrupted().steps_done, 6);
  const std::string out = testing::temp_path("consistency_resume_crash");
  run::ConsistencyOptions c = tiny_cm(out);
  c.checkpoint_every = 2;
  c.log = [](const std::string& l) {
    if (l.rfind("  step 3/6", 0) == 0) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(run::consistency_run(c), std::runtime_error);
  EXPECT_EQ(run::load_distill_state(out).step, 2);
  run::ConsistencyOptions again = resume_of(out);
  again.checkpoint_every = 1;  // a run control: it may change
  again.flags_given = {"--checkpoint-every"};
  const run::ConsistencyResult r = run::consistency_run(again);
  EXPECT_EQ(r.losses, uninterrupted().losses);
  expect_same_folder(out);
}

// --overwrite is saved with the state: a stopped run leaves the old OUT whole, and the resumed
// run replaces it only when it publishes, as an uninterrupted run would.
TEST(ConsistencyResume, OverwriteReplacesTheOldOutOnlyWhenPublished) {
  ASSERT_EQ(uninterrupted().steps_done, 6);
  const std::string out = testing::temp_path("consistency_resume_overwrite");
  fs::create_directories(out);
  write_file_atomic(out + "/keep.txt", "the old run");
  run::ConsistencyOptions c = tiny_cm(out);
  c.overwrite = true;
  bool raised = false;
  c.log = testing::sigterm_at("", "  step 3/6", &raised);
  ASSERT_EQ(run::consistency_run(c).stopped_by_signal, SIGTERM);
  EXPECT_EQ(read_file(out + "/keep.txt"), "the old run");
  EXPECT_FALSE(fs::exists(out + "/ema.safetensors"));
  EXPECT_EQ(run::consistency_run(resume_of(out)).steps_done, 6);
  EXPECT_FALSE(fs::exists(out + "/keep.txt"));
  expect_same_folder(out);
}

TEST(ConsistencyResume, Refusals) {
  const std::string out = testing::temp_path("consistency_resume_refused");
  run::ConsistencyOptions c = tiny_cm(out);
  c.steps = 3;
  bool raised = false;
  c.log = testing::sigterm_at("", "  step 1/3", &raised);
  ASSERT_EQ(run::consistency_run(c).stopped_by_signal, SIGTERM);
  const std::string state = run::distill_state_dir(out);
  ASSERT_TRUE(fs::is_directory(state));
  const std::string saved_json = read_file(state + "/" + run::kDistillStateJson);

  // A flag given with another value than the saved one: refused, naming both values.
  run::ConsistencyOptions changed = resume_of(out);
  changed.target_ema = 0.95;
  changed.flags_given = {"--target-ema"};
  testing::expect_value_error([&] { (void)run::consistency_run(changed); },
                              "--target-ema 0.95 differs from the 0.5 of the run being resumed");
  changed = resume_of(out);
  changed.lr = 2e-3;  // the saved value, spelt out, beside one that differs
  changed.levels = 8;
  changed.flags_given = {"--lr", "--consistency-levels"};
  testing::expect_value_error([&] { (void)run::consistency_run(changed); },
                              "--consistency-levels 8 differs from the 4");
  // A new run over the saved state, without --overwrite.
  testing::expect_value_error([&] { (void)run::consistency_run(tiny_cm(out)); },
                              "holds the saved state of a stopped run");
  // The progressive method asked to resume it.
  run::DistillOptions progressive;
  progressive.out = out;
  progressive.resume = true;
  testing::expect_value_error([&] { (void)run::distill_run(progressive); },
                              "--method progressive differs from the --method consistency of the run being resumed");
  EXPECT_EQ(read_file(state + "/" + run::kDistillStateJson), saved_json) << "a refused resume changed the state";
  EXPECT_FALSE(fs::exists(out));

  // A progressive run's state resumed as a consistency one.
  nlohmann::json js = nlohmann::json::parse(saved_json);
  js["method"] = run::kProgressiveMethod;
  js["round"] = 1;
  js["record"] = {{"rounds", nlohmann::json::array()}};
  write_file_atomic(state + "/" + run::kDistillStateJson, js.dump());
  testing::expect_value_error([&] { (void)run::consistency_run(resume_of(out)); },
                              "--method consistency differs from the --method progressive");
  // A "method" no build writes: damaged.
  js["method"] = "shortcut";
  write_file_atomic(state + "/" + run::kDistillStateJson, js.dump());
  std::string message = "no error";
  try {
    (void)run::consistency_run(resume_of(out));
  } catch (const IoError& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("\"method\" must be \"progressive\" or \"consistency\""), std::string::npos) << message;

  // No state at all: a usage error, and nothing is written.
  fs::remove_all(state);
  testing::expect_value_error([&] { (void)run::consistency_run(resume_of(out)); }, "no saved state to resume from");
  EXPECT_FALSE(fs::exists(out));
}

// A latent teacher (ddpm-train --autoencoder; T = 50): every step encodes its batch with a
// posterior sample whose eps comes from the draw generator, so the resumed run must continue
// that generator where the stopped one left it. Three steps on 5 levels, stopped after step 1.
TEST(ConsistencyResume, LatentTeacherResumesBitIdentical) {
  const std::string teacher_dir =
      testing::tiny_latent_v_teacher("consistency_resume_latent_teacher", "consistency_resume_latent_ae");
  const auto options = [&teacher_dir](const std::string& out) {
    run::ConsistencyOptions c = tiny_cm(out);
    c.teacher = teacher_dir;
    c.levels = 5;  // T = 50: DDIM stride 10
    c.steps = 3;
    return c;
  };
  const std::string whole_out = testing::temp_path("consistency_resume_latent_whole");
  const run::ConsistencyResult whole = run::consistency_run(options(whole_out));
  ASSERT_EQ(whole.steps_done, 3);
  const std::string out = testing::temp_path("consistency_resume_latent");
  run::ConsistencyOptions c = options(out);
  bool raised = false;
  c.log = testing::sigterm_at("", "  step 1/3", &raised);
  ASSERT_EQ(run::consistency_run(c).stopped_by_signal, SIGTERM);
  ASSERT_EQ(run::load_distill_state(out).step, 1);
  const run::ConsistencyResult r = run::consistency_run(resume_of(out));
  EXPECT_EQ(r.steps_done, 3);
  EXPECT_EQ(r.losses, whole.losses);
  EXPECT_EQ(r.gap_after, whole.gap_after);
  EXPECT_TRUE(read_file(whole_out + "/ema.safetensors") == read_file(out + "/ema.safetensors"))
      << "the resumed latent student's file differs from the uninterrupted run's";
  testing::expect_same_tensors(whole_out + "/ema.safetensors", out + "/ema.safetensors");
  EXPECT_EQ(config_without_seconds(whole_out), config_without_seconds(out));
  EXPECT_TRUE(fs::is_directory(out + "/" + run::kRunAutoencoderFolder));
  EXPECT_FALSE(fs::exists(run::distill_state_dir(out)));
}

// A progressive state.json from before "method" existed: read as a progressive state, its
// round and record intact.
TEST(ConsistencyResume, StateWithoutMethodIsProgressive) {
  const std::string out = testing::temp_path("consistency_resume_old_format");
  run::DistillOptions o;
  o.teacher = "teacher";
  o.teacher_steps = 8;
  run::DistillState st;
  st.options = run::distill_options_json(o);
  st.round = 2;
  st.step = 1;
  st.losses = {0.25};
  st.record = {{"rounds", nlohmann::json::array()}, {"rounds_done", 1}};
  run::save_distill_state(out, st);
  const std::string path = run::distill_state_dir(out) + "/" + run::kDistillStateJson;
  nlohmann::json js = nlohmann::json::parse(read_file(path));
  ASSERT_EQ(js["method"], run::kProgressiveMethod);
  js.erase("method");
  write_file_atomic(path, js.dump(2));
  const run::DistillState back = run::load_distill_state(out);
  EXPECT_EQ(back.method, run::kProgressiveMethod);
  EXPECT_EQ(back.round, 2);
  EXPECT_EQ(back.record["rounds_done"], 1);
  EXPECT_EQ(run::saved_distill_method(out), std::optional<std::string>(run::kProgressiveMethod));
  // A consistency state has no round and no record to read.
  st.method = run::kConsistencyMethod;
  run::save_distill_state(out, st);
  js = nlohmann::json::parse(read_file(path));
  EXPECT_FALSE(js.contains("round"));
  EXPECT_FALSE(js.contains("record"));
  EXPECT_EQ(run::load_distill_state(out).method, run::kConsistencyMethod);
}

}  // namespace
}  // namespace ddpm
